//! API tokens: generation, the printable form, parsing and constant-time verification against a stored hash.
//!
//! A token reads `aura_<id>_<secret>`. The id (12 lowercase hex digits) is public and used to look the token up;
//! the secret (43 base64url characters, 256 random bits) is never stored: only its SHA-256 is. Verification
//! compares hashes in constant time.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "aura_";
const ID_LEN: usize = 12;
const SECRET_BYTES: usize = 32;
const SECRET_LEN: usize = 43;

/// Why a token could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The presented string is not shaped like an Aura token.
    #[error("malformed token")]
    Malformed,
    /// The operating system's random source failed.
    #[error("random source unavailable: {0}")]
    Random(String),
}

/// The public identifier of a token: 12 lowercase hex digits.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct TokenId(String);

impl TokenId {
    /// Parses a token id.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        if s.len() == ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(TokenError::Malformed)
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TokenId {
    type Error = TokenError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TokenId> for String {
    fn from(value: TokenId) -> Self {
        value.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 of a token's secret; the only form of the secret that is ever stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Wraps 32 stored bytes; `None` when the length is wrong.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// The raw hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn of_secret(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A freshly generated or presented token: its id and secret. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct IssuedToken {
    id: TokenId,
    secret: String,
}

impl IssuedToken {
    /// Generates a new token from the operating system's random source.
    pub fn generate() -> Result<Self, TokenError> {
        let mut raw = [0u8; 6 + SECRET_BYTES];
        getrandom::fill(&mut raw).map_err(|e| TokenError::Random(e.to_string()))?;
        let (id_bytes, secret_bytes) = raw.split_at(6);
        let id = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            id: TokenId(id),
            secret: URL_SAFE_NO_PAD.encode(secret_bytes),
        })
    }

    /// Parses the printable form `aura_<id>_<secret>` presented by a client.
    pub fn parse(presented: &str) -> Result<Self, TokenError> {
        let rest = presented
            .strip_prefix(PREFIX)
            .ok_or(TokenError::Malformed)?;
        let (id, secret) = rest.split_at_checked(ID_LEN).ok_or(TokenError::Malformed)?;
        let secret = secret.strip_prefix('_').ok_or(TokenError::Malformed)?;
        let well_formed = secret.len() == SECRET_LEN
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(TokenError::Malformed);
        }
        Ok(Self {
            id: TokenId::parse(id)?,
            secret: secret.to_owned(),
        })
    }

    /// The public id.
    pub fn id(&self) -> &TokenId {
        &self.id
    }

    /// The hash to store for this token.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of_secret(&self.secret)
    }

    /// Whether this token's secret matches `stored`, compared in constant time.
    pub fn matches(&self, stored: &TokenHash) -> bool {
        self.hash().0.ct_eq(&stored.0).into()
    }

    /// The printable form to hand to the user exactly once.
    pub fn reveal(&self) -> String {
        format!("{PREFIX}{}_{}", self.id, self.secret)
    }
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_back_and_verify() {
        let token = IssuedToken::generate().unwrap();
        let shown = token.reveal();
        assert!(shown.starts_with("aura_"));
        let parsed = IssuedToken::parse(&shown).unwrap();
        assert_eq!(parsed.id(), token.id());
        assert!(parsed.matches(&token.hash()));
    }

    #[test]
    fn a_changed_secret_does_not_verify() {
        let token = IssuedToken::generate().unwrap();
        let mut shown = token.reveal().into_bytes();
        let last = shown.len() - 1;
        shown[last] = if shown[last] == b'A' { b'B' } else { b'A' };
        let forged = IssuedToken::parse(std::str::from_utf8(&shown).unwrap()).unwrap();
        assert!(!forged.matches(&token.hash()));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let good = IssuedToken::generate().unwrap().reveal();
        for bad in [
            "",
            "aura_",
            "bearer",
            &good[..good.len() - 1],
            &format!("{good}x"),
            &good.replacen("aura_", "aurb_", 1),
            &good.replacen('_', "-", 2),
        ] {
            assert_eq!(
                IssuedToken::parse(bad).unwrap_err(),
                TokenError::Malformed,
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let token = IssuedToken::generate().unwrap();
        let debug = format!("{token:?}");
        let secret = token.reveal();
        let secret = &secret[secret.len() - SECRET_LEN..];
        assert!(!debug.contains(secret));
    }
}
