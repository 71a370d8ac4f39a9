//! Meta's `signed_request` (deauthorize and data-deletion callbacks):
//! `base64url(HMAC-SHA256(app secret, payload segment)) . base64url(JSON payload)`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// How old (by `issued_at`) a signed request may be: a day.
pub const MAX_AGE_SECS: i64 = 24 * 60 * 60;

/// A verified request.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedRequest {
    /// The app-scoped user id.
    pub user_id: String,
    /// `issued_at`, epoch seconds.
    pub issued_at: Option<i64>,
    /// The whole payload.
    pub payload: Value,
}

/// Why a signed request was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SignedRequestError {
    /// Not two base64url segments, or the payload is not a JSON object.
    #[error("malformed signed_request")]
    Malformed,
    /// The signature does not match.
    #[error("signed_request signature mismatch")]
    BadSignature,
    /// The algorithm is not HMAC-SHA256.
    #[error("unsupported signed_request algorithm")]
    WrongAlgorithm,
    /// A required field is missing.
    #[error("signed_request without {0}")]
    Missing(&'static str),
}

fn decode(segment: &str) -> Result<Vec<u8>, SignedRequestError> {
    URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|_| SignedRequestError::Malformed)
}

/// Verifies (constant time, over the still-encoded payload) and decodes a signed request.
pub fn parse(app_secret: &[u8], signed_request: &str) -> Result<SignedRequest, SignedRequestError> {
    let (sig, payload) = signed_request
        .trim()
        .split_once('.')
        .ok_or(SignedRequestError::Malformed)?;
    let sig = decode(sig)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    mac.verify_slice(&sig)
        .map_err(|_| SignedRequestError::BadSignature)?;
    let payload: Value =
        serde_json::from_slice(&decode(payload)?).map_err(|_| SignedRequestError::Malformed)?;
    if !payload.is_object() {
        return Err(SignedRequestError::Malformed);
    }
    let algorithm = payload
        .get("algorithm")
        .and_then(Value::as_str)
        .ok_or(SignedRequestError::Missing("algorithm"))?;
    if !algorithm.eq_ignore_ascii_case("HMAC-SHA256") {
        return Err(SignedRequestError::WrongAlgorithm);
    }
    let user_id = match payload.get("user_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(SignedRequestError::Missing("user_id")),
    };
    Ok(SignedRequest {
        user_id,
        issued_at: payload.get("issued_at").and_then(Value::as_i64),
        payload,
    })
}

/// Signs a payload as Meta does (tests and `igbridge send`).
pub fn sign(app_secret: &[u8], payload: &Value) -> String {
    let body = URL_SAFE_NO_PAD.encode(payload.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret).expect("HMAC takes any key length");
    mac.update(body.as_bytes());
    format!(
        "{}.{body}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"app-secret";

    #[test]
    fn vectors() {
        let good = json!({"algorithm": "HMAC-SHA256", "expires": 1291840400, "issued_at": 1291836800, "user_id": "APP_SCOPED_USER_2001"});
        let sr = parse(SECRET, &sign(SECRET, &good)).unwrap();
        assert_eq!(sr.user_id, "APP_SCOPED_USER_2001");
        assert_eq!(sr.issued_at, Some(1291836800));
        // Meta's older samples use lower case.
        let lower = json!({"algorithm": "hmac-sha256", "user_id": "U"});
        assert!(parse(SECRET, &sign(SECRET, &lower)).is_ok());
        // Padding tolerated.
        let padded = sign(SECRET, &good).replacen('.', "=.", 1);
        assert!(parse(SECRET, &padded).is_ok());

        assert_eq!(
            parse(b"other", &sign(SECRET, &good)).unwrap_err(),
            SignedRequestError::BadSignature
        );
        let tampered = {
            let s = sign(SECRET, &good);
            let (sig, _) = s.split_once('.').unwrap();
            format!(
                "{sig}.{}",
                URL_SAFE_NO_PAD.encode(
                    json!({"algorithm": "HMAC-SHA256", "user_id": "SOMEONE_ELSE"}).to_string()
                )
            )
        };
        assert_eq!(
            parse(SECRET, &tampered).unwrap_err(),
            SignedRequestError::BadSignature
        );
        let md5 = json!({"algorithm": "HMAC-MD5", "user_id": "U"});
        assert_eq!(
            parse(SECRET, &sign(SECRET, &md5)).unwrap_err(),
            SignedRequestError::WrongAlgorithm
        );
        assert_eq!(
            parse(SECRET, "no-dot").unwrap_err(),
            SignedRequestError::Malformed
        );
        assert_eq!(
            parse(SECRET, "!!!.???").unwrap_err(),
            SignedRequestError::Malformed
        );
        let no_user = json!({"algorithm": "HMAC-SHA256", "issued_at": 1});
        assert_eq!(
            parse(SECRET, &sign(SECRET, &no_user)).unwrap_err(),
            SignedRequestError::Missing("user_id")
        );
        let no_alg = json!({"user_id": "U"});
        assert_eq!(
            parse(SECRET, &sign(SECRET, &no_alg)).unwrap_err(),
            SignedRequestError::Missing("algorithm")
        );
        let not_object = {
            let body = URL_SAFE_NO_PAD.encode("[1,2]");
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
            mac.update(body.as_bytes());
            format!(
                "{}.{body}",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            )
        };
        assert_eq!(
            parse(SECRET, &not_object).unwrap_err(),
            SignedRequestError::Malformed
        );
    }
}
