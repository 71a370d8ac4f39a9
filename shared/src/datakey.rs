//! Crypto-shredding: every queued job that carries a tenant's data is sealed under that
//! organization's own data key (AES-256-GCM), and the data key is stored sealed under
//! `TOKEN_ENCRYPTION_KEY`. Uninstall deletes the key; from then on every copy of the tenant's jobs
//! in the work queues and dead-letter queues is unreadable, whatever their retention, and the
//! workers drop them as purged. Keys are cached per process for at most [`CACHE_FOR`], so a
//! destroyed key stops opening jobs within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::cipher::TokenContext;
use crate::cipher::{CipherError, EncryptedToken, TokenCipher};
use crate::clock::Clock;
use crate::domain::OrganizationKey;
use crate::ids::OrgId;
use crate::store::{Condition, Repo, StoreError};

/// How long a process trusts a key it read: a destroyed key stops opening jobs within this.
pub const CACHE_FOR: Duration = Duration::from_secs(30);

/// One organization's data key.
#[derive(Clone)]
pub struct DataKey {
    cipher: TokenCipher,
    ids: [u8; 32],
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    fn from_raw(raw: &[u8]) -> Result<Self, CipherError> {
        let setting = SecretString::from(format!("dk:{}", STANDARD.encode(raw)));
        let cipher = TokenCipher::from_setting(&setting)?;
        // A separate key for queue ids, derived so the two uses never share a key.
        let ids = Sha256::new()
            .chain_update(b"igbridge.queue-ids")
            .chain_update(raw)
            .finalize()
            .into();
        Ok(Self { cipher, ids })
    }

    /// A fresh random key, held nowhere (benchmarks and tests; organizations' keys come from
    /// [`DataKeys`], which stores them wrapped).
    pub fn random() -> Self {
        let raw: [u8; 32] = rand::random();
        Self::from_raw(&raw).expect("32 random bytes are a key")
    }

    /// Seals a job body, bound to its organization.
    pub fn seal(&self, org: &OrgId, plaintext: String) -> EncryptedToken {
        self.cipher
            .seal(&SecretString::from(plaintext), &context(org))
    }

    /// Opens a body sealed by [`DataKey::seal`].
    pub fn open(&self, org: &OrgId, sealed: &EncryptedToken) -> Result<String, CipherError> {
        self.cipher
            .open(sealed, &context(org))
            .map(|s| s.expose_secret().to_string())
    }

    /// A fingerprint of a value (what was sent, to know its echo) that reveals nothing, and
    /// means nothing once the key is gone: the same keyed hash as [`DataKey::queue_id`], under
    /// its own label so the two uses never give the same id.
    pub fn fingerprint(&self, label: &str, value: &str) -> String {
        self.queue_id(&format!("{label}\u{0}{value}"))
    }

    /// A queue id (message group, deduplication) that reveals nothing once the key is gone:
    /// HMAC-SHA-256, hex, 64 characters (SQS allows 128).
    pub fn queue_id(&self, value: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.ids).expect("HMAC takes any key length");
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

fn context(org: &OrgId) -> TokenContext<'_> {
    TokenContext::QueuedJob { org }
}

fn wrap_context(org: &OrgId) -> TokenContext<'_> {
    TokenContext::DataKey { org }
}

/// Finds, creates and caches organizations' data keys.
#[derive(Clone)]
pub struct DataKeys {
    repo: Repo,
    master: TokenCipher,
    clock: Arc<dyn Clock>,
    cache: Arc<Mutex<HashMap<OrgId, (Instant, DataKey)>>>,
}

impl DataKeys {
    /// The service over the table, with `TOKEN_ENCRYPTION_KEY` wrapping the keys.
    pub fn new(repo: Repo, master: TokenCipher, clock: Arc<dyn Clock>) -> Self {
        Self {
            repo,
            master,
            clock,
            cache: Arc::default(),
        }
    }

    fn cached(&self, org: &OrgId) -> Option<DataKey> {
        let cache = self.cache.lock().expect("key cache lock");
        cache
            .get(org)
            .filter(|(at, _)| at.elapsed() < CACHE_FOR)
            .map(|(_, k)| k.clone())
    }

    fn remember(&self, org: &OrgId, key: &DataKey) {
        self.cache
            .lock()
            .expect("key cache lock")
            .insert(org.to_owned(), (Instant::now(), key.clone()));
    }

    /// Forgets every cached key (tests; a process is otherwise short-lived).
    pub fn forget(&self) {
        self.cache.lock().expect("key cache lock").clear();
    }

    /// The stored record: `Some(None)` for a destroyed key.
    async fn stored(&self, org: &OrgId) -> Result<Option<Option<DataKey>>, StoreError> {
        if let Some(k) = self.cached(org) {
            return Ok(Some(Some(k)));
        }
        let Some(stored) = self
            .repo
            .get::<OrganizationKey>(&OrganizationKey::key_for(org))
            .await?
        else {
            return Ok(None);
        };
        let Some(sealed) = stored.key else {
            return Ok(Some(None));
        };
        let key = self.unwrap(org, &sealed)?;
        self.remember(org, &key);
        Ok(Some(Some(key)))
    }

    /// The key to open an organization's jobs; `None` once uninstall destroyed it.
    pub async fn to_open(&self, org: &OrgId) -> Result<Option<DataKey>, StoreError> {
        Ok(self.stored(org).await?.flatten())
    }

    /// The key to seal an organization's jobs, made on first use; `None` when uninstall
    /// destroyed it (the organization's data is then not queued at all).
    pub async fn to_seal(&self, org: &OrgId) -> Result<Option<DataKey>, StoreError> {
        if let Some(found) = self.stored(org).await? {
            return Ok(found);
        }
        let (record, key) = self.fresh(org)?;
        match self.repo.put(&record, Condition::IfAbsent).await {
            Ok(()) => {
                self.remember(org, &key);
                Ok(Some(key))
            }
            // Another process made it first (or an uninstall destroyed it): use what is there.
            Err(StoreError::ConditionFailed) => self.to_open(org).await,
            Err(e) => Err(e),
        }
    }

    /// Installs a new key for a (re)installed organization, replacing a destroyed one. A key
    /// already live is kept.
    pub async fn renew(&self, org: &OrgId) -> Result<(), StoreError> {
        if self.to_open(org).await?.is_some() {
            return Ok(());
        }
        let (record, _) = self.fresh(org)?;
        self.repo.put(&record, Condition::Always).await
    }

    fn fresh(&self, org: &OrgId) -> Result<(OrganizationKey, DataKey), StoreError> {
        let raw: [u8; 32] = rand::random();
        let record = OrganizationKey {
            organization_id: org.to_owned(),
            key: Some(self.master.seal(
                &SecretString::from(STANDARD.encode(raw)),
                &wrap_context(org),
            )),
            created_at: self.clock.now(),
            destroyed_at: None,
            expires_at: None,
        };
        Ok((record, DataKey::from_raw(&raw).map_err(codec)?))
    }

    /// Destroys the organization's key (a tombstone expiring at `expires_at` stays, so nothing
    /// re-creates it), unless the key there now was made after `before` (a reinstall's).
    pub async fn destroy(
        &self,
        org: &OrgId,
        before: DateTime<Utc>,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let key = OrganizationKey::key_for(org);
        let current = self.repo.get::<OrganizationKey>(&key).await?;
        let condition = match &current {
            Some(k) if k.key.is_none() => return Ok(()),
            Some(k) if k.created_at > before => return Ok(()),
            Some(k) => Condition::IfEquals {
                attribute: "created_at".into(),
                value: serde_json::to_value(k.created_at)
                    .map_err(|e| StoreError::Codec(e.to_string()))?,
            },
            None => Condition::IfAbsent,
        };
        let tombstone = OrganizationKey {
            organization_id: org.to_owned(),
            key: None,
            created_at: current.map_or(before, |k| k.created_at),
            destroyed_at: Some(self.clock.now()),
            expires_at: Some(expires_at),
        };
        match self.repo.put(&tombstone, condition).await {
            // Replaced meanwhile by a reinstall's key: that one stays.
            Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn unwrap(&self, org: &OrgId, sealed: &EncryptedToken) -> Result<DataKey, StoreError> {
        let b64 = self
            .master
            .open(sealed, &wrap_context(org))
            .map_err(codec)?;
        let raw = STANDARD
            .decode(b64.expose_secret())
            .map_err(|_| StoreError::Codec("data key is not base64".into()))?;
        DataKey::from_raw(&raw).map_err(codec)
    }
}

fn codec(e: CipherError) -> StoreError {
    StoreError::Codec(format!("data key: {e}"))
}
