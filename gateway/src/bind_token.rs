//! Signed bind tokens: the gateway's [`BindValidator`], so that a browser can only bind the
//! user id the application's backend vouched for.
//!
//! MPUSH leaves binding open (its default validator accepts everything): any client that
//! completed a handshake may bind any user id and receive that user's pushes. With a secret
//! configured (`[bind] token-secret-file`), the gateway accepts a bind only when its `data`
//! field (MPUSH's `BindUserMessage.data`, which MPUSH hands to its validator; the clients'
//! "alias") holds a token minted for that user id and not yet expired.
//!
//! Format, ASCII: `v1.<expiry>.<mac>`
//!
//! * `expiry`: Unix time in seconds, decimal digits only, after which the token is refused;
//! * `mac`: base64url without padding of HMAC-SHA256(secret, `v1.<expiry>.<user id>`).
//!
//! The expiry is all digits, so the MAC input splits one way only: a token for `alice` cannot
//! be replayed for another user or with another expiry. Tokens are bearer credentials for one
//! user until they expire; keep them short-lived and send them over TLS.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mpush_protocol::BindValidator;
use ring::hmac;

use crate::GatewayError;

/// The only version this gateway mints and accepts.
const VERSION: &str = "v1";
/// Shortest secret accepted: HMAC-SHA256 wants at least its output size of key material.
pub const MIN_SECRET_LEN: usize = 32;

/// Why a token was refused. Every variant ends the same way for the client (MPUSH's
/// `bind failed`); the distinction is for the gateway's log and for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The bind carried no `data` at all.
    #[error("no bind token")]
    Missing,
    /// Not `v1.<digits>.<base64url>`.
    #[error("malformed bind token")]
    Malformed,
    /// The expiry has passed.
    #[error("bind token expired")]
    Expired,
    /// The MAC does not match: another user id, a changed expiry, another secret, or forged.
    #[error("bind token signature does not match")]
    BadSignature,
}

/// Mints and checks bind tokens with one secret.
pub struct BindTokens {
    key: hmac::Key,
}

impl fmt::Debug for BindTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.write_str("BindTokens { .. }")
    }
}

impl BindTokens {
    /// Tokens keyed by `secret` (at least [`MIN_SECRET_LEN`] bytes).
    pub fn new(secret: &[u8]) -> Result<BindTokens, GatewayError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(GatewayError::Config(format!(
                "bind token secret is {} bytes; at least {MIN_SECRET_LEN} are needed (e.g. `openssl rand -base64 48`)",
                secret.len()
            )));
        }
        Ok(BindTokens { key: hmac::Key::new(hmac::HMAC_SHA256, secret) })
    }

    /// Reads the secret from a file; surrounding whitespace (a trailing newline) is not part
    /// of it.
    pub fn from_file(path: &Path) -> Result<BindTokens, GatewayError> {
        let text = std::fs::read(path).map_err(|e| {
            GatewayError::Config(format!("bind token-secret-file {}: cannot read: {e}", path.display()))
        })?;
        BindTokens::new(text.trim_ascii())
    }

    /// A token for `user_id` valid until `expires_at` (Unix seconds, inclusive).
    pub fn mint(&self, user_id: &str, expires_at: u64) -> String {
        let expiry = expires_at.to_string();
        let mac = URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, mac_input(&expiry, user_id).as_bytes()).as_ref());
        format!("{VERSION}.{expiry}.{mac}")
    }

    /// Checks `token` for `user_id` at `now` (Unix seconds).
    pub fn verify(&self, token: Option<&str>, user_id: &str, now: u64) -> Result<(), TokenError> {
        let token = token.ok_or(TokenError::Missing)?;
        let mut parts = token.split('.');
        let (Some(VERSION), Some(expiry), Some(mac), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        // Digits only (no sign, no spaces), so the MAC input has one reading; u64 bounds it.
        if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TokenError::Malformed);
        }
        let expires_at: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| TokenError::Malformed)?;
        // The MAC first, in constant time (ring's `verify`), so a forged token learns nothing
        // from whether its expiry was in range.
        hmac::verify(&self.key, mac_input(expiry, user_id).as_bytes(), &mac).map_err(|_| TokenError::BadSignature)?;
        if expires_at < now {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

/// The configured tokens: the secret from `MPUSH_GATEWAY_BIND_TOKEN_SECRET` or else
/// `token-secret-file`; `None` (open binding) without either.
pub fn from_config(c: &crate::config::BindConfig) -> Result<Option<std::sync::Arc<BindTokens>>, GatewayError> {
    let tokens = match (&c.token_secret, &c.token_secret_file) {
        (Some(secret), _) => BindTokens::new(secret.0.as_bytes())?,
        (None, Some(path)) => BindTokens::from_file(path)?,
        (None, None) => return Ok(None),
    };
    Ok(Some(std::sync::Arc::new(tokens)))
}

/// What the MAC covers: `v1.<expiry>.<user id>`.
fn mac_input(expiry: &str, user_id: &str) -> String {
    [VERSION, ".", expiry, ".", user_id].concat()
}

/// The gateway's [`BindValidator`]: the bind's `data` must be a valid token for its user id.
#[derive(Debug)]
pub struct BindTokenValidator {
    tokens: std::sync::Arc<BindTokens>,
}

impl BindTokenValidator {
    /// A validator checking tokens of `tokens`.
    pub fn new(tokens: std::sync::Arc<BindTokens>) -> BindTokenValidator {
        BindTokenValidator { tokens }
    }
}

impl BindValidator for BindTokenValidator {
    fn validate(&self, user_id: &str, data: Option<&str>, now_ms: u64) -> bool {
        match self.tokens.verify(data, user_id, now_ms / 1000) {
            Ok(()) => true,
            Err(e) => {
                // Debug level: a client can cause one line per connection, and each refusal
                // closes its connection anyway.
                tracing::debug!(user = %user_id, reason = %e, "bind refused");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";
    const NOW: u64 = 1_763_000_000;

    fn tokens() -> BindTokens {
        BindTokens::new(SECRET).unwrap()
    }

    #[test]
    fn a_minted_token_is_valid_for_its_user_until_its_expiry() {
        let t = tokens();
        let token = t.mint("alice", NOW + 60);
        assert!(token.starts_with("v1.1763000060."), "{token}");
        // 32 MAC bytes are 43 base64url characters, no padding.
        assert_eq!(token.rsplit('.').next().unwrap().len(), 43);
        assert_eq!(t.verify(Some(&token), "alice", NOW), Ok(()));
        assert_eq!(t.verify(Some(&token), "alice", NOW + 60), Ok(()), "the expiry second itself is valid");
        // Known-answer: the format is a contract with backends that mint tokens themselves.
        assert_eq!(
            t.mint("alice", 1_800_000_000),
            format!("v1.1800000000.{}", URL_SAFE_NO_PAD.encode(hmac::sign(&t.key, b"v1.1800000000.alice").as_ref()))
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let t = tokens();
        let token = t.mint("alice", NOW - 1);
        assert_eq!(t.verify(Some(&token), "alice", NOW), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_for_another_user_is_refused() {
        let t = tokens();
        let token = t.mint("alice", NOW + 60);
        assert_eq!(t.verify(Some(&token), "bob", NOW), Err(TokenError::BadSignature));
        assert_eq!(t.verify(Some(&token), "alice2", NOW), Err(TokenError::BadSignature));
        assert_eq!(t.verify(Some(&token), "", NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let t = tokens();
        let token = t.mint("alice", NOW + 60);
        // A later expiry with the old MAC.
        let later = token.replacen("1763000060", "1863000060", 1);
        assert_eq!(t.verify(Some(&later), "alice", NOW), Err(TokenError::BadSignature));
        // One MAC character changed.
        let mut bytes = token.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert_eq!(t.verify(Some(&flipped), "alice", NOW), Err(TokenError::BadSignature));
        // A truncated MAC (40 characters: 30 bytes, canonical base64url).
        assert_eq!(t.verify(Some(&token[..token.len() - 3]), "alice", NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let t = tokens();
        let good = t.mint("alice", NOW + 60);
        let mac = good.rsplit('.').next().unwrap();
        assert_eq!(t.verify(None, "alice", NOW), Err(TokenError::Missing));
        for bad in [
            String::new(),
            "v1".into(),
            "v1..".into(),
            format!("v2.1763000060.{mac}"),
            format!("v1.+1763000060.{mac}"),
            format!("v1.-1.{mac}"),
            format!("v1. 1763000060.{mac}"),
            format!("v1.99999999999999999999999.{mac}"),
            format!("v1.1763000060.{mac}="),
            format!("v1.1763000060.{mac}.extra"),
            "v1.1763000060.not*base64".into(),
            "user-42".into(),
        ] {
            assert_eq!(t.verify(Some(&bad), "alice", NOW), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn another_secret_refuses_the_token_and_short_secrets_are_rejected() {
        let token = tokens().mint("alice", NOW + 60);
        let other = BindTokens::new(b"another secret that is long enough, really").unwrap();
        assert_eq!(other.verify(Some(&token), "alice", NOW), Err(TokenError::BadSignature));
        assert!(BindTokens::new(b"short").is_err());
        assert!(BindTokens::new(&[b'x'; MIN_SECRET_LEN]).is_ok());
        assert_eq!(format!("{:?}", tokens()), "BindTokens { .. }");
    }

    #[test]
    fn the_validator_takes_the_session_clock_in_milliseconds() {
        let t = std::sync::Arc::new(tokens());
        let v = BindTokenValidator::new(t.clone());
        let token = t.mint("alice", NOW);
        assert!(v.validate("alice", Some(&token), NOW * 1000 + 999));
        assert!(!v.validate("alice", Some(&token), (NOW + 1) * 1000));
        assert!(!v.validate("alice", None, NOW * 1000));
    }
}
