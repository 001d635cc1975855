//! Per-workspace secrets and the keyed hashes made with them.
//!
//! Each workspace has two 32-byte keys drawn from the operating system's
//! random source:
//! - the *identity key* turns an identity or anonymous visitor key into the
//!   `viewer_hash` that is stored instead of the plaintext. It never changes,
//!   so that a viewer who later becomes a member still hashes to the stored
//!   reference.
//! - the *pseudonym key* turns a `viewer_hash` into the pseudonym and
//!   `viewer_ref` shown in results. Rotating it makes every earlier label
//!   unrecognisable without touching stored data.

use crate::error::AudienceError;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;

pub const KEY_LEN: usize = 32;

/// Domain separation: an identity and an anonymous visitor key with the same
/// text must never hash alike, nor may a hash serve as a label.
pub mod domain {
    pub const IDENTITY: &[u8] = b"pg_audience/identity\0";
    pub const ANONYMOUS: &[u8] = b"pg_audience/anonymous\0";
    pub const PSEUDONYM: &[u8] = b"pg_audience/pseudonym\0";
    pub const REF_PSEUDONYMOUS: &[u8] = b"pg_audience/ref/pseudonymous\0";
    pub const REF_IDENTIFIED: &[u8] = b"pg_audience/ref/identified\0";
}

pub fn new_key() -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    OsRng.fill_bytes(&mut key);
    key
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn mac(key: &[u8], argument: &str, parts: &[&[u8]]) -> Result<[u8; 32], AudienceError> {
    if key.len() != KEY_LEN {
        return Err(AudienceError::InvalidKey { argument: argument.to_string() });
    }
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    Ok(m.finalize().into_bytes().into())
}

/// The stored stand-in for an authenticated viewer's identity.
pub fn identity_hash(identity_key: &[u8], identity: &str) -> Result<[u8; 32], AudienceError> {
    mac(identity_key, "key", &[domain::IDENTITY, identity.as_bytes()])
}

/// The stored stand-in for an anonymous visitor key (cookie or device id).
pub fn anonymous_hash(identity_key: &[u8], anonymous_id: &str) -> Result<[u8; 32], AudienceError> {
    mac(identity_key, "key", &[domain::ANONYMOUS, anonymous_id.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_full_length() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), KEY_LEN);
    }

    #[test]
    fn hashes_are_deterministic_and_keyed() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let h = identity_hash(&k1, "alice@example.com").unwrap();
        assert_eq!(h, identity_hash(&k1, "alice@example.com").unwrap());
        assert_ne!(h, identity_hash(&k2, "alice@example.com").unwrap());
        assert_ne!(h, identity_hash(&k1, "bob@example.com").unwrap());
    }

    #[test]
    fn identity_and_anonymous_key_of_same_text_differ() {
        let k = [7u8; 32];
        assert_ne!(identity_hash(&k, "abc").unwrap(), anonymous_hash(&k, "abc").unwrap());
    }

    #[test]
    fn rejects_keys_of_wrong_length() {
        for len in [0usize, 16, 31, 33, 64] {
            let key = vec![0u8; len];
            assert_eq!(
                identity_hash(&key, "x"),
                Err(AudienceError::InvalidKey { argument: "key".into() }),
                "key of {len} bytes"
            );
        }
    }

    #[test]
    fn matches_rfc4231_style_reference() {
        // HMAC-SHA256 of "" with a 32-byte zero key, checked against an
        // independent implementation (Python's hmac module).
        let out = mac(&[0u8; 32], "key", &[]).unwrap();
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    }
}
