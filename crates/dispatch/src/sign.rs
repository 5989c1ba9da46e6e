//! Standard Webhooks signatures (<https://www.standardwebhooks.com>).
//!
//! A message is signed as `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), where
//! the timestamp is in Unix seconds. During a secret rotation several signatures are sent,
//! space-separated; a receiver accepts the message if any of them verifies.
//!
//! Secrets: `whsec_` + standard base64 of the key (what [`generate_secret`] makes, what the
//! Standard Webhooks libraries take). An alert's own secret that does not start with `whsec_`
//! is used as its UTF-8 bytes (receivers that take a plain shared secret).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "whsec_";

/// Bytes of key in a generated secret.
pub const GENERATED_KEY_BYTES: usize = 32;

/// A signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    // Keys never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.key.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret: expected whsec_ followed by standard base64")]
    Base64,
    #[error("secret: empty key")]
    Empty,
}

impl Secret {
    /// Parses `whsec_<base64>`, or takes any other string's bytes as the key.
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        let key = match s.strip_prefix(PREFIX) {
            Some(b64) => STANDARD.decode(b64).map_err(|_| SecretError::Base64)?,
            None => s.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self { key })
    }

    /// `v1,<base64 signature>` of one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut out = String::with_capacity(48);
        out.push_str("v1,");
        STANDARD.encode_string(self.mac(msg_id, timestamp, body), &mut out);
        out
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length: this cannot fail.
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable_hmac(),
        };
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// Whether `header` (space-separated `v1,<sig>` entries) holds a valid signature of the
    /// message under this key (constant-time comparison).
    pub fn verify(&self, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let expected = self.mac(msg_id, timestamp, body);
        header.split(' ').any(|entry| {
            let Some(sig) = entry.strip_prefix("v1,") else {
                return false;
            };
            let Ok(given) = STANDARD.decode(sig) else {
                return false;
            };
            constant_time_eq(&given, &expected)
        })
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // `Hmac::new_from_slice` only fails for fixed-size-key MACs.
    panic!("HMAC-SHA256 accepts keys of any length")
}

/// Whether two secrets are equal, compared without an early exit at the first difference
/// (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// The `webhook-signature` header value: one signature per secret, space-separated.
pub fn signature_header(secrets: &[Secret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut header = String::new();
    for secret in secrets {
        if !header.is_empty() {
            header.push(' ');
        }
        header.push_str(&secret.sign(msg_id, timestamp, body));
    }
    header
}

/// A new random secret, `whsec_` + base64 of 32 bytes from the OS generator.
pub fn generate_secret() -> String {
    let mut key = [0u8; GENERATED_KEY_BYTES];
    rand::rng().fill_bytes(&mut key);
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// Why a received webhook was refused by [`verify_request`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("webhook-timestamp: expected Unix seconds")]
    Timestamp,
    #[error("webhook-timestamp is {0} s away from now: outside the tolerance")]
    Stale(i64),
    #[error("webhook-signature: no signature matches")]
    Signature,
}

/// Verifies a received webhook as a receiver does: the timestamp within `tolerance_secs` of
/// `now` (replay protection), and one of the signatures valid under `secret`.
pub fn verify_request(
    secret: &Secret,
    msg_id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp.parse().map_err(|_| VerifyError::Timestamp)?;
    if (now - ts).abs() > tolerance_secs {
        return Err(VerifyError::Stale(now - ts));
    }
    if secret.verify(msg_id, ts, body, signature) {
        Ok(())
    } else {
        Err(VerifyError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks specification's published example.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_specification_example() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        assert_eq!(
            secret.sign(SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes()),
            SPEC_SIG
        );
        assert!(secret.verify(SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes(), SPEC_SIG));
        assert!(!secret.verify(SPEC_ID, SPEC_TS + 1, SPEC_BODY.as_bytes(), SPEC_SIG));
        assert!(!secret.verify(SPEC_ID, SPEC_TS, b"{}", SPEC_SIG));
    }

    #[test]
    fn rotation_sends_one_signature_per_secret() {
        let old = Secret::parse(SPEC_SECRET).unwrap();
        let new = Secret::parse(&generate_secret()).unwrap();
        let header = signature_header(&[new.clone(), old.clone()], "id", 5, b"x");
        assert_eq!(header.split(' ').count(), 2);
        assert!(old.verify("id", 5, b"x", &header));
        assert!(new.verify("id", 5, b"x", &header));
        let other = Secret::parse(&generate_secret()).unwrap();
        assert!(!other.verify("id", 5, b"x", &header));
    }

    #[test]
    fn secrets_parse_and_never_print() {
        assert_eq!(Secret::parse("whsec_!!"), Err(SecretError::Base64));
        assert_eq!(Secret::parse("whsec_"), Err(SecretError::Empty));
        let plain = Secret::parse("0123456789abcdef").unwrap();
        assert_eq!(plain.key, b"0123456789abcdef");
        let generated = generate_secret();
        assert!(generated.starts_with("whsec_"));
        assert_eq!(Secret::parse(&generated).unwrap().key.len(), 32);
        assert_ne!(generated, generate_secret());
        assert!(!format!("{plain:?}").contains("0123"));
    }

    #[test]
    fn receivers_check_the_timestamp() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        let ts = SPEC_TS.to_string();
        let body = SPEC_BODY.as_bytes();
        assert_eq!(
            verify_request(&secret, SPEC_ID, &ts, SPEC_SIG, body, SPEC_TS + 10, 300),
            Ok(())
        );
        assert_eq!(
            verify_request(&secret, SPEC_ID, &ts, SPEC_SIG, body, SPEC_TS + 301, 300),
            Err(VerifyError::Stale(301))
        );
        assert_eq!(
            verify_request(&secret, SPEC_ID, "x", SPEC_SIG, body, SPEC_TS, 300),
            Err(VerifyError::Timestamp)
        );
        assert_eq!(
            verify_request(&secret, SPEC_ID, &ts, "v1,AAAA", body, SPEC_TS, 300),
            Err(VerifyError::Signature)
        );
    }
}
