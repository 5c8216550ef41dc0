//! A small backtracking regular-expression matcher for tag filters, because the project has no
//! regex crate. It covers what people write in OpenTSDB `regexp` filters and Warp 10 label
//! selectors, with Java `Pattern` syntax:
//!
//! - literals and escaped punctuation (`\.`, `\|`, `\-`), `.`, classes `[a-z0-9_]`, `[^x]`,
//!   and `\d \D \w \W \s \S` inside or outside classes;
//! - groups `( )` and `(?: )`, alternation `a|b`, anchors `^` and `$`;
//! - quantifiers `* + ? {n} {n,} {n,m}` and their lazy forms (`*?` ...);
//! - a leading `(?i)` for case-insensitive matching.
//!
//! Anything else (back-references, look-around, possessive quantifiers, `\b`, named groups,
//! Unicode classes, inline flags other than a leading `(?i)`) is refused with
//! [`RegexError::Unsupported`], which the simulator turns into a clear 400 rather than silently
//! matching the wrong series. Matching has a step budget so that a pathological pattern cannot
//! stall the server; exhausting it is reported as an error too.

use std::cell::Cell;
use std::fmt;

/// Upper bound of matcher steps for one match call; tag values are short, so real patterns
/// need far fewer.
const STEP_BUDGET: u64 = 1_000_000;

/// Longest pattern accepted, and largest counted repetition: both bound the matcher's recursion
/// depth (it recurses once per pattern item and per repetition), so the stack stays small.
const MAX_PATTERN_CHARS: usize = 1_000;
const MAX_REPEAT: u32 = 1_000;

/// Why a pattern could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RegexError {
    /// The pattern is not a valid regular expression (also invalid for Java).
    Invalid(String),
    /// The pattern is valid Java but uses a construct this matcher does not implement.
    Unsupported(String),
}

impl fmt::Display for RegexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegexError::Invalid(m) => write!(f, "{m}"),
            RegexError::Unsupported(m) => write!(
                f,
                "the simulator's regular-expression matcher does not support {m} \
                 (supported: literals, '.', classes, groups, '|', '^', '$', quantifiers, \
                 a leading '(?i)')"
            ),
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class {
        items: Vec<ClassItem>,
        negated: bool,
    },
    Start,
    End,
    Group(Box<Node>),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
        greedy: bool,
    },
}

#[derive(Debug, Clone)]
enum ClassItem {
    Range(char, char),
    Digit(bool),
    Word(bool),
    Space(bool),
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(crate) struct Regex {
    root: Node,
    case_insensitive: bool,
}

impl Regex {
    /// Compiles `pattern`.
    pub(crate) fn new(pattern: &str) -> Result<Regex, RegexError> {
        let (case_insensitive, body) = match pattern.strip_prefix("(?i)") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let chars: Vec<char> = body.chars().collect();
        if chars.len() > MAX_PATTERN_CHARS {
            return Err(RegexError::Unsupported(format!(
                "patterns longer than {MAX_PATTERN_CHARS} characters"
            )));
        }
        let mut p = Parser {
            chars: &chars,
            pos: 0,
        };
        let root = p.alternation()?;
        if p.pos < chars.len() {
            // Only an unmatched ')' stops the top-level parse early.
            return Err(RegexError::Invalid(format!(
                "Unmatched closing ')' near index {} in '{pattern}'",
                p.pos
            )));
        }
        Ok(Regex {
            root,
            case_insensitive,
        })
    }

    /// Whether the whole of `text` matches (Java `matches()`, Warp 10 label selectors).
    pub(crate) fn full_match(&self, text: &str) -> Result<bool, RegexError> {
        self.run(text, true)
    }

    /// Whether some substring of `text` matches (Java `find()`, OpenTSDB `regexp` filters).
    pub(crate) fn find(&self, text: &str) -> Result<bool, RegexError> {
        self.run(text, false)
    }

    fn run(&self, text: &str, anchored: bool) -> Result<bool, RegexError> {
        let chars: Vec<char> = text.chars().collect();
        let m = Matcher {
            text: &chars,
            ci: self.case_insensitive,
            steps: Cell::new(0),
        };
        let starts = if anchored { 0..1 } else { 0..chars.len() + 1 };
        for start in starts {
            let found = m.node(&self.root, start, &mut |end| {
                !anchored || end == chars.len()
            });
            if m.steps.get() > STEP_BUDGET {
                return Err(RegexError::Unsupported(
                    "patterns this expensive to match (step budget exhausted)".to_owned(),
                ));
            }
            if found {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn invalid(&self, what: &str) -> RegexError {
        RegexError::Invalid(format!("{what} near index {}", self.pos))
    }

    fn alternation(&mut self) -> Result<Node, RegexError> {
        let mut branches = vec![self.concat()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.concat()?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Node::Concat(Vec::new()))
        } else {
            Node::Alt(branches)
        })
    }

    fn concat(&mut self) -> Result<Node, RegexError> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            let atom = self.quantified(atom)?;
            items.push(atom);
        }
        Ok(Node::Concat(items))
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, RegexError> {
        let (min, max) = match self.peek() {
            Some('*') => {
                self.pos += 1;
                (0, None)
            }
            Some('+') => {
                self.pos += 1;
                (1, None)
            }
            Some('?') => {
                self.pos += 1;
                (0, Some(1))
            }
            Some('{') => match self.braces()? {
                Some(range) => range,
                None => return Ok(atom),
            },
            _ => return Ok(atom),
        };
        if matches!(atom, Node::Start | Node::End) {
            return Err(self.invalid("Dangling meta character"));
        }
        let greedy = match self.peek() {
            Some('?') => {
                self.pos += 1;
                false
            }
            Some('+') => return Err(RegexError::Unsupported("possessive quantifiers".into())),
            _ => true,
        };
        if let Some(c) = self.peek()
            && matches!(c, '*' | '+' | '?')
        {
            return Err(self.invalid("Dangling meta character"));
        }
        Ok(Node::Repeat {
            node: Box::new(atom),
            min,
            max,
            greedy,
        })
    }

    /// Parses `{n}`, `{n,}` or `{n,m}` at the cursor.
    fn braces(&mut self) -> Result<Option<(u32, Option<u32>)>, RegexError> {
        let rest: String = self.chars[self.pos..].iter().collect();
        let Some(close) = rest.find('}') else {
            return Err(self.invalid("Unclosed counted closure"));
        };
        let inner = &rest[1..close];
        let parse = |s: &str| s.trim().parse::<u32>().ok();
        let range = match inner.split_once(',') {
            None => parse(inner).map(|n| (n, Some(n))),
            Some((a, "")) => parse(a).map(|n| (n, None)),
            Some((a, b)) => match (parse(a), parse(b)) {
                (Some(a), Some(b)) if a <= b => Some((a, Some(b))),
                _ => None,
            },
        };
        if let Some((min, max)) = range
            && (min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT))
        {
            return Err(RegexError::Unsupported(format!(
                "counted repetitions above {MAX_REPEAT}"
            )));
        }
        match range {
            Some(r) => {
                self.pos += rest[..=close].chars().count();
                Ok(Some(r))
            }
            None => Err(self.invalid("Illegal repetition range")),
        }
    }

    fn atom(&mut self) -> Result<Node, RegexError> {
        let Some(c) = self.peek() else {
            return Err(self.invalid("Unexpected end of pattern"));
        };
        self.pos += 1;
        match c {
            '.' => Ok(Node::Any),
            '^' => Ok(Node::Start),
            '$' => Ok(Node::End),
            '*' | '+' | '?' => Err(self.invalid(&format!("Dangling meta character '{c}'"))),
            '{' => Err(self.invalid("Illegal repetition")),
            '(' => {
                if self.peek() == Some('?') {
                    if self.chars.get(self.pos + 1) == Some(&':') {
                        self.pos += 2;
                    } else {
                        return Err(RegexError::Unsupported(
                            "look-around, named groups or inline flags".into(),
                        ));
                    }
                }
                let inner = self.alternation()?;
                if self.peek() != Some(')') {
                    return Err(self.invalid("Unclosed group"));
                }
                self.pos += 1;
                Ok(Node::Group(Box::new(inner)))
            }
            '[' => self.class(),
            '\\' => self.escape(false).map(|e| match e {
                Escaped::Char(c) => Node::Char(c),
                Escaped::Class(item) => Node::Class {
                    items: vec![item],
                    negated: false,
                },
            }),
            c => Ok(Node::Char(c)),
        }
    }

    fn escape(&mut self, in_class: bool) -> Result<Escaped, RegexError> {
        let Some(c) = self.peek() else {
            return Err(self.invalid("Unexpected internal error (trailing backslash)"));
        };
        self.pos += 1;
        Ok(match c {
            'd' => Escaped::Class(ClassItem::Digit(true)),
            'D' => Escaped::Class(ClassItem::Digit(false)),
            'w' => Escaped::Class(ClassItem::Word(true)),
            'W' => Escaped::Class(ClassItem::Word(false)),
            's' => Escaped::Class(ClassItem::Space(true)),
            'S' => Escaped::Class(ClassItem::Space(false)),
            't' => Escaped::Char('\t'),
            'n' => Escaped::Char('\n'),
            'r' => Escaped::Char('\r'),
            c if c.is_ascii_alphanumeric() => {
                let _ = in_class;
                return Err(RegexError::Unsupported(format!("the escape '\\{c}'")));
            }
            c => Escaped::Char(c),
        })
    }

    fn class(&mut self) -> Result<Node, RegexError> {
        let mut items = Vec::new();
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.invalid("Unclosed character class"));
            };
            self.pos += 1;
            let lo = match c {
                ']' if !first => break,
                '[' => {
                    return Err(RegexError::Unsupported(
                        "nested character classes".to_owned(),
                    ));
                }
                '&' if self.peek() == Some('&') => {
                    return Err(RegexError::Unsupported("class intersections".to_owned()));
                }
                '\\' => match self.escape(true)? {
                    Escaped::Class(item) => {
                        items.push(item);
                        first = false;
                        continue;
                    }
                    Escaped::Char(c) => c,
                },
                c => c,
            };
            first = false;
            // A range `lo-hi`, unless the '-' is last in the class.
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&c| c != ']') {
                self.pos += 1;
                let hi = match self.peek() {
                    Some('\\') => {
                        self.pos += 1;
                        match self.escape(true)? {
                            Escaped::Char(c) => c,
                            Escaped::Class(_) => {
                                return Err(self.invalid("Illegal character range"));
                            }
                        }
                    }
                    Some(c) => {
                        self.pos += 1;
                        c
                    }
                    None => return Err(self.invalid("Unclosed character class")),
                };
                if hi < lo {
                    return Err(self.invalid("Illegal character range"));
                }
                items.push(ClassItem::Range(lo, hi));
            } else {
                items.push(ClassItem::Range(lo, lo));
            }
        }
        Ok(Node::Class { items, negated })
    }
}

enum Escaped {
    Char(char),
    Class(ClassItem),
}

struct Matcher<'a> {
    text: &'a [char],
    ci: bool,
    steps: Cell<u64>,
}

impl Matcher<'_> {
    fn eq(&self, a: char, b: char) -> bool {
        a == b || (self.ci && a.to_lowercase().eq(b.to_lowercase()))
    }

    fn class_has(&self, items: &[ClassItem], c: char) -> bool {
        items.iter().any(|item| match *item {
            ClassItem::Range(lo, hi) => {
                (lo..=hi).contains(&c)
                    || (self.ci
                        && c.to_lowercase()
                            .chain(c.to_uppercase())
                            .any(|x| (lo..=hi).contains(&x)))
            }
            ClassItem::Digit(yes) => c.is_ascii_digit() == yes,
            ClassItem::Word(yes) => (c.is_ascii_alphanumeric() || c == '_') == yes,
            ClassItem::Space(yes) => matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c') == yes,
        })
    }

    /// Matches `node` at `pos`, calling `k` with each end position until `k` accepts.
    fn node(&self, node: &Node, pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        let steps = self.steps.get() + 1;
        self.steps.set(steps);
        if steps > STEP_BUDGET {
            return false;
        }
        match node {
            Node::Char(c) => match self.text.get(pos) {
                Some(&t) if self.eq(*c, t) => k(pos + 1),
                _ => false,
            },
            Node::Any => match self.text.get(pos) {
                Some(&t) if t != '\n' && t != '\r' => k(pos + 1),
                _ => false,
            },
            Node::Class { items, negated } => match self.text.get(pos) {
                Some(&t) if self.class_has(items, t) != *negated => k(pos + 1),
                _ => false,
            },
            Node::Start => pos == 0 && k(pos),
            Node::End => pos == self.text.len() && k(pos),
            Node::Group(inner) => self.node(inner, pos, k),
            Node::Concat(items) => self.concat(items, pos, k),
            Node::Alt(branches) => branches.iter().any(|b| self.node(b, pos, k)),
            Node::Repeat {
                node,
                min,
                max,
                greedy,
            } => self.repeat(node, *min, *max, *greedy, 0, pos, k),
        }
    }

    fn concat(&self, items: &[Node], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        match items.split_first() {
            None => k(pos),
            Some((first, rest)) => self.node(first, pos, &mut |p| self.concat(rest, p, k)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn repeat(
        &self,
        node: &Node,
        min: u32,
        max: Option<u32>,
        greedy: bool,
        count: u32,
        pos: usize,
        k: &mut dyn FnMut(usize) -> bool,
    ) -> bool {
        if self.steps.get() > STEP_BUDGET {
            return false;
        }
        let can_more = max.is_none_or(|m| count < m);
        let more = |k: &mut dyn FnMut(usize) -> bool| {
            can_more
                && self.node(node, pos, &mut |p| {
                    // An empty iteration cannot make progress: stop there.
                    p != pos && self.repeat(node, min, max, greedy, count + 1, p, k)
                })
        };
        if count < min {
            // Mandatory iterations; allow an empty match to satisfy the minimum.
            return self.node(node, pos, &mut |p| {
                self.repeat(node, min, max, greedy, count + 1, p, k)
            });
        }
        if greedy {
            more(k) || k(pos)
        } else {
            // Lazy: try to stop here first, then take one more iteration.
            let stopped = k(pos);
            stopped || more(k)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(p: &str, t: &str) -> bool {
        Regex::new(p).unwrap().full_match(t).unwrap()
    }

    fn find(p: &str, t: &str) -> bool {
        Regex::new(p).unwrap().find(t).unwrap()
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
        assert!(matches!(Regex::new("(ab"), Err(RegexError::Invalid(_))));
        assert!(matches!(Regex::new("ab)"), Err(RegexError::Invalid(_))));
        assert!(matches!(Regex::new("*a"), Err(RegexError::Invalid(_))));
        assert!(matches!(Regex::new("[ab"), Err(RegexError::Invalid(_))));
        assert!(matches!(Regex::new("a{3,1}"), Err(RegexError::Invalid(_))));
        assert!(matches!(
            Regex::new("(?=a)"),
            Err(RegexError::Unsupported(_))
        ));
        assert!(matches!(
            Regex::new("\\bx"),
            Err(RegexError::Unsupported(_))
        ));
        assert!(matches!(
            Regex::new("(a)\\1"),
            Err(RegexError::Unsupported(_))
        ));
        assert!(matches!(Regex::new("a++"), Err(RegexError::Unsupported(_))));
        let e = Regex::new("\\p{L}").unwrap_err().to_string();
        assert!(e.contains("does not support"), "{e}");
    }

    #[test]
    fn pathological_patterns_hit_the_budget_instead_of_hanging() {
        let r = Regex::new("(a|a)*(a|a)*(a|a)*(a|a)*c").unwrap();
        let text = "a".repeat(40);
        assert!(r.full_match(&text).is_err());
    }
}
