//! Knowing our own sends in Meta's echoes. Meta echoes every message the business sends (this
//! app's, another app's, or one typed in the Instagram app) with its `mid`. The bridge must not
//! show its own messages to the agents again, and — because the Send API has no idempotency key
//! — an echo is also how an attempt whose answer was lost learns that its message went out.
//!
//! A send writes a [`PendingSend`] before calling Meta, holding a keyed fingerprint of what it
//! sends (never the text). An echo is ours when its `mid` was recorded (a [`MessageLink`] of the
//! answer, or a pending send that an earlier echo resolved), or when its content matches an
//! unresolved pending send of the conversation: that send then gets the echo's `mid`, and the
//! outbound worker, finding it, records the message instead of sending it again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::datakey::DataKeys;
use crate::domain::{Direction, MessageLink, PendingSend};
use crate::ids::{IgAccountId, Igsid, Mid, OrgId};
use crate::instagram::send::{OutMessage, echo_signature};
use crate::store::{Repo, StoreError};

/// How long after an attempt starts its answer may still record the `mid`: an echo that matches
/// nothing while such an attempt is in flight waits for it.
pub const IN_FLIGHT_SECS: i64 = 30;
/// How long such an echo waits before it is looked at again.
pub const RECHECK_AFTER: Duration = Duration::from_secs(10);

/// What an echo is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EchoOf {
    /// A message this app sent: never shown again.
    Ours,
    /// Possibly ours: a send whose answer may still come is in flight; look again later.
    Undecided,
    /// Sent by someone else for the business (the Instagram app, another tool): shown to the
    /// agents as a staff message.
    Staff,
}

/// One conversation's echo bookkeeping.
pub(crate) struct Echoes<'a> {
    pub repo: &'a Repo,
    pub keys: &'a DataKeys,
    pub org: &'a OrgId,
    pub ig: &'a IgAccountId,
    pub igsid: &'a Igsid,
}

impl Echoes<'_> {
    /// Gives the pending send the echo's `mid`; false if another echo did first or the send
    /// completed meanwhile.
    async fn resolve(&self, p: &mut PendingSend, mid: &Mid) -> Result<bool, StoreError> {
        let resolved = self
            .repo
            .update(p, |p| {
                if p.mid.is_some() {
                    return false;
                }
                p.mid = Some(mid.to_owned());
                true
            })
            .await;
        match resolved {
            Ok(done) => Ok(done),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The fingerprint a pending send of `message` carries: empty when the organization has no
    /// data key (it then matches nothing).
    pub async fn fingerprint(&self, message: &OutMessage) -> Result<String, StoreError> {
        self.fingerprint_of(Some(message.echo_signature())).await
    }

    /// The fingerprint of a signature (empty for none, or without a data key).
    async fn fingerprint_of(&self, signature: Option<String>) -> Result<String, StoreError> {
        let Some(signature) = signature else {
            return Ok(String::new());
        };
        let Some(key) = self.keys.to_open(self.org).await? else {
            return Ok(String::new());
        };
        let conversation = format!("{}:{}", self.ig, self.igsid);
        Ok(key.fingerprint(&format!("echo:{conversation}"), &signature))
    }

    /// Decides what the echo `message` (with its `mid`) is, resolving the pending send it
    /// matches.
    pub async fn recognise(
        &self,
        mid: &Mid,
        message: &Value,
        now: DateTime<Utc>,
    ) -> Result<EchoOf, StoreError> {
        let link = self
            .repo
            .get::<MessageLink>(&MessageLink::key_for(self.org, self.ig, mid))
            .await?
            .filter(|l| l.direction == Direction::Outbound);
        let mut pending = self
            .repo
            .query_prefix::<PendingSend>(&PendingSend::partition(self.org, self.ig, self.igsid), "")
            .await?;
        if pending.iter().any(|p| p.mid.as_deref() == Some(mid)) {
            return Ok(EchoOf::Ours);
        }
        // A recorded mid may still belong to a pending send: the attempt that recorded it died
        // before clearing the send. Only a send started before the record may take it, so a
        // late echo of an earlier message with the same text cannot complete a newer send.
        let recorded_at = link.as_ref().map(|l| l.created_at);
        let fingerprint = self.fingerprint_of(echo_signature(message)).await?;
        pending.sort_by_key(|p| p.started_at);
        for p in pending.iter_mut() {
            let matches = !fingerprint.is_empty() && p.fingerprint == fingerprint;
            if !matches || p.mid.is_some() || recorded_at.is_some_and(|t| p.started_at > t) {
                continue;
            }
            if self.resolve(p, mid).await? {
                return Ok(EchoOf::Ours);
            }
        }
        if link.is_some() {
            return Ok(EchoOf::Ours);
        }
        let in_flight = pending
            .iter()
            .any(|p| p.mid.is_none() && (now - p.started_at).num_seconds() < IN_FLIGHT_SECS);
        Ok(if in_flight {
            EchoOf::Undecided
        } else {
            EchoOf::Staff
        })
    }
}
