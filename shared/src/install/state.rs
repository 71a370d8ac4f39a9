//! The install flow's `state`: sealed with the token key (AES-256-GCM, so it is both secret and
//! tamper-proof) and carried by the browser, so nothing is stored before the person confirms;
//! bound to the browser tab that started the flow, which alone holds the secret whose SHA-256 is
//! the state's `binding` (in `sessionStorage`, never a cookie). A state is good for one step and
//! 15 minutes; the platforms' codes are single-use, and the confirmation spends the flow once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cipher::{EncryptedToken, TokenCipher, TokenContext};
use crate::domain::OAuthStep;
use crate::ids::{FacebookUserId, IgAccountId, PageId};
use crate::livechat::Organization;

/// What the sealed state binds to: `install.flow` under the token key.
const CONTEXT: TokenContext = TokenContext::InstallFlow;

/// A Page offered for confirmation, with its token (only ever inside a sealed state).
#[derive(Clone, Serialize, Deserialize)]
pub struct OfferedPage {
    /// Facebook Page id.
    pub page_id: PageId,
    /// Page name.
    pub page_name: String,
    /// Linked Instagram professional account id.
    pub ig_account_id: IgAccountId,
    /// Its username.
    pub ig_username: Option<String>,
    /// The Page access token.
    pub page_token: String,
}

/// One step of one install flow. No `Debug`: it may carry Page tokens.
#[derive(Clone, Serialize, Deserialize)]
pub struct FlowState {
    /// The step this state is good for.
    pub step: OAuthStep,
    /// The flow's id: spent once, by the confirmation.
    pub flow: String,
    /// base64url(SHA-256(the browser's secret)).
    pub binding: String,
    /// Expiry, epoch seconds.
    pub expires_at: i64,
    /// The LiveChat organization, once authorized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
    /// Who logged in to Facebook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facebook_user_id: Option<FacebookUserId>,
    /// The Pages offered for confirmation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<OfferedPage>,
}

/// The binding of a browser secret: base64url(SHA-256(secret)).
pub fn binding_of(browser_secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(browser_secret.as_bytes()))
}

/// Whether `b` looks like a binding (43 base64url characters, as the page computes it).
pub fn is_binding(b: &str) -> bool {
    b.len() == 43
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

impl FlowState {
    /// Whether the request comes from the browser that started the flow (constant time).
    pub fn bound_to(&self, browser_secret: &str) -> bool {
        !browser_secret.is_empty() && crate::secret_eq(&self.binding, &binding_of(browser_secret))
    }

    /// The next step's state, keeping the flow, its binding and its deadline.
    pub fn next(&self, step: OAuthStep) -> FlowState {
        FlowState {
            step,
            ..self.clone()
        }
    }
}

/// Seals and opens flow states.
#[derive(Clone)]
pub struct FlowSealer {
    cipher: TokenCipher,
}

impl FlowSealer {
    /// A sealer under the token key.
    pub fn new(cipher: TokenCipher) -> Self {
        Self { cipher }
    }

    /// The opaque, URL-safe state.
    pub fn seal(&self, state: &FlowState) -> String {
        let json = serde_json::to_string(state).expect("flow state serializes");
        self.cipher
            .seal(&SecretString::from(json), &CONTEXT)
            .as_str()
            .to_string()
    }

    /// The state, if authentic, for `step` and not expired at `now`.
    pub fn open(&self, token: &str, step: OAuthStep, now: i64) -> Option<FlowState> {
        let json = self
            .cipher
            .open(&EncryptedToken::from_wire(token), &CONTEXT)
            .ok()?;
        let state: FlowState = serde_json::from_str(json.expose_secret()).ok()?;
        (state.step == step && state.expires_at > now).then_some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(key: u8) -> FlowSealer {
        let standard = base64::engine::general_purpose::STANDARD.encode([key; 32]);
        FlowSealer::new(TokenCipher::from_setting(&SecretString::from(standard)).unwrap())
    }

    fn state() -> FlowState {
        FlowState {
            step: OAuthStep::Facebook,
            flow: "f1".into(),
            binding: binding_of("browser-secret"),
            expires_at: 1000,
            organization: None,
            facebook_user_id: None,
            pages: vec![],
        }
    }

    #[test]
    fn forged_expired_wrong_step_or_tampered_states_are_refused() {
        let s = sealer(7);
        let t = s.seal(&state());
        assert!(s.open(&t, OAuthStep::Facebook, 999).is_some());
        assert!(s.open(&t, OAuthStep::Facebook, 1000).is_none(), "expired");
        assert!(s.open(&t, OAuthStep::Livechat, 999).is_none(), "wrong step");
        assert!(
            sealer(8).open(&t, OAuthStep::Facebook, 999).is_none(),
            "other key"
        );
        let mut tampered = t.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(s.open(&tampered, OAuthStep::Facebook, 999).is_none());
        assert!(s.open("garbage", OAuthStep::Facebook, 0).is_none());
    }

    #[test]
    fn only_the_starting_browser_is_bound() {
        let st = state();
        assert!(st.bound_to("browser-secret"));
        assert!(!st.bound_to("another-browser"));
        assert!(!st.bound_to(""));
        assert!(is_binding(&st.binding));
        assert!(!is_binding("short"));
    }

    #[test]
    fn a_sealed_state_hides_what_it_carries() {
        let mut st = state();
        st.pages.push(OfferedPage {
            page_id: "P1".into(),
            page_name: "Shop".into(),
            ig_account_id: "IG1".into(),
            ig_username: Some("shop".into()),
            page_token: "PAGE-TOKEN-SECRET".into(),
        });
        let t = sealer(7).seal(&st);
        assert!(!t.contains("PAGE-TOKEN") && !t.contains("Shop"));
        assert!(
            t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_:".contains(&c))
        );
    }
}
