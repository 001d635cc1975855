//! Request tokens: HS256 JWTs that an application sharing one pooled
//! database role passes to `audience.authenticate` to say which end user a
//! transaction runs for. Verification is jsonwebtoken's (constant-time HMAC
//! comparison), restricted to HS256.

use crate::error::AudienceError;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The member identity the transaction runs for.
    pub sub: String,
    /// If present, the token speaks for this one workspace (by slug) only.
    pub workspace: Option<String>,
    /// The token's own id (claim jti), by which it is spent on first use.
    pub id: Option<String>,
    /// When it expires (claim exp), in seconds since 1970: until then its id
    /// must be remembered as spent.
    pub expires: u64,
}

/// As sent: a missing claim must read as missing, not as malformed JSON.
#[derive(Deserialize)]
struct Sent {
    sub: Option<String>,
    exp: Option<u64>,
    workspace: Option<String>,
    jti: Option<String>,
}

/// What is remembered of a spent token: a digest of its id, so that the table
/// of spent tokens holds no claim in the clear.
pub fn spent_id(id: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(id.as_bytes()).to_vec()
}

fn refused(reason: &'static str) -> AudienceError {
    AudienceError::InvalidToken { reason }
}

/// The claims of `token` if it is an unexpired HS256 JWT signed with `secret`.
pub fn verify(token: &str, secret: &[u8]) -> Result<Claims, AudienceError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    // An expired token is expired: the database clock is the reference.
    validation.leeway = 0;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    let data = decode::<Sent>(token, &DecodingKey::from_secret(secret), &validation).map_err(|e| {
        refused(match e.kind() {
            ErrorKind::InvalidSignature => "signature does not match",
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
                "algorithm must be HS256"
            }
            ErrorKind::ExpiredSignature => "token has expired",
            ErrorKind::ImmatureSignature => "token is not valid yet",
            ErrorKind::MissingRequiredClaim(_) => "claims sub and exp are required",
            _ => "not a well-formed JWT",
        })
    })?;
    let sent = data.claims;
    let (Some(sub), Some(expires)) = (sent.sub, sent.exp) else {
        return Err(refused("claims sub and exp are required"));
    };
    if sub.trim().is_empty() {
        return Err(refused("claim sub must not be empty"));
    }
    Ok(Claims { sub, workspace: sent.workspace, id: sent.jti, expires })
}

/// The claims of a token good once: `verify`'s, and an id (claim jti) to
/// spend it by.
pub fn verify_once(token: &str, secret: &[u8]) -> Result<(Claims, String), AudienceError> {
    let claims = verify(token, secret)?;
    let Some(id) = claims.id.clone() else {
        return Err(refused("claims sub, exp and jti are required"));
    };
    if id.is_empty() || id.len() > 256 {
        return Err(refused("claim jti must be 1 to 256 bytes"));
    }
    Ok((claims, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    /// The same text with its first character changed.
    fn tamper(s: &str) -> String {
        let first = if s.starts_with('e') { 'f' } else { 'e' };
        format!("{first}{}", &s[1..])
    }

    fn sign(alg: Algorithm, claims: serde_json::Value, secret: &[u8]) -> String {
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    #[test]
    fn accepts_a_valid_token() {
        let exp = now() + 60;
        let t = sign(Algorithm::HS256, json!({"sub": "ada@acme.example", "exp": exp, "workspace": "acme", "jti": "r-1"}), SECRET);
        let c = verify(&t, SECRET).unwrap();
        assert_eq!(c.sub, "ada@acme.example");
        assert_eq!(c.workspace.as_deref(), Some("acme"));
        assert_eq!((c.id.as_deref(), c.expires), (Some("r-1"), exp));
        assert_eq!(verify_once(&t, SECRET).unwrap().1, "r-1");
    }

    #[test]
    fn refuses_every_bad_token() {
        let valid = json!({"sub": "ada@acme.example", "exp": now() + 60, "jti": "r-1"});
        let good = sign(Algorithm::HS256, valid.clone(), SECRET);
        let (head, rest) = good.split_once('.').unwrap();
        let payload = rest.split_once('.').unwrap().0;
        // {"alg":"none","typ":"JWT"}
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let cases: Vec<(&str, String, &str)> = vec![
            ("wrong secret", sign(Algorithm::HS256, valid.clone(), b"another secret of thirty-two byte"), "signature does not match"),
            ("tampered payload", format!("{head}.{}.{}", tamper(payload), rest.split_once('.').unwrap().1), "signature does not match"),
            ("alg none, no signature", format!("{none_header}.{payload}."), "not a well-formed JWT"),
            ("alg none, kept signature", format!("{none_header}.{rest}"), "not a well-formed JWT"),
            ("HS512", sign(Algorithm::HS512, valid.clone(), SECRET), "algorithm must be HS256"),
            ("expired", sign(Algorithm::HS256, json!({"sub": "a", "exp": now() - 1, "jti": "r"}), SECRET), "token has expired"),
            ("no exp", sign(Algorithm::HS256, json!({"sub": "a", "jti": "r"}), SECRET), "claims sub and exp are required"),
            ("no sub", sign(Algorithm::HS256, json!({"exp": now() + 60, "jti": "r"}), SECRET), "claims sub and exp are required"),
            ("no jti", sign(Algorithm::HS256, json!({"sub": "a", "exp": now() + 60}), SECRET), "claims sub, exp and jti are required"),
            ("empty jti", sign(Algorithm::HS256, json!({"sub": "a", "exp": now() + 60, "jti": ""}), SECRET), "claim jti must be 1 to 256 bytes"),
            ("empty sub", sign(Algorithm::HS256, json!({"sub": " ", "exp": now() + 60, "jti": "r"}), SECRET), "claim sub must not be empty"),
            ("not yet valid", sign(Algorithm::HS256, json!({"sub": "a", "exp": now() + 600, "nbf": now() + 300, "jti": "r"}), SECRET), "token is not valid yet"),
            ("garbage", "not.a.token".to_string(), "not a well-formed JWT"),
            ("empty", String::new(), "not a well-formed JWT"),
        ];
        for (name, token, reason) in cases {
            match verify_once(&token, SECRET) {
                Err(AudienceError::InvalidToken { reason: got }) => {
                    assert_eq!(got, reason, "{name}");
                }
                other => panic!("{name}: expected a refusal, got {other:?}"),
            }
        }
    }
}
