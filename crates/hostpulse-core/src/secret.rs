//! Secrets as a type: the streaming token and the SASL password. `Debug` and `Display` print
//! `[redacted]`; there is no `Serialize`, `Clone` is explicit, and the only way to the text is
//! [`Secret::expose`], which the few callers that hand it to a client library use.

use std::fmt;

use thiserror::Error;

/// The longest streaming token accepted (Quix tokens are a few hundred characters).
pub const MAX_TOKEN_LEN: usize = 4096;

/// Why a text is not a streaming token. The text itself is never part of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Nothing but white space.
    #[error("`token` is empty: paste the streaming token from the Quix portal")]
    Empty,
    /// Inner white space, control characters, or far too long: not one token.
    #[error(
        "`token` must be one line of at most 4096 characters without spaces or control characters: paste the streaming token only"
    )]
    Malformed,
}

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

    /// A streaming token from text typed, pasted, piped or set in the environment: surrounding
    /// white space is trimmed; what remains must be one line without spaces or control
    /// characters, at most [`MAX_TOKEN_LEN`] long. The one check every way in uses.
    pub fn token(value: impl Into<String>) -> Result<Self, TokenError> {
        let secret = Secret::new(value).ok_or(TokenError::Empty)?;
        let t = secret.expose();
        if t.len() > MAX_TOKEN_LEN || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TokenError::Malformed);
        }
        Ok(secret)
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

    #[test]
    fn a_token_is_one_line_without_spaces_and_its_errors_never_quote_it() {
        assert_eq!(Secret::token(" sdk-abc\n").unwrap().expose(), "sdk-abc");
        assert_eq!(Secret::token(" \t\n").unwrap_err(), TokenError::Empty);
        for bad in ["sdk-abc def", "sdk-abc\ndef", "sdk\u{7}abc", "sdk\u{a0}abc"] {
            let e = Secret::token(bad).unwrap_err();
            assert_eq!(e, TokenError::Malformed, "{bad:?}");
            assert!(!e.to_string().contains("sdk"), "{e}");
        }
        assert!(Secret::token("a".repeat(MAX_TOKEN_LEN)).is_ok());
        assert_eq!(Secret::token("a".repeat(MAX_TOKEN_LEN + 1)).unwrap_err(), TokenError::Malformed);
    }
}
