//! Lifecycle events for ops (installed, connected, disconnected, uninstalled, purged, deletion
//! requested/completed) on an EventBridge bus, behind a port with an in-memory adapter. Events
//! carry ids and times only, never tokens or message content.

use std::sync::Mutex;

use crate::ids::{IgAccountId, OrgId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The event source on the bus.
pub const SOURCE: &str = "igbridge";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleKind {
    /// LiveChat installation completed.
    Installed,
    /// An Instagram account was connected.
    InstagramConnected,
    /// An Instagram account was disconnected (deauthorize, data deletion, broken token).
    Disconnected,
    /// The app was uninstalled from LiveChat.
    Uninstalled,
    /// Data was hard-deleted.
    Purged,
    /// Meta asked for a user's data to be deleted.
    DeletionRequested,
    /// That deletion finished.
    DeletionCompleted,
    /// An Instagram connection's Page token was refused (or lacks a permission).
    ConnectionBroken,
    /// LiveChat refused the installation's refresh token: an admin must re-authorize.
    ReauthorizationNeeded,
    /// A connection or installation works again (reconnected, re-authorized, re-subscribed);
    /// its parked jobs are replayed.
    Repaired,
    /// An admin asked, on the status page, for the installation's parked jobs to be replayed.
    ReplayRequested,
}

impl LifecycleKind {
    /// The EventBridge detail-type.
    pub fn detail_type(self) -> &'static str {
        match self {
            LifecycleKind::Installed => "igbridge.installed",
            LifecycleKind::InstagramConnected => "igbridge.instagram_connected",
            LifecycleKind::Disconnected => "igbridge.disconnected",
            LifecycleKind::Uninstalled => "igbridge.uninstalled",
            LifecycleKind::Purged => "igbridge.purged",
            LifecycleKind::DeletionRequested => "igbridge.deletion_requested",
            LifecycleKind::DeletionCompleted => "igbridge.deletion_completed",
            LifecycleKind::ConnectionBroken => "igbridge.connection_broken",
            LifecycleKind::ReauthorizationNeeded => "igbridge.reauthorization_needed",
            LifecycleKind::Repaired => "igbridge.repaired",
            LifecycleKind::ReplayRequested => "igbridge.replay_requested",
        }
    }
}

/// One event: ids, counts and times only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LifecycleEvent {
    /// What happened.
    pub kind: LifecycleKind,
    /// The LiveChat organization, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<OrgId>,
    /// The Instagram account, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ig_account_id: Option<IgAccountId>,
    /// The data-deletion confirmation code, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmation_code: Option<String>,
    /// Items deleted, for purges.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    /// What was repaired or found broken (log-safe words), for health events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

impl LifecycleEvent {
    /// An event of `kind` at `at` with no ids yet.
    pub fn new(kind: LifecycleKind, at: DateTime<Utc>) -> Self {
        Self {
            kind,
            organization_id: None,
            ig_account_id: None,
            confirmation_code: None,
            items: None,
            detail: None,
            at,
        }
    }

    /// With the organization.
    pub fn org(mut self, org: &OrgId) -> Self {
        self.organization_id = Some(org.to_owned());
        self
    }

    /// With the Instagram account.
    pub fn account(mut self, ig: &IgAccountId) -> Self {
        self.ig_account_id = Some(ig.to_owned());
        self
    }

    /// With what happened, in words.
    pub fn detail(mut self, detail: &str) -> Self {
        self.detail = Some(detail.to_string());
        self
    }
}

/// Publishing failed.
#[derive(Debug, thiserror::Error)]
#[error("publishing lifecycle events: {0}")]
pub struct PublishError(pub String);

/// The event port.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes events (any number).
    async fn publish(&self, events: &[LifecycleEvent]) -> Result<(), PublishError>;
}

/// Publishes and logs a failure instead of failing the caller: the audit trail must never stop
/// an uninstall or a purge.
pub async fn publish_logged(publisher: &dyn EventPublisher, events: &[LifecycleEvent]) {
    if let Err(e) = publisher.publish(events).await {
        tracing::error!(error = %e, count = events.len(), "lifecycle events not published");
    }
}

/// EventBridge adapter.
#[cfg(feature = "eventbridge")]
#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

#[cfg(feature = "eventbridge")]
impl EventBridgePublisher {
    /// Publishes to `bus`.
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }
}

/// PutEvents takes at most 10 entries.
#[cfg(feature = "eventbridge")]
const PUT_MAX: usize = 10;

#[cfg(feature = "eventbridge")]
#[async_trait]
impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, events: &[LifecycleEvent]) -> Result<(), PublishError> {
        for chunk in events.chunks(PUT_MAX) {
            let entries = chunk
                .iter()
                .map(|e| {
                    aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(SOURCE)
                        .detail_type(e.kind.detail_type())
                        .detail(serde_json::to_string(e).expect("events serialize"))
                        .time(aws_sdk_eventbridge::primitives::DateTime::from_secs(
                            e.at.timestamp(),
                        ))
                        .build()
                })
                .collect::<Vec<_>>();
            let out = self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| PublishError(crate::aws::error_summary(&e)))?;
            if out.failed_entry_count() > 0 {
                return Err(PublishError(format!(
                    "{} entries failed",
                    out.failed_entry_count()
                )));
            }
        }
        Ok(())
    }
}

/// The publisher of a function that publishes nothing (see [`crate::function::Function::needs`]):
/// a call fails, naming the bus, instead of the function holding a client it has no use for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwired;

#[async_trait]
impl EventPublisher for Unwired {
    async fn publish(&self, _: &[LifecycleEvent]) -> Result<(), PublishError> {
        Err(PublishError(
            "the lifecycle event bus is not wired into this function".into(),
        ))
    }
}

/// In-memory adapter: keeps what was published (local runs log it too).
#[derive(Debug, Default)]
pub struct MemoryPublisher {
    published: Mutex<Vec<LifecycleEvent>>,
}

impl MemoryPublisher {
    /// Everything published so far.
    pub fn published(&self) -> Vec<LifecycleEvent> {
        self.published.lock().expect("events lock").clone()
    }
}

#[async_trait]
impl EventPublisher for MemoryPublisher {
    async fn publish(&self, events: &[LifecycleEvent]) -> Result<(), PublishError> {
        for e in events {
            tracing::info!(event = e.kind.detail_type(), organization_id = ?e.organization_id, "lifecycle event");
        }
        self.published
            .lock()
            .expect("events lock")
            .extend_from_slice(events);
        Ok(())
    }
}
