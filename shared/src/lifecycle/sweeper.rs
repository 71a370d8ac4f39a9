//! The deletion sweeper: hard-deletes every item of each organization or Facebook user whose
//! purge is due, completes data-deletion requests, and retries revocations that failed. Logs
//! counts only. Idempotent and resumable: a run cut short continues at the next one, and nothing
//! not due is touched.

use crate::ids::DeletionCode;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{DELETION_STATUS_TTL_SECS, Lifecycle, PURGE_DUE_SECS, RETENTION_AFTER_UNINSTALL_SECS};
use crate::domain::*;
use crate::events::{LifecycleEvent, LifecycleKind, publish_logged};
use crate::ids::{FacebookUserId, OrgId};
use crate::store::{Condition, Key, PageRequest, Record, Repo, StoreError};

/// Keys per round when purging an organization (a DynamoDB page of the keys-only index holds
/// several thousand).
const ROUND: u32 = 2000;
/// Rounds per organization per run (a larger one continues at the next run).
const MAX_ROUNDS: usize = 50;
/// Pages of a reinstalled organization's leftovers per run: each page is read in batches of 100
/// keys, so 25 × 2000 keys stay well inside the sweeper's 300 s.
const LEFTOVER_PAGES: usize = 25;
/// Revocations retried per run, after the purges: each may wait out a 10 s client timeout, so
/// an outage at Meta or LiveChat with many pending could otherwise use up the run (300 s).
pub const MAX_REVOCATIONS_PER_RUN: usize = 20;
/// Time a run spends finishing interrupted uninstalls (marking runs at hundreds of items per
/// second, so a tenant of 100,000 items is through within a run or two of the hourly schedule).
pub const RESUME_BUDGET: std::time::Duration = std::time::Duration::from_secs(150);

/// What one sweep did (or, dry, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Purge entries due.
    pub due: usize,
    /// Organizations purged completely.
    pub organizations: usize,
    /// Facebook users purged.
    pub users: usize,
    /// Items deleted (or that would be).
    pub items_deleted: usize,
    /// Data-deletion requests completed.
    pub requests_completed: usize,
    /// Revocations that succeeded on retry.
    pub revocations_done: usize,
    /// Revocations still failing, or not tried in this run (the next one continues).
    pub revocations_pending: usize,
    /// Uninstalls whose resumable part this run carried on.
    pub uninstalls_resumed: usize,
    /// Items marked with their uninstall's expiry by this run.
    pub items_marked: usize,
    /// Nothing was changed.
    pub dry_run: bool,
}

impl Lifecycle {
    /// One sweep at `now`.
    pub async fn sweep(
        &self,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport {
            dry_run,
            ..SweepReport::default()
        };
        if !dry_run {
            self.resume_uninstalls(now.timestamp(), &mut report).await?;
        }
        let mut page = PageRequest::default();
        loop {
            let got = self
                .deps
                .repo
                .store()
                .query(
                    PurgeEntry::PARTITION,
                    &PurgeEntry::due_range(now.timestamp()),
                    page.clone(),
                )
                .await?;
            for item in got.items {
                let entry: PurgeEntry = Repo::from_item(item)?;
                report.due += 1;
                self.purge(&entry, now, dry_run, &mut report).await?;
            }
            match got.next {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        // Purges first: the promise is about them; revocation retries are bounded.
        self.retry_revocations(dry_run, &mut report).await?;
        tracing::info!(
            due = report.due,
            organizations = report.organizations,
            users = report.users,
            items_deleted = report.items_deleted,
            requests_completed = report.requests_completed,
            revocations_done = report.revocations_done,
            revocations_pending = report.revocations_pending,
            uninstalls_resumed = report.uninstalls_resumed,
            items_marked = report.items_marked,
            dry_run,
            "sweep finished"
        );
        Ok(report)
    }

    /// Carries on every uninstall whose marking is unfinished (an invocation that ran out of
    /// time or was killed), within [`RESUME_BUDGET`].
    async fn resume_uninstalls(
        &self,
        now: i64,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        let deadline = std::time::Instant::now() + RESUME_BUDGET;
        let entries: Vec<PurgeEntry> = self
            .deps
            .repo
            .query_prefix(PurgeEntry::PARTITION, "")
            .await?;
        // A due entry is purged whole in this run: marking it first would be wasted work.
        for entry in entries.into_iter().filter(|e| !e.marked && e.due_at > now) {
            let PurgeSubject::Organization(org) = &entry.subject else {
                continue;
            };
            if std::time::Instant::now() >= deadline {
                break;
            }
            let mut done = super::UninstallReport::default();
            // One organization's failure must not hold up the others or the purges.
            if let Err(e) = self.finish(org, deadline, &mut done).await {
                tracing::error!(organization_id = %org, error = %e, "could not carry on an uninstall; the next run retries");
            }
            report.uninstalls_resumed += 1;
            report.items_marked += done.items;
        }
        Ok(())
    }

    async fn retry_revocations(
        &self,
        dry_run: bool,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        let mut pending: Vec<PendingRevocation> = self
            .deps
            .repo
            .query_prefix(PendingRevocation::PARTITION, "")
            .await?;
        pending.sort_by_key(|p| p.revocation.order());
        // Organizations with a Page unsubscribe still pending: their grants wait (revoking a
        // grant kills the Page tokens the unsubscribe needs).
        let mut page_pending: std::collections::HashSet<OrgId> = pending
            .iter()
            .skip(MAX_REVOCATIONS_PER_RUN)
            .filter(|p| matches!(p.revocation, Revocation::PageSubscription { .. }))
            .map(|p| p.organization_id.clone())
            .collect();
        for (i, mut p) in pending.into_iter().enumerate() {
            let waits = matches!(p.revocation, Revocation::FacebookGrant { .. })
                && page_pending.contains(&p.organization_id);
            if dry_run || i >= MAX_REVOCATIONS_PER_RUN || waits {
                report.revocations_pending += 1;
                continue;
            }
            let done = self.revoke(&p.organization_id, &p.revocation).await;
            if !done && matches!(p.revocation, Revocation::PageSubscription { .. }) {
                page_pending.insert(p.organization_id.clone());
            }
            if done {
                self.deps
                    .repo
                    .store()
                    .delete(&p.key(), Condition::Always)
                    .await?;
                report.revocations_done += 1;
            } else {
                p.attempts += 1;
                self.deps.repo.put(&p, Condition::Always).await?;
                report.revocations_pending += 1;
            }
        }
        Ok(())
    }

    async fn purge(
        &self,
        entry: &PurgeEntry,
        now: DateTime<Utc>,
        dry_run: bool,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        let mut event = LifecycleEvent::new(LifecycleKind::Purged, now);
        let deleted = match &entry.subject {
            PurgeSubject::Organization(org) => {
                event = event.org(org);
                let (deleted, complete) = if self.reinstalled(org).await? {
                    // Installed again within the 7 days: only what the uninstall marked goes.
                    let mark = entry.due_at + RETENTION_AFTER_UNINSTALL_SECS - PURGE_DUE_SECS;
                    self.purge_leftovers(org, mark, now.timestamp(), dry_run)
                        .await?
                } else {
                    self.purge_organization(org, dry_run).await?
                };
                report.items_deleted += deleted;
                if !complete {
                    return Ok(()); // resumes at the next run
                }
                report.organizations += 1;
                deleted
            }
            PurgeSubject::FacebookUser(user) => {
                let keys = self.keys_of_request(user, entry).await?;
                report.items_deleted += keys.len();
                if !dry_run {
                    self.deps.repo.store().delete_many(&keys).await?;
                }
                report.users += 1;
                keys.len()
            }
        };
        if dry_run {
            return Ok(());
        }
        event.items = Some(deleted as u64);
        let mut events = vec![event];
        events.extend(self.complete_request(entry, now, report).await?);
        // The entry goes last, so a run cut short finds it again.
        self.deps
            .repo
            .store()
            .delete(&entry.key(), Condition::Always)
            .await?;
        publish_logged(self.deps.events.as_ref(), &events).await;
        Ok(())
    }

    /// Deletes everything of an uninstalled organization, a round at a time: how many items, and
    /// whether it is all gone (else the next run resumes).
    async fn purge_organization(
        &self,
        org: &OrgId,
        dry_run: bool,
    ) -> Result<(usize, bool), StoreError> {
        let mut deleted = 0;
        for _ in 0..MAX_ROUNDS {
            // Installed again while this run purges: the next run keeps the new records.
            if self.reinstalled(org).await? {
                return Ok((deleted, false));
            }
            let page = PageRequest {
                limit: Some(ROUND),
                cursor: None,
            };
            let keys = self
                .deps
                .repo
                .store()
                .query_organization(org, page)
                .await?
                .items;
            if keys.is_empty() {
                return Ok((deleted, true));
            }
            deleted += keys.len();
            if dry_run {
                return Ok((deleted, true));
            }
            self.deps.repo.store().delete_many(&keys).await?;
        }
        Ok((deleted, false))
    }

    /// Marks the Meta data-deletion request a purge answers as completed (the status page Meta
    /// links to says so), dropping the user's id from it.
    async fn complete_request(
        &self,
        entry: &PurgeEntry,
        now: DateTime<Utc>,
        report: &mut SweepReport,
    ) -> Result<Option<LifecycleEvent>, StoreError> {
        let Some(code) = &entry.deletion_code else {
            return Ok(None);
        };
        let Some(mut request) = self
            .deps
            .repo
            .get::<DeletionRequest>(&DeletionRequest::key_for(&DeletionCode::from(code)))
            .await?
        else {
            return Ok(None);
        };
        request.status = DeletionStatus::Completed;
        request.facebook_user_id = None;
        request.completed_at = Some(now);
        request.expires_at = Some(now.timestamp() + DELETION_STATUS_TTL_SECS);
        self.deps.repo.put(&request, Condition::Always).await?;
        report.requests_completed += 1;
        let mut done = LifecycleEvent::new(LifecycleKind::DeletionCompleted, now);
        done.confirmation_code = Some(code.clone());
        Ok(Some(done))
    }
}

impl Lifecycle {
    /// What a Facebook user's purge deletes: everything of the accounts the request disconnected,
    /// except an account connected again after the request (the user's new consent; its
    /// connection, route and link stay, and so does the data it uses).
    async fn keys_of_request(
        &self,
        user: &FacebookUserId,
        entry: &PurgeEntry,
    ) -> Result<Vec<Key>, StoreError> {
        let links: Vec<FacebookUserLink> = self
            .deps
            .repo
            .query_prefix(&FacebookUserLink::partition(user), "")
            .await?;
        let mut keys: Vec<Key> = Vec::new();
        for link in &links {
            let (org, ig) = (&link.organization_id, &link.ig_account_id);
            let conn = self
                .deps
                .repo
                .get::<InstagramConnection>(&InstagramConnection::key_for(org, ig))
                .await?;
            // Someone else's connection now, or this user's new consent: kept.
            let someone_else = conn.as_ref().is_some_and(|c| c.facebook_user_id != *user);
            let reconnected = conn.is_some_and(|c| {
                c.status != ConnectionStatus::Disconnected && c.connected_at > entry.scheduled_at
            });
            let named = match &entry.accounts {
                None => true,
                Some(accounts) => accounts
                    .iter()
                    .any(|a| a.organization_id == org && a.ig_account_id == ig),
            };
            if someone_else {
                keys.push(link.key()); // this user's link to an account that is no longer theirs
                continue;
            }
            if reconnected || !named {
                tracing::info!(organization_id = %org, "account connected again after the request: kept");
                continue;
            }
            keys.extend(self.keys_of_account(org, ig).await?);
            keys.push(link.key());
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Whether the organization has a live installation again.
    pub(super) async fn reinstalled(&self, org: &OrgId) -> Result<bool, StoreError> {
        Ok(self
            .deps
            .repo
            .get::<Installation>(&Installation::key_for(org))
            .await?
            .is_some_and(|i| i.status != InstallationStatus::Uninstalled))
    }

    /// Deletes the organization's items that carry the uninstall's mark (the expiry it set on
    /// every item, `mark`) or have expired by `now`. The reinstalled installation's records carry
    /// no expiry or their own, and a leftover it took over was unmarked then. Reads each item (the
    /// index holds keys only), so a run covers at most `LEFTOVER_PAGES` pages; `false` when more
    /// remain (the next run starts over and finds only what is left).
    async fn purge_leftovers(
        &self,
        org: &OrgId,
        mark: i64,
        now: i64,
        dry_run: bool,
    ) -> Result<(usize, bool), StoreError> {
        let mut page = PageRequest {
            limit: Some(ROUND),
            cursor: None,
        };
        let mut deleted = 0;
        for _ in 0..LEFTOVER_PAGES {
            let got = self
                .deps
                .repo
                .store()
                .query_organization(org, page.clone())
                .await?;
            let marked: Vec<Key> = self
                .deps
                .repo
                .store()
                .get_many(&got.items)
                .await?
                .into_iter()
                .filter(|i| i.expires_at().is_some_and(|at| at == mark || at <= now))
                .map(|i| i.key())
                .collect();
            deleted += marked.len();
            if !dry_run && !marked.is_empty() {
                self.deps.repo.store().delete_many(&marked).await?;
            }
            match got.next {
                Some(c) => page.cursor = Some(c),
                None => return Ok((deleted, true)),
            }
        }
        Ok((deleted, false))
    }
}

/// The scheduler's input: any JSON; `{"now": RFC3339, "dry_run": bool}` are honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepInput {
    /// The time to sweep at.
    pub now: DateTime<Utc>,
    /// Report only.
    pub dry_run: bool,
}

/// The input was not usable.
#[derive(Debug, thiserror::Error)]
#[error("sweep input: {0}")]
pub struct SweepInputError(String);

impl SweepInput {
    /// Reads the optional fields of a scheduler event; anything else is ignored.
    pub fn from_event(
        event: &serde_json::Value,
        default_now: DateTime<Utc>,
    ) -> Result<Self, SweepInputError> {
        let now = match event.get("now").and_then(serde_json::Value::as_str) {
            Some(s) => DateTime::parse_from_rfc3339(s)
                .map_err(|e| SweepInputError(format!("now: {e}")))?
                .with_timezone(&Utc),
            None => default_now,
        };
        Ok(Self {
            now,
            dry_run: event
                .get("dry_run")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_input_is_optional_and_checked() {
        let now = Utc::now();
        assert_eq!(
            SweepInput::from_event(&serde_json::json!({}), now).unwrap(),
            SweepInput {
                now,
                dry_run: false
            }
        );
        let i = SweepInput::from_event(&serde_json::json!({"now": "2026-01-01T00:00:00Z", "dry_run": true, "source": "aws.scheduler"}), now).unwrap();
        assert_eq!((i.now.timestamp(), i.dry_run), (1767225600, true));
        assert!(SweepInput::from_event(&serde_json::json!({"now": "yesterday"}), now).is_err());
        assert!(SweepInput::from_event(&serde_json::Value::Null, now).is_ok());
    }
}
