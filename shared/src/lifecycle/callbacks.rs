//! The platforms' lifecycle callbacks, authenticated and carried out: LiveChat's app webhook
//! (the uninstall) and Meta's deauthorize and data-deletion callbacks (a `signed_request`).
//! The routes that answer them are `crate::web::uninstall`'s.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;

use super::Lifecycle;
use super::signed_request::{self, SignedRequestError};
use crate::domain::DeletionStatus;
use crate::ids::{FacebookUserId, OrgId};
use crate::store::StoreError;

/// What the callbacks need.
pub struct Callbacks {
    /// The lifecycle service.
    pub lifecycle: Lifecycle,
    /// The shared secret in the App Webhooks URL.
    pub app_webhook_token: crate::config::RotatingSecret,
    /// Our LiveChat client id (app webhooks must name it).
    pub livechat_client_id: String,
    /// Verifies `signed_request`.
    pub meta_app_secret: SecretString,
    /// For the status URL.
    pub public_base_url: String,
}

/// Why a callback was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// An app webhook without the URL's token (or with a wrong one).
    #[error("app webhook without the right token")]
    WrongToken,
    /// An app webhook body that is not JSON.
    #[error("app webhook body is not JSON")]
    NotJson,
    /// An app webhook of another LiveChat app.
    #[error("app webhook for another client")]
    OtherClient,
    /// An uninstall without its organization.
    #[error("application_uninstalled without organizationID")]
    NoOrganization,
    /// A Meta callback without `signed_request`.
    #[error("missing signed_request")]
    NoSignedRequest,
    /// A `signed_request` Meta did not sign with our app secret.
    #[error("signed_request signature mismatch")]
    BadSignature,
    /// A `signed_request` that is undated or older than a day (a captured one replayed).
    #[error("signed_request expired")]
    Expired,
    /// A `signed_request` that does not read.
    #[error("invalid signed_request: {0}")]
    Invalid(SignedRequestError),
    /// Our store failed: the platform retries.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// LiveChat's app webhook body (platform.text.com, "App webhooks"): only the fields the bridge
/// uses, read one by one.
#[derive(Debug, Default)]
pub struct AppWebhook {
    /// The app it is for (`clientID`).
    pub client_id: Option<String>,
    /// `application_uninstalled`, `application_installed`, …
    pub event: Option<String>,
    /// The organization (`organizationID`).
    pub organization_id: Option<OrgId>,
    /// When LiveChat sent it (RFC 3339 with an offset).
    pub date: Option<String>,
}

impl AppWebhook {
    /// Reads a JSON body field by field: LiveChat documents each as a string, and one of
    /// another type reads as absent instead of making the whole body unreadable (an uninstall
    /// refused for an odd `date` would not be retried, and its tokens and data would stay).
    pub fn read(body: &[u8]) -> Result<Self, CallbackError> {
        let value: Value = serde_json::from_slice(body).map_err(|_| CallbackError::NotJson)?;
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(AppWebhook {
            client_id: text("clientID"),
            event: text("event"),
            organization_id: text("organizationID").map(OrgId::from),
            date: text("date"),
        })
    }
}

/// What an app webhook did.
#[derive(Debug, PartialEq, Eq)]
pub enum AppWebhookDone {
    /// Not an uninstall: acknowledged.
    Acknowledged(String),
    /// The organization's uninstall carried out (or deferred to the sweeper).
    Uninstalled,
}

/// The JSON Meta expects from the data-deletion callback.
#[derive(Debug, Serialize)]
pub struct DeletionAnswer {
    /// Its code (alphanumeric, as Meta requires).
    pub confirmation_code: String,
    /// The status page of the request.
    pub url: String,
}

impl Callbacks {
    /// Whether an app webhook carries the URL's token (the current or the previous one).
    pub fn app_webhook_token_ok(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| self.app_webhook_token.matches(t))
    }

    /// An app webhook whose token was checked: an uninstall of our app is carried out.
    pub async fn app_webhook(&self, body: &[u8]) -> Result<AppWebhookDone, CallbackError> {
        let hook = AppWebhook::read(body)?;
        if hook.client_id.as_deref() != Some(self.livechat_client_id.as_str()) {
            return Err(CallbackError::OtherClient);
        }
        let event = hook.event.unwrap_or_default();
        if event != "application_uninstalled" {
            return Ok(AppWebhookDone::Acknowledged(event));
        }
        let org = hook
            .organization_id
            .filter(|o| !o.is_empty())
            .ok_or(CallbackError::NoOrganization)?;
        // An unreadable date is not trusted to skip anything.
        let sent_at = hook
            .date
            .and_then(|d| DateTime::parse_from_rfc3339(&d).ok())
            .map(|d| d.with_timezone(&Utc));
        let report = self.lifecycle.uninstall(&org, sent_at).await?;
        tracing::info!(organization_id = %org, uninstalled = report.uninstalled, revoked = report.revoked, deferred = report.deferred, items = report.items, "uninstall handled");
        Ok(AppWebhookDone::Uninstalled)
    }

    /// The Facebook user a `signed_request` names, if Meta signed it within the last day.
    fn verify(&self, signed: Option<&str>) -> Result<FacebookUserId, CallbackError> {
        let signed = signed.ok_or(CallbackError::NoSignedRequest)?;
        let secret = self.meta_app_secret.expose_secret().as_bytes();
        let request = signed_request::parse(secret, signed).map_err(|e| match e {
            SignedRequestError::BadSignature => CallbackError::BadSignature,
            other => CallbackError::Invalid(other),
        })?;
        // A captured request must not work forever: Meta sends it at once.
        let now = self.lifecycle.deps.clock.now().timestamp();
        match request.issued_at {
            Some(at) if (now - at).abs() <= signed_request::MAX_AGE_SECS => {
                Ok(request.user_id.into())
            }
            _ => Err(CallbackError::Expired),
        }
    }

    /// Meta's deauthorize callback: the user's connections disconnected; how many.
    pub async fn deauthorize(&self, signed: Option<&str>) -> Result<usize, CallbackError> {
        let user = self.verify(signed)?;
        Ok(self.lifecycle.disconnect_facebook_user(&user, None).await?)
    }

    /// Meta's data-deletion callback: the request recorded, its status URL and code.
    pub async fn data_deletion(
        &self,
        signed: Option<&str>,
    ) -> Result<DeletionAnswer, CallbackError> {
        let user = self.verify(signed)?;
        let code = self.lifecycle.request_deletion(&user).await?;
        Ok(DeletionAnswer {
            url: format!("{}/meta/data-deletion/{code}", self.public_base_url),
            confirmation_code: code,
        })
    }

    /// A deletion request's status, `None` for a code that is not one (only alphanumeric codes
    /// of at most 64 characters are looked up).
    pub async fn deletion_status(&self, code: &str) -> Result<Option<DeletionStatus>, StoreError> {
        if code.is_empty() || code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        self.lifecycle.deletion_status(code).await
    }
}
