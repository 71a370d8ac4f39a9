//! The OAuth `state` parameter: a server-side single-use nonce (15-minute TTL) wrapped in an
//! HMAC-signed, short-lived token, so a forged, expired or replayed state is refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::OAuthStep;

/// What a state token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateClaims {
    /// The nonce stored server-side.
    pub n: String,
    /// The step it guards.
    pub s: OAuthStep,
    /// The organization it is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub o: Option<String>,
    /// Expiry, epoch seconds.
    pub e: i64,
}

/// Signs and checks state tokens.
#[derive(Clone)]
pub struct StateSigner {
    key: Vec<u8>,
}

impl StateSigner {
    /// A signer keyed from a server-only secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut key = b"igbridge/oauth-state/".to_vec();
        key.extend_from_slice(secret);
        Self { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// The token for these claims.
    pub fn sign(&self, claims: &StateClaims) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        format!(
            "{body}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// The claims of an authentic, unexpired token for `step`.
    pub fn verify(&self, token: &str, step: OAuthStep, now: i64) -> Option<StateClaims> {
        let (body, sig) = token.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&sig).ok()?;
        let claims: StateClaims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        (claims.s == step && claims.e > now).then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_expired_or_wrong_step_states_are_refused() {
        let s = StateSigner::new(b"secret");
        let c = StateClaims {
            n: "abc".into(),
            s: OAuthStep::Facebook,
            o: Some("org".into()),
            e: 1000,
        };
        let t = s.sign(&c);
        assert_eq!(s.verify(&t, OAuthStep::Facebook, 999), Some(c.clone()));
        assert_eq!(s.verify(&t, OAuthStep::Facebook, 1000), None, "expired");
        assert_eq!(s.verify(&t, OAuthStep::Livechat, 999), None, "wrong step");
        assert_eq!(
            StateSigner::new(b"other").verify(&t, OAuthStep::Facebook, 999),
            None,
            "forged"
        );
        let (_, sig) = t.split_once('.').unwrap();
        let other = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&StateClaims {
                o: Some("victim".into()),
                ..c
            })
            .unwrap(),
        );
        assert_eq!(
            s.verify(&format!("{other}.{sig}"), OAuthStep::Facebook, 999),
            None,
            "tampered"
        );
        assert_eq!(s.verify("garbage", OAuthStep::Facebook, 0), None);
    }
}
