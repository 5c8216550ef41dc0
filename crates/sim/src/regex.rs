//! Tag-filter regular expressions, run by the `regex` crate in the two ways the real servers
//! match them:
//!
//! - OpenTSDB `regexp` filters: Java `Matcher.find()`, a match anywhere in the value
//!   ([`Mode::Find`]);
//! - Warp 10 label selectors (`~re`): Java `Matcher.matches()`, the whole value
//!   ([`Mode::Full`]).
//!
//! Java's `Pattern` syntax and the regex crate's agree on what tag filters are made of:
//! literals and escaped punctuation, `.`, classes (ranges, negation, `\d \w \s`, nesting,
//! `&&`), groups `( )` `(?: )` `(?<name> )`, alternation, anchors, `\b`, greedy and lazy
//! quantifiers, inline flags such as `(?i)`, Unicode classes `\p{L}`. What the regex crate
//! lacks (look-around, back-references, possessive quantifiers, atomic groups, escapes it does
//! not know such as `\Q` or `\Z`) is refused with [`RegexError::Unsupported`], which the
//! simulator turns into a clear 400 rather than silently matching the wrong series. Matching
//! takes time linear in the value, so no pattern can stall the server.
//!
//! Known differences from Java, none of which the simulator's ASCII, single-line labels can
//! show: `\d`, `\w`, `\s` and `(?i)` are Unicode-aware (ASCII in Java unless asked), and `$`
//! matches only at the very end (Java's also before a final line break). `.` excludes `\r` and
//! `\n`, as in Java.

use std::fmt;

use regex_syntax::ast::{Ast, ErrorKind as AstErrorKind, RepetitionKind};

/// How a pattern must match a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Somewhere in the value (Java `find()`, OpenTSDB `regexp` filters).
    Find,
    /// The whole value (Java `matches()`, Warp 10 label selectors).
    Full,
}

/// Why a pattern could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RegexError {
    /// The pattern is not a valid regular expression (also invalid for Java).
    Invalid(String),
    /// The pattern may be valid Java but uses a construct the regex crate does not implement.
    Unsupported(String),
}

impl fmt::Display for RegexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegexError::Invalid(m) => write!(f, "{m}"),
            RegexError::Unsupported(m) => write!(
                f,
                "the simulator's regular-expression engine (the regex crate) does not support \
                 {m} (look-around, back-references, possessive quantifiers, atomic groups \
                 and escapes such as \\Q or \\Z are refused)"
            ),
        }
    }
}

/// A compiled tag-filter pattern.
#[derive(Debug, Clone)]
pub(crate) struct Regex(regex::Regex);

impl Regex {
    /// Compiles `pattern` (Java `Pattern` syntax) to match values as `mode` says.
    pub(crate) fn new(pattern: &str, mode: Mode) -> Result<Regex, RegexError> {
        // The regex crate's own parser, run first for structured errors: they tell the
        // constructs the crate lacks from patterns that are invalid everywhere, and give
        // one-line messages.
        let ast = regex_syntax::ast::parse::Parser::new()
            .parse(pattern)
            .map_err(|e| classify(pattern, e.kind(), e.span().start.offset))?;
        match stacked_quantifier(&ast) {
            Some(Stacked::Possessive) => {
                return Err(RegexError::Unsupported("possessive quantifiers".into()));
            }
            Some(Stacked::Dangling(at)) => {
                return Err(RegexError::Invalid(format!(
                    "Dangling meta character near index {at}"
                )));
            }
            None => {}
        }
        // E.g. an unknown Unicode class `\p{Foo}` (invalid in Java too).
        regex_syntax::hir::translate::TranslatorBuilder::new()
            .crlf(true)
            .build()
            .translate(pattern, &ast)
            .map_err(|e| {
                RegexError::Invalid(format!("{} near index {}", e.kind(), e.span().start.offset))
            })?;
        let source = match mode {
            Mode::Find => pattern.to_string(),
            Mode::Full => format!("^(?:{pattern})$"),
        };
        regex::RegexBuilder::new(&source)
            .crlf(true)
            .build()
            .map(Regex)
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(limit) => RegexError::Unsupported(format!(
                    "patterns this large (over {limit} bytes compiled)"
                )),
                e => RegexError::Invalid(e.to_string()),
            })
    }

    /// Whether `text` matches, in the pattern's [`Mode`].
    pub(crate) fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

/// A quantifier applied to a quantifier, which the regex crate reads as nested repetition
/// (`a**` as `(?:a*)*`) and Java does not.
enum Stacked {
    /// `a++`, `a*+`, `a?+`, `a{2}+`: Java's possessive form, which the regex crate lacks.
    Possessive,
    /// Anything else (`a**`, `a*?+`): invalid for Java, at this index.
    Dangling(usize),
}

fn stacked_quantifier(ast: &Ast) -> Option<Stacked> {
    match ast {
        Ast::Repetition(r) => match &*r.ast {
            Ast::Repetition(inner) => Some(
                if r.op.kind == RepetitionKind::OneOrMore && r.greedy && inner.greedy {
                    Stacked::Possessive
                } else {
                    Stacked::Dangling(r.op.span.start.offset)
                },
            ),
            inner => stacked_quantifier(inner),
        },
        Ast::Group(g) => stacked_quantifier(&g.ast),
        Ast::Alternation(a) => a.asts.iter().find_map(stacked_quantifier),
        Ast::Concat(c) => c.asts.iter().find_map(stacked_quantifier),
        _ => None,
    }
}

/// A parse error of `pattern` at byte `at` as [`RegexError`], in one line (`<what> near index
/// <i>`, as the messages of Java's `PatternSyntaxException` read).
fn classify(pattern: &str, kind: &AstErrorKind, at: usize) -> RegexError {
    let text = |len: usize| pattern[at..].chars().take(len).collect::<String>();
    match kind {
        AstErrorKind::UnsupportedLookAround => RegexError::Unsupported("look-around".into()),
        AstErrorKind::UnsupportedBackreference => RegexError::Unsupported("back-references".into()),
        AstErrorKind::EscapeUnrecognized => {
            RegexError::Unsupported(format!("the escape '{}'", text(2)))
        }
        AstErrorKind::FlagUnrecognized => RegexError::Unsupported(format!(
            "the group or flag '(?{}' (atomic groups, Java-only flags)",
            text(1)
        )),
        AstErrorKind::NestLimitExceeded(limit) => {
            RegexError::Unsupported(format!("patterns nested more than {limit} deep"))
        }
        kind => RegexError::Invalid(format!("{kind} near index {at}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(p: &str, t: &str) -> bool {
        Regex::new(p, Mode::Full).unwrap().is_match(t)
    }

    fn find(p: &str, t: &str) -> bool {
        Regex::new(p, Mode::Find).unwrap().is_match(t)
    }

    fn error(p: &str) -> RegexError {
        Regex::new(p, Mode::Find).unwrap_err()
    }

    #[test]
    fn common_patterns() {
        assert!(full(".*", ""));
        assert!(full(".*", "vm-01254"));
        assert!(full("vm-01254|vm-01257", "vm-01257"));
        assert!(!full("vm-01254|vm-01257", "vm-012570"));
        assert!(full("172\\.17\\.86\\..*", "172.17.86.51"));
        assert!(!full("172\\.17\\.86\\..*", "172x17.86.51"));
        assert!(full("172.17.86..*", "172x17.86.51"));
        assert!(full("vm-0[0-9]{4}", "vm-01254"));
        assert!(!full("vm-0[0-9]{4}", "vm-012545"));
        assert!(full("(vm|host)-\\d+", "host-12"));
        assert!(!full("pcc-(?:00)+443", "pcc-000443"));
        assert!(full("pcc-0(?:00)+443", "pcc-000443"));
        assert!(full("[^x]+", "abc"));
        assert!(!full("[^x]+", "axc"));
        assert!(full("a.*?b", "aXXb"));
        assert!(full("(?i)VMNIC[0-3]", "vmnic2"));
        assert!(full("^vmnic[0-3]$", "vmnic3"));
        assert!(full("a?b+c*", "bb"));
        assert!(full("x{2,}", "xxx"));
        assert!(!full("x{2,3}", "xxxx"));
        assert!(full("[a-c-]+", "a-c"));
        assert!(full("(a*)*b", "aaab"));
        // A full match is of the whole alternation, not of its first branch.
        assert!(full("a|ab", "ab"));
        // Java constructs the regex crate shares.
        assert!(full("\\bvm-\\w+\\b", "vm-01254"));
        assert!(full("\\p{L}+-\\d+", "vm-01254"));
        assert!(full("(?<kind>vm|host)-(?i:X)1", "host-x1"));
        assert!(full("[a-z&&[^aeiou]]+", "vmnc"));
        // `.` stops at line breaks, `\r` included (Java).
        assert!(!full("a.b", "a\rb") && !full("a.b", "a\nb"));
    }

    #[test]
    fn find_is_unanchored_unless_anchors_say_so() {
        assert!(find("86", "172.17.86.51"));
        assert!(!find("^86", "172.17.86.51"));
        assert!(find("51$", "172.17.86.51"));
        assert!(find("", "anything"));
        assert!(!full("86", "172.17.86.51"));
    }

    #[test]
    fn invalid_and_unsupported_patterns_are_reported() {
        for invalid in [
            "(ab",
            "ab)",
            "*a",
            "[ab",
            "a{3,1}",
            "a**",
            "(x|a+{2})",
            "(?i",
        ] {
            assert!(
                matches!(error(invalid), RegexError::Invalid(_)),
                "{invalid}: {:?}",
                error(invalid)
            );
        }
        assert_eq!(error("(ab").to_string(), "unclosed group near index 0");
        assert!(matches!(error("\\p{Foo}"), RegexError::Invalid(m) if m.contains("index 0")));
        assert_eq!(
            error("a**").to_string(),
            "Dangling meta character near index 2"
        );
        // One `?` after a quantifier is the lazy form, in both syntaxes.
        assert!(find("a*?b", "aab") && find("(?:a*)*b", "aab"));
        for (unsupported, what) in [
            ("(?=a)", "look-around"),
            ("a(?<!b)", "look-around"),
            ("(a)\\1", "back-references"),
            ("a++", "possessive"),
            ("a{2}+", "possessive"),
            ("(x|[ab]?+)", "possessive"),
            ("(?>ab)", "atomic groups"),
            ("\\Qa.b\\E", "the escape '\\Q'"),
            ("ab\\Z", "the escape '\\Z'"),
        ] {
            let e = error(unsupported);
            assert!(
                matches!(&e, RegexError::Unsupported(m) if m.contains(what)),
                "{unsupported}: {e:?}"
            );
            assert!(e.to_string().contains("does not support"), "{e}");
        }
        // Also in full-match mode (Warp 10 selectors), checked on the pattern as written.
        assert!(matches!(
            Regex::new("(?=vm)", Mode::Full),
            Err(RegexError::Unsupported(_))
        ));
        assert!(matches!(
            Regex::new("a)(b", Mode::Full),
            Err(RegexError::Invalid(_))
        ));
    }

    /// What a backtracking matcher takes exponential time over is linear here: no budget, no
    /// error, the right answer.
    #[test]
    fn pathological_patterns_match_in_linear_time() {
        let r = Regex::new("(a|a)*(a|a)*(a|a)*(a|a)*c", Mode::Full).unwrap();
        let text = "a".repeat(10_000);
        assert!(!r.is_match(&text));
        assert!(r.is_match(&(text + "c")));
        assert!(matches!(
            Regex::new("(a{1000}){1000}", Mode::Find),
            Err(RegexError::Unsupported(m)) if m.contains("large")
        ));
    }
}
