//! Tokens at rest: AES-256-GCM with a key id in every ciphertext, so keys can rotate.
//!
//! `TOKEN_ENCRYPTION_KEY` is either one base64 key (key id `k1`) or a comma-separated list of
//! `kid:base64` entries; the first entry encrypts, every entry decrypts. Each ciphertext is bound
//! to a context string (organization and field) as associated data, so a token copied into another
//! tenant's item does not decrypt.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

const FORMAT: &str = "v1";
const NONCE_LEN: usize = 12;

/// Why a key could not be loaded or a token could not be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    /// The key setting is malformed; the message never contains key material.
    #[error("TOKEN_ENCRYPTION_KEY is malformed: {0}")]
    BadKey(String),
    /// The ciphertext names a key id this deployment does not hold.
    #[error("token was encrypted with unknown key id {0:?}")]
    UnknownKey(String),
    /// The ciphertext is not in the `v1:kid:data` format.
    #[error("stored token is not a valid ciphertext")]
    Malformed,
    /// Authentication failed: wrong key, wrong context, or tampering.
    #[error("stored token failed authentication")]
    Authentication,
}

/// A token as stored: `v1:<key id>:<base64url(nonce || ciphertext+tag)>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EncryptedToken(String);

impl EncryptedToken {
    /// A token as received (from a form or a query); `open` checks it.
    pub fn from_wire(s: &str) -> Self {
        EncryptedToken(s.to_string())
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the key that sealed it.
    pub fn key_id(&self) -> Option<&str> {
        let mut parts = self.0.splitn(3, ':');
        match (parts.next(), parts.next()) {
            (Some(FORMAT), Some(kid)) => Some(kid),
            _ => None,
        }
    }
}

impl fmt::Debug for EncryptedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptedToken({:?})", self.key_id().unwrap_or("?"))
    }
}

/// Seals and opens tokens with the configured keys.
#[derive(Clone)]
pub struct TokenCipher {
    current: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("TokenCipher")
            .field("current", &self.current)
            .field("key_ids", &ids)
            .finish()
    }
}

impl TokenCipher {
    /// Builds the cipher from the `TOKEN_ENCRYPTION_KEY` setting.
    pub fn from_setting(setting: &SecretString) -> Result<Self, CipherError> {
        let raw = setting.expose_secret().trim();
        if raw.is_empty() {
            return Err(CipherError::BadKey("empty".into()));
        }
        let mut current = None;
        let mut keys = HashMap::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kid, b64) = match entry.split_once(':') {
                Some((kid, b64)) => (kid.trim(), b64.trim()),
                None => ("k1", entry),
            };
            if kid.is_empty()
                || !kid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(CipherError::BadKey(
                    "key ids are letters, digits, '-' or '_'".into(),
                ));
            }
            let bytes = STANDARD
                .decode(b64)
                .or_else(|_| URL_SAFE_NO_PAD.decode(b64))
                .map_err(|_| CipherError::BadKey(format!("key {kid:?} is not base64")))?;
            if bytes.len() != 32 {
                return Err(CipherError::BadKey(format!(
                    "key {kid:?} is {} bytes, AES-256 needs 32",
                    bytes.len()
                )));
            }
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes));
            if keys.insert(kid.to_string(), cipher).is_some() {
                return Err(CipherError::BadKey(format!("key id {kid:?} appears twice")));
            }
            current.get_or_insert_with(|| kid.to_string());
        }
        let current = current.ok_or_else(|| CipherError::BadKey("no key".into()))?;
        Ok(Self { current, keys })
    }

    /// Generates a fresh random key setting (base64), e.g. for a local run.
    pub fn generate_setting() -> SecretString {
        let key = Aes256Gcm::generate_key(OsRng);
        SecretString::from(STANDARD.encode(key))
    }

    /// The key id new ciphertexts are sealed with.
    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    /// Encrypts `plaintext`, bound to what it is and whose (`context`).
    pub fn seal(&self, plaintext: &SecretString, context: &TokenContext) -> EncryptedToken {
        let context = context.associated_data();
        let cipher = &self.keys[&self.current];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.expose_secret().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut data = nonce.to_vec();
        data.extend_from_slice(&sealed);
        EncryptedToken(format!(
            "{FORMAT}:{}:{}",
            self.current,
            URL_SAFE_NO_PAD.encode(data)
        ))
    }

    /// Decrypts a token sealed under the same `context`.
    pub fn open(
        &self,
        token: &EncryptedToken,
        context: &TokenContext,
    ) -> Result<SecretString, CipherError> {
        let context = context.associated_data();
        let mut parts = token.0.splitn(3, ':');
        let (Some(FORMAT), Some(kid), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CipherError::Malformed);
        };
        let cipher = self
            .keys
            .get(kid)
            .ok_or_else(|| CipherError::UnknownKey(kid.to_string()))?;
        let data = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| CipherError::Malformed)?;
        if data.len() < NONCE_LEN + 16 {
            return Err(CipherError::Malformed);
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CipherError::Authentication)?;
        let plain = String::from_utf8(plain).map_err(|_| CipherError::Malformed)?;
        Ok(SecretString::from(plain))
    }

    /// Whether `token` should be re-sealed with the current key.
    pub fn needs_reseal(&self, token: &EncryptedToken) -> bool {
        token.key_id() != Some(self.current.as_str())
    }
}

/// What a sealed value is and whose: its AES-GCM associated data, so a ciphertext copied to
/// another field, account or tenant does not open. The text of each is fixed for good: values
/// sealed under it are stored (a changed text would leave them unreadable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenContext<'a> {
    /// An installation's LiveChat agent access token.
    AgentAccess {
        /// The organization.
        org: &'a str,
    },
    /// An installation's LiveChat refresh token.
    AgentRefresh {
        /// The organization.
        org: &'a str,
    },
    /// A LiveChat token queued for revocation.
    LivechatRevoke {
        /// The organization.
        org: &'a str,
    },
    /// A customer's LiveChat token.
    Customer {
        /// The organization.
        org: &'a str,
        /// The Instagram account.
        ig: &'a str,
        /// The customer.
        igsid: &'a str,
    },
    /// An Instagram connection's Page token.
    Page {
        /// The organization.
        org: &'a str,
        /// The Instagram account.
        ig: &'a str,
    },
    /// A Page token queued for the Page's unsubscribe.
    PageRevoke {
        /// The organization.
        org: &'a str,
        /// The Page.
        page: &'a str,
    },
    /// A queued job of the organization (under its data key).
    QueuedJob {
        /// The organization.
        org: &'a str,
    },
    /// The organization's data key, wrapped under the token key.
    DataKey {
        /// The organization.
        org: &'a str,
    },
    /// The install flow's `state`.
    InstallFlow,
}

impl TokenContext<'_> {
    /// The associated data it stands for.
    pub fn associated_data(&self) -> String {
        let of = |org: &str, field: &str| format!("org:{org}:{field}");
        match *self {
            TokenContext::AgentAccess { org } => of(org, "livechat.access_token"),
            TokenContext::AgentRefresh { org } => of(org, "livechat.refresh_token"),
            TokenContext::LivechatRevoke { org } => of(org, "livechat.revoke"),
            TokenContext::Customer { org, ig, igsid } => {
                of(org, &format!("livechat.customer_token:{ig}:{igsid}"))
            }
            TokenContext::Page { org, ig } => of(org, &format!("instagram.page_token:{ig}")),
            TokenContext::PageRevoke { org, page } => of(org, &format!("instagram.revoke:{page}")),
            TokenContext::QueuedJob { org } => of(org, "queued_job"),
            TokenContext::DataKey { org } => of(org, "data_key"),
            TokenContext::InstallFlow => "igbridge.install.flow".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_context_stands_for_the_text_stored_values_were_sealed_under() {
        let cases = [
            (
                TokenContext::AgentAccess { org: "O" },
                "org:O:livechat.access_token",
            ),
            (
                TokenContext::AgentRefresh { org: "O" },
                "org:O:livechat.refresh_token",
            ),
            (
                TokenContext::LivechatRevoke { org: "O" },
                "org:O:livechat.revoke",
            ),
            (
                TokenContext::Customer {
                    org: "O",
                    ig: "I",
                    igsid: "S",
                },
                "org:O:livechat.customer_token:I:S",
            ),
            (
                TokenContext::Page { org: "O", ig: "I" },
                "org:O:instagram.page_token:I",
            ),
            (
                TokenContext::PageRevoke {
                    org: "O",
                    page: "P",
                },
                "org:O:instagram.revoke:P",
            ),
            (TokenContext::QueuedJob { org: "O" }, "org:O:queued_job"),
            (TokenContext::DataKey { org: "O" }, "org:O:data_key"),
            (TokenContext::InstallFlow, "igbridge.install.flow"),
        ];
        for (context, text) in cases {
            assert_eq!(context.associated_data(), text);
        }
    }

    fn setting(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn round_trips_and_hides_plaintext() {
        let c = TokenCipher::from_setting(&setting(&key(7))).unwrap();
        let t = c.seal(
            &setting("dal:SECRET-TOKEN"),
            &TokenContext::AgentAccess { org: "a" },
        );
        assert!(!t.as_str().contains("SECRET"));
        assert_eq!(t.key_id(), Some("k1"));
        assert_eq!(
            c.open(&t, &TokenContext::AgentAccess { org: "a" })
                .unwrap()
                .expose_secret(),
            "dal:SECRET-TOKEN"
        );
        // Fresh nonce each time.
        assert_ne!(
            t,
            c.seal(
                &setting("dal:SECRET-TOKEN"),
                &TokenContext::AgentAccess { org: "a" }
            )
        );
    }

    #[test]
    fn wrong_context_or_tampering_fails() {
        let c = TokenCipher::from_setting(&setting(&key(7))).unwrap();
        let t = c.seal(&setting("tok"), &TokenContext::AgentAccess { org: "a" });
        assert_eq!(
            c.open(&t, &TokenContext::AgentAccess { org: "b" })
                .unwrap_err(),
            CipherError::Authentication
        );
        let mut s = t.as_str().to_string();
        let last = s.pop().unwrap();
        s.push(if last == 'A' { 'B' } else { 'A' });
        assert!(
            c.open(&EncryptedToken(s), &TokenContext::AgentAccess { org: "a" })
                .is_err()
        );
        assert_eq!(
            c.open(
                &EncryptedToken("plain".into()),
                &TokenContext::AgentAccess { org: "a" }
            )
            .unwrap_err(),
            CipherError::Malformed
        );
    }

    #[test]
    fn rotation_decrypts_old_and_seals_with_new() {
        let old = TokenCipher::from_setting(&setting(&format!("old:{}", key(1)))).unwrap();
        let t = old.seal(&setting("tok"), &TokenContext::InstallFlow);
        let rotated =
            TokenCipher::from_setting(&setting(&format!("new:{},old:{}", key(2), key(1)))).unwrap();
        assert_eq!(rotated.current_key_id(), "new");
        assert!(rotated.needs_reseal(&t));
        assert_eq!(
            rotated
                .open(&t, &TokenContext::InstallFlow)
                .unwrap()
                .expose_secret(),
            "tok"
        );
        let t2 = rotated.seal(&setting("tok"), &TokenContext::InstallFlow);
        assert!(!rotated.needs_reseal(&t2));
        assert_eq!(
            old.open(&t2, &TokenContext::InstallFlow).unwrap_err(),
            CipherError::UnknownKey("new".into())
        );
    }

    #[test]
    fn bad_settings_are_named_without_key_material() {
        let short = STANDARD.encode([1u8; 16]);
        let err = TokenCipher::from_setting(&setting(&short)).unwrap_err();
        assert!(err.to_string().contains("16 bytes"));
        assert!(!err.to_string().contains(&short));
        assert!(TokenCipher::from_setting(&setting("")).is_err());
        assert!(TokenCipher::from_setting(&setting("k:!!notbase64")).is_err());
        let dup = format!("a:{},a:{}", key(1), key(2));
        assert!(TokenCipher::from_setting(&setting(&dup)).is_err());
        let generated = TokenCipher::generate_setting();
        assert!(TokenCipher::from_setting(&generated).is_ok());
    }

    #[test]
    fn debug_never_shows_keys() {
        let c = TokenCipher::from_setting(&setting(&key(9))).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(&key(9)));
        assert!(dbg.contains("k1"));
    }
}
