//! Secrets (the metrics read token, API v6 keys) wrapped so that no `Debug`, `Display`, log line,
//! error or manifest can print them by accident.

use std::fmt;

/// A secret string. `Debug` and `Display` print `***`; only [`Secret::expose`] reveals it, and
/// only the HTTP layer calls that, to build an `Authorization` header marked sensitive.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself. Call only where the value must be sent, never to log or format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret was configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Replaces every occurrence of the secret in `text` with `***`: used on server error bodies,
    /// which may echo the token (OVH's bad-token answer embeds the WarpScript).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < 4 {
            // Too short to be a real token and would mangle ordinary text.
            return text.to_string();
        }
        text.replace(&self.0, "***")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    /// Reads a secret from a string (e.g. the token of an API v6 answer). There is deliberately
    /// no `Serialize`: a secret must never be written back out by a derive.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(<empty>)"
        } else {
            "Secret(***)"
        })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_the_value() {
        let s = Secret::new("tok-123456");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(***))");
        assert_eq!(s.expose(), "tok-123456");
    }

    #[test]
    fn scrubs_echoed_values() {
        let s = Secret::new("tok-123456");
        assert_eq!(
            s.scrub("'tok-123456' AUTHENTICATE failed"),
            "'***' AUTHENTICATE failed"
        );
        assert_eq!(Secret::new("").scrub("abc"), "abc");
    }
}
