//! Secrets as a type: the streaming token and the SASL password. `Debug` and `Display` print
//! `[redacted]`; there is no `Serialize`, `Clone` is explicit, and the only way to the text is
//! [`Secret::expose`], which the few callers that hand it to a client library use.

use std::fmt;

/// A secret string that does not print itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`, trimming surrounding white space (pasted tokens often carry a newline).
    /// Returns `None` for an empty value.
    pub fn new(value: impl Into<String>) -> Option<Self> {
        let mut s = value.into();
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return None;
        }
        if trimmed.len() != s.len() {
            s = trimmed.to_owned();
        }
        Some(Secret(s))
    }

    /// The secret text, for handing to a client library. Never log or return it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_their_value() {
        let s = Secret::new(" sdk-ABCDEF123\n").unwrap();
        assert_eq!(s.expose(), "sdk-ABCDEF123");
        assert!(!format!("{s:?} {s} {:?}", Some(&s)).contains("ABCDEF"));
        assert!(Secret::new(" \n").is_none());
    }
}
