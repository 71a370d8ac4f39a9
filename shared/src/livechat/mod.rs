//! LiveChat: the accounts service (agent and customer tokens) and the Customer Chat Web API
//! v3.6, through which the bridge acts as each Instagram customer.

pub mod chat_api;
pub mod event;
pub mod webhook;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::RotatingSecret;
use crate::http::{is_retryable_error, is_retryable_status};
use crate::ids::{AccountId, OrgId};

/// Scopes the bridge cannot work without: the agent-token customer grant, and reading the
/// organization's agents to name its owner on the confirmation page.
pub const REQUIRED_SCOPES: &[&str] = &["customers:own", "agents--all:ro"];

/// The Customer Chat API version.
pub const API_VERSION: &str = "3.6";

/// A LiveChat failure.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LivechatError {
    /// LiveChat answered with an error (`error.type`, or the accounts service's `error` string).
    #[error("livechat {status} {kind}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Error type, e.g. `authentication`, `chat_inactive`, `invalid_grant`.
        kind: String,
        /// LiveChat's message.
        message: String,
    },
    /// The request did not complete.
    #[error("livechat transport: {message}")]
    Transport {
        /// What failed.
        message: String,
        /// Whether retrying may help.
        retryable: bool,
    },
}

impl LivechatError {
    /// The token was refused (expired or revoked).
    pub fn is_auth(&self) -> bool {
        matches!(self, LivechatError::Api { status, kind, .. } if *status == 401 || kind == "authentication")
    }

    /// The chat has no active thread.
    pub fn is_chat_inactive(&self) -> bool {
        matches!(self, LivechatError::Api { kind, .. } if kind == "chat_inactive")
    }

    /// The user's grant no longer works (refresh token revoked or expired, app access
    /// withdrawn): only a re-authorization by the user helps.
    pub fn is_grant_refused(&self) -> bool {
        matches!(self, LivechatError::Api { kind, .. } if kind == "invalid_grant" || kind == "missing_grant")
    }

    /// LiveChat refused the app's client credentials: an operator error (a rotated or mistyped
    /// `LIVECHAT_CLIENT_SECRET`), so it is retried and alarmed, never blamed on the tenant.
    /// LiveChat answers a wrong client secret with `unauthorized_client` (the same code also
    /// covers an unknown refresh token, which a working grant never is; a revoked or expired one
    /// is `invalid_grant`) and a client mismatch with `invalid_client`
    /// (platform.text.com/docs/authorization/troubleshooting).
    pub fn is_client_refused(&self) -> bool {
        matches!(self, LivechatError::Api { kind, .. } if kind == "invalid_client" || kind == "unauthorized_client")
    }

    /// Throttling, LiveChat faults, timeouts, transport errors: retry later.
    pub fn is_transient(&self) -> bool {
        match self {
            LivechatError::Api { status, kind, .. } => {
                matches!(
                    kind.as_str(),
                    "too_many_requests"
                        | "internal"
                        | "service_unavailable"
                        | "request_timeout"
                        | "temporarily_unavailable"
                        | "server_error"
                ) || is_retryable_status(StatusCode::from_u16(*status).unwrap_or(StatusCode::OK))
            }
            LivechatError::Transport { retryable, .. } => *retryable,
        }
    }
}

fn transport(e: reqwest::Error) -> LivechatError {
    LivechatError::Transport {
        retryable: is_retryable_error(&e),
        message: e.without_url().to_string(),
    }
}

async fn parse(res: reqwest::Response) -> Result<Value, LivechatError> {
    let status = res.status();
    let text = res.text().await.map_err(transport)?;
    let body: Value = if text.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    if status.is_success() {
        return Ok(body);
    }
    let (kind, message) = match body.get("error") {
        Some(Value::Object(e)) => (
            e.get("type").and_then(Value::as_str).unwrap_or("unknown"),
            e.get("message").and_then(Value::as_str).unwrap_or(""),
        ),
        Some(Value::String(kind)) => (
            kind.as_str(),
            body.get("error_description")
                .and_then(Value::as_str)
                .unwrap_or(""),
        ),
        // The customer-token endpoint answers `{oauth_exception, exception_description}`
        // (customer-accounts-api specv2.yml).
        _ => match body.get("oauth_exception").and_then(Value::as_str) {
            Some(kind) => (
                kind,
                body.get("exception_description")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            ),
            None => ("unknown", ""),
        },
    };
    Err(LivechatError::Api {
        status: status.as_u16(),
        kind: kind.to_string(),
        message: message.to_string(),
    })
}

/// Tokens from the accounts token endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenSet {
    /// Agent access token.
    pub access_token: SecretString,
    /// Refresh token (non-rotating for server-side apps; store it anyway).
    pub refresh_token: Option<SecretString>,
    /// Lifetime in seconds.
    pub expires_in: i64,
    /// The organization.
    pub organization_id: Option<OrgId>,
    /// The account that authorized.
    pub account_id: Option<AccountId>,
    /// Granted scopes, comma-separated.
    pub scope: Option<String>,
}

/// Who a LiveChat organization is, as shown to the person confirming an install.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Organization {
    /// The organization id.
    pub organization_id: OrgId,
    /// Its name (Global Accounts API `organizations/my`).
    pub name: String,
    /// The owner's login e-mail (Configuration API `list_agents`, role `owner`).
    pub owner_email: Option<String>,
}

/// One agent of `list_agents`: its login e-mail, account and role
/// (`owner|viceowner|administrator|normal`).
#[derive(Debug, Clone, Deserialize)]
pub struct Agent {
    /// Login e-mail.
    pub id: String,
    /// The account id (what the token exchange names).
    #[serde(default)]
    pub account_id: Option<AccountId>,
    /// Role in the organization.
    pub role: Option<String>,
}

impl Agent {
    /// Whether the agent may manage the organization's apps (owner, vice owner, administrator).
    pub fn is_admin(&self) -> bool {
        matches!(
            self.role.as_deref(),
            Some("owner" | "viceowner" | "administrator")
        )
    }
}

/// A customer token from the agent_token grant.
#[derive(Debug, Clone, Deserialize)]
pub struct CustomerToken {
    /// The customer's bearer token.
    pub access_token: SecretString,
    /// The customer id, to reuse for later grants.
    pub entity_id: String,
    /// Lifetime in seconds.
    pub expires_in: i64,
}

/// The LiveChat client for one app (client id/secret), any organization.
#[derive(Debug, Clone)]
pub struct LivechatClient {
    http: reqwest::Client,
    api_base: String,
    accounts_base: String,
    client_id: String,
    client_secret: RotatingSecret,
}

impl LivechatClient {
    /// A client against the given bases.
    pub fn new(
        http: reqwest::Client,
        api_base: &str,
        accounts_base: &str,
        client_id: &str,
        client_secret: RotatingSecret,
    ) -> Self {
        Self {
            http,
            api_base: api_base.trim_end_matches('/').to_string(),
            accounts_base: accounts_base.trim_end_matches('/').to_string(),
            client_id: client_id.to_string(),
            client_secret,
        }
    }

    /// `POST /v2/token` with the client credentials. During a secret rotation the previous
    /// secret is tried when LiveChat refuses the current one (`invalid_client` is checked before
    /// the grant, so a code or refresh token is not spent by the refused attempt).
    async fn token_request(&self, form: &[(&str, &str)]) -> Result<Value, LivechatError> {
        let mut last = None;
        for secret in self.client_secret.values() {
            let mut fields = form.to_vec();
            fields.push(("client_id", &self.client_id));
            fields.push(("client_secret", secret.expose_secret()));
            let res = self
                .http
                .post(format!("{}/v2/token", self.accounts_base))
                .form(&fields)
                .send()
                .await
                .map_err(transport)?;
            match parse(res).await {
                Err(e) if e.is_client_refused() => last = Some(e),
                other => return other,
            }
        }
        Err(last.expect("there is always a current secret"))
    }

    /// Exchanges an authorization code (`grant_type=authorization_code`).
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
    ) -> Result<TokenSet, LivechatError> {
        // Codes may arrive with `:` encoded; LiveChat wants it back as `:`.
        let code = code.replace("%3A", ":").replace("%3a", ":");
        let body = self
            .token_request(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect_uri),
            ])
            .await?;
        shape(body)
    }

    /// Refreshes an agent token (`grant_type=refresh_token`).
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenSet, LivechatError> {
        let body = self
            .token_request(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose_secret()),
            ])
            .await?;
        serde_json::from_value(body).map_err(|e| LivechatError::Transport {
            message: format!("token response shape: {e}"),
            retryable: false,
        })
    }

    /// The token's organization: its name (`GET /v2/organizations/my`, no scope needed) and its
    /// owner's e-mail (`list_agents`, scope `agents--all:ro`; the agent id is the login e-mail).
    pub async fn organization(&self, token: &SecretString) -> Result<Organization, LivechatError> {
        let res = self
            .http
            .get(format!("{}/v2/organizations/my", self.accounts_base))
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(transport)?;
        let org = parse(res).await?;
        let agents = self.agents(token).await?;
        Ok(Organization {
            organization_id: shape(org["organization_id"].clone())?,
            name: shape(org["name"].clone())?,
            owner_email: agents
                .into_iter()
                .find(|a| a.role.as_deref() == Some("owner"))
                .map(|a| a.id),
        })
    }

    /// Configuration API `list_agents` (scope `agents--all:ro`): the organization's agents with
    /// their roles.
    pub async fn agents(&self, token: &SecretString) -> Result<Vec<Agent>, LivechatError> {
        let res = self
            .http
            .post(format!(
                "{}/v{API_VERSION}/configuration/action/list_agents",
                self.api_base
            ))
            .bearer_auth(token.expose_secret())
            .json(&json!({}))
            .send()
            .await
            .map_err(transport)?;
        shape(parse(res).await?)
    }

    /// Revokes a token (`DELETE /v2/token`); an unknown token counts as revoked.
    pub async fn revoke(&self, token: &SecretString) -> Result<(), LivechatError> {
        let res = self
            .http
            .delete(format!("{}/v2/token", self.accounts_base))
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(transport)?;
        match parse(res).await {
            Ok(_) => Ok(()),
            Err(LivechatError::Api { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The agent_token grant: a new customer (no `entity_id`) or a fresh token for one.
    pub async fn customer_token(
        &self,
        agent_token: &SecretString,
        entity_id: Option<&str>,
    ) -> Result<CustomerToken, LivechatError> {
        let mut body = json!({
            "grant_type": "agent_token",
            "client_id": self.client_id,
            "response_type": "token",
        });
        if let Some(id) = entity_id {
            body["entity_id"] = json!(id);
        }
        let res = self
            .http
            .post(format!("{}/v2/customer/token", self.accounts_base))
            .bearer_auth(agent_token.expose_secret())
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let body = parse(res).await?;
        serde_json::from_value(body).map_err(|e| LivechatError::Transport {
            message: format!("customer token shape: {e}"),
            retryable: false,
        })
    }

    /// Sends a Customer Chat API action as the customer whose token this is.
    pub async fn customer<A: chat_api::Action>(
        &self,
        organization_id: &str,
        token: &SecretString,
        request: &A,
    ) -> Result<A::Response, LivechatError> {
        let res = self
            .http
            .post(format!(
                "{}/v{API_VERSION}/customer/action/{}",
                self.api_base,
                A::NAME
            ))
            .query(&[("organization_id", organization_id)])
            .bearer_auth(token.expose_secret())
            .json(request)
            .send()
            .await
            .map_err(transport)?;
        shape(parse(res).await?)
    }
}

fn shape<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, LivechatError> {
    serde_json::from_value(v).map_err(|e| LivechatError::Transport {
        message: format!("unexpected response shape: {e}"),
        retryable: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, kind: &str) -> LivechatError {
        LivechatError::Api {
            status,
            kind: kind.into(),
            message: String::new(),
        }
    }

    #[test]
    fn classifies_errors() {
        assert!(api(401, "authentication").is_auth());
        assert!(api(403, "authentication").is_auth());
        assert!(api(422, "chat_inactive").is_chat_inactive());
        assert!(api(429, "too_many_requests").is_transient());
        assert!(api(500, "internal").is_transient());
        assert!(api(400, "invalid_grant").is_grant_refused());
        assert!(!api(401, "invalid_client").is_grant_refused());
        assert!(api(401, "invalid_client").is_client_refused());
        assert!(!api(400, "validation").is_transient());
        assert!(!api(400, "customer_banned").is_transient());
    }
}
