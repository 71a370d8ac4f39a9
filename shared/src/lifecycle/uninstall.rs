//! Uninstall in two parts, so that no timeout, crash or replay can lose the purge.
//!
//! 1. **The unskippable part** (`begin`): the purge entry is written, then the installation turns
//!    `uninstalled` (tokens wiped) in one conditional write, then the organization's data key is
//!    destroyed (every queued or parked copy of its data is unreadable from then on) and its
//!    Instagram accounts stop routing. Once the state has changed, the purge entry exists.
//! 2. **Resumable work** (`finish`): disconnecting the connections (their Page tokens become
//!    pending revocations), the revocations themselves, and marking every item of the
//!    organization with the uninstall's expiry. Each step is idempotent and records its progress,
//!    so this invocation (within its time budget), a replayed webhook, a restarted invocation or
//!    the sweeper carries on where the last one stopped.

use crate::ids::RevocationId;
use std::time::{Duration, Instant};

use super::{Lifecycle, PURGE_DUE_SECS, RETENTION_AFTER_UNINSTALL_SECS, UninstallReport};
use crate::cipher::TokenContext;
use crate::domain::*;
use crate::events::{LifecycleEvent, LifecycleKind, publish_logged};
use crate::ids::OrgId;
use crate::store::{Condition, Cursor, Key, PageRequest, Record, StoreError, keys};

/// How long the uninstall webhook works before answering: LiveChat expects an answer within
/// 5 s (and retries otherwise); whatever is left is finished by the sweeper or a replay.
pub const UNINSTALL_BUDGET: Duration = Duration::from_millis(2000);
/// Keys marked per page; progress is saved after each page.
const MARK_PAGE: u32 = 2000;
/// Time a page of marking may take at most.
const PAGE_RESERVE: Duration = Duration::from_secs(1);
/// The record kind attribute.
const KIND_ATTR: &str = crate::store::KIND;

impl Lifecycle {
    /// `application_uninstalled`: the atomic part at once, then as much of the rest as fits in
    /// [`UNINSTALL_BUDGET`]. Replays are harmless and finish what an earlier run left.
    ///
    /// `sent_at` is when LiveChat says the uninstall happened: an uninstall of an earlier
    /// installation (a delayed or replayed webhook) leaves a newer installation alone.
    pub async fn uninstall(
        &self,
        org: &OrgId,
        sent_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<UninstallReport, StoreError> {
        self.uninstall_until(org, sent_at, Instant::now() + UNINSTALL_BUDGET)
            .await
    }

    /// [`Lifecycle::uninstall`] with an explicit deadline for the resumable part.
    pub async fn uninstall_until(
        &self,
        org: &OrgId,
        sent_at: Option<chrono::DateTime<chrono::Utc>>,
        deadline: Instant,
    ) -> Result<UninstallReport, StoreError> {
        let mut report = UninstallReport::default();
        for _ in 0..crate::store::MAX_CONFLICT_RETRIES {
            let Some(inst) = self
                .deps
                .repo
                .get::<Installation>(&Installation::key_for(org))
                .await?
            else {
                return Ok(report);
            };
            if inst.status != InstallationStatus::Uninstalled {
                // LiveChat dates app webhooks to the second: an uninstall in the second of the
                // installation's creation is this installation's, not an earlier one's.
                let earlier = |at: chrono::DateTime<chrono::Utc>| {
                    at.timestamp() < inst.installed_at.timestamp()
                };
                if sent_at.is_some_and(earlier) {
                    tracing::warn!(organization_id = %org, "uninstall of an earlier installation ignored");
                    return Ok(report);
                }
                match self.begin(inst).await {
                    Ok(()) => report.uninstalled = true,
                    // Changed under us (a token refresh, a route): read again and retry.
                    Err(StoreError::ConditionFailed) => continue,
                    Err(e) => return Err(e),
                }
            }
            self.finish(org, deadline, &mut report).await?;
            return Ok(report);
        }
        Err(StoreError::Backend {
            message: "installation kept changing during uninstall".into(),
            transient: true,
        })
    }

    /// The part that makes the purge unskippable, in an order that is safe to cut anywhere:
    ///
    /// 1. the purge entry (cut here: an entry for a live installation, which deletes nothing of
    ///    it; see `Lifecycle::purge`);
    /// 2. the installation turns `uninstalled`, conditional on the version read, in one write
    ///    that wipes its tokens and keeps the refresh token only sealed for its revocation;
    /// 3. the data key goes, so every queued or parked copy of the tenant's data is unreadable;
    /// 4. routing stops.
    ///
    /// After 2, a replay goes straight to [`Lifecycle::finish`], which redoes 3 and 4 (both
    /// idempotent). One DynamoDB transaction would do 1–4 at once at twice the write cost; the
    /// order gives the same guarantee — no uninstalled installation without its purge entry.
    /// `ConditionFailed` if the installation changed meanwhile.
    async fn begin(&self, mut inst: Installation) -> Result<(), StoreError> {
        let org = inst.organization_id.clone();
        let now = self.deps.clock.now();
        let due = now.timestamp() + PURGE_DUE_SECS;
        let mark = now.timestamp() + RETENTION_AFTER_UNINSTALL_SECS;
        let entry = PurgeEntry {
            subject: PurgeSubject::Organization(org.clone()),
            due_at: due,
            scheduled_at: now,
            deletion_code: None,
            marked: false,
            mark_cursor: None,
            accounts: None,
        };
        self.deps.repo.put(&entry, Condition::Always).await?;
        inst.revoke_token = self.livechat_token_of(&inst).map(|t| {
            self.deps
                .cipher
                .seal(&t, &TokenContext::LivechatRevoke { org: &org })
        });
        inst.access_token = None;
        inst.refresh_token = None;
        inst.refresh_lease_until = None;
        inst.status = InstallationStatus::Uninstalled;
        inst.updated_at = now;
        inst.expires_at = Some(mark);
        inst.purge_due_at = Some(due);
        self.deps.repo.save(&mut inst).await?;
        tracing::info!(organization_id = %org, "uninstalled: purge scheduled");
        self.shred_and_stop_routing(&org, now, mark).await?;
        publish_logged(
            self.deps.events.as_ref(),
            &[LifecycleEvent::new(LifecycleKind::Uninstalled, now).org(&org)],
        )
        .await;
        Ok(())
    }

    /// Destroys the organization's data key (leaving a tombstone) and stops routing its
    /// accounts. Idempotent; a key or connection made after `uninstalled_at` (by a reinstall)
    /// is left alone.
    async fn shred_and_stop_routing(
        &self,
        org: &OrgId,
        uninstalled_at: chrono::DateTime<chrono::Utc>,
        mark: i64,
    ) -> Result<(), StoreError> {
        crate::datakey::DataKeys::new(
            self.deps.repo.clone(),
            self.deps.cipher.clone(),
            self.deps.clock.clone(),
        )
        .destroy(org, uninstalled_at, mark)
        .await?;
        for conn in self.connections_of(org).await? {
            if conn.connected_at <= uninstalled_at {
                self.stop_routing(org, &conn.ig_account_id).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn connections_of(
        &self,
        org: &OrgId,
    ) -> Result<Vec<InstagramConnection>, StoreError> {
        self.deps
            .repo
            .query_prefix(&keys::organization(org), keys::CONNECTION_PREFIX)
            .await
    }

    fn livechat_token_of(&self, inst: &Installation) -> Option<secrecy::SecretString> {
        let org = &inst.organization_id;
        let open = |t: &crate::cipher::EncryptedToken, context: TokenContext| {
            self.deps.cipher.open(t, &context).ok()
        };
        inst.refresh_token
            .as_ref()
            .and_then(|t| open(t, TokenContext::AgentRefresh { org }))
            .or_else(|| {
                inst.access_token
                    .as_ref()
                    .and_then(|t| open(t, TokenContext::AgentAccess { org }))
            })
    }

    fn pending(
        &self,
        org: &OrgId,
        id: &str,
        revocation: Revocation,
        mark: i64,
    ) -> PendingRevocation {
        PendingRevocation {
            organization_id: org.to_owned(),
            id: RevocationId::from(id.to_string()),
            revocation,
            attempts: 0,
            expires_at: mark,
        }
    }

    /// The resumable part; returns early, with progress saved, at `deadline`.
    pub(super) async fn finish(
        &self,
        org: &OrgId,
        deadline: Instant,
        report: &mut UninstallReport,
    ) -> Result<(), StoreError> {
        let Some(inst) = self
            .deps
            .repo
            .get::<Installation>(&Installation::key_for(org))
            .await?
        else {
            return Ok(());
        };
        // Reinstalled meanwhile: the new installation's records are not this uninstall's.
        let (InstallationStatus::Uninstalled, Some(due)) = (inst.status, inst.purge_due_at) else {
            return Ok(());
        };
        let mark = due + RETENTION_AFTER_UNINSTALL_SECS - PURGE_DUE_SECS;
        let uninstalled_at = inst.updated_at;
        // `begin` did this moments ago in the same invocation; a replay or the sweeper redoes it
        // in case that invocation was cut after the state change.
        if !report.uninstalled {
            self.shred_and_stop_routing(org, uninstalled_at, mark)
                .await?;
        }
        self.queue_livechat_revocation(inst, mark).await?;
        self.disconnect_all(org, mark, uninstalled_at).await?;
        if Instant::now() >= deadline {
            report.deferred += 1;
            return Ok(());
        }
        self.revoke_pending(org, deadline, report).await?;
        if Instant::now() >= deadline {
            return Ok(());
        }
        let key = PurgeEntry::key_for(due, &PurgeSubject::Organization(org.to_owned()));
        if let Some(mut entry) = self.deps.repo.get::<PurgeEntry>(&key).await? {
            if !entry.marked {
                self.mark_items(org, &mut entry, mark, deadline, report)
                    .await?;
            }
            report.complete = entry.marked && report.deferred == 0;
        }
        Ok(())
    }

    /// Moves the sealed LiveChat token from the installation into a pending revocation.
    async fn queue_livechat_revocation(
        &self,
        mut inst: Installation,
        mark: i64,
    ) -> Result<(), StoreError> {
        let Some(token) = inst.revoke_token.clone() else {
            return Ok(());
        };
        let org = inst.organization_id.clone();
        let p = self.pending(&org, "livechat", Revocation::Livechat { token }, mark);
        self.deps.repo.put(&p, Condition::Always).await?;
        let cleared = self
            .deps
            .repo
            .update(&mut inst, |i| {
                let ours = i.status == InstallationStatus::Uninstalled;
                i.revoke_token = i.revoke_token.take().filter(|_| !ours);
                ours
            })
            .await;
        match cleared {
            Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every connection of the organization: Page token into a pending revocation (with the
    /// Facebook grant's), record wiped and disconnected, route stopped. Idempotent.
    async fn disconnect_all(
        &self,
        org: &OrgId,
        mark: i64,
        uninstalled_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let now = self.deps.clock.now();
        for mut conn in self.connections_of(org).await? {
            let done = conn.page_token.is_none() && conn.status == ConnectionStatus::Disconnected;
            // A connection made after the uninstall is a reinstall's.
            if done || conn.connected_at > uninstalled_at {
                continue;
            }
            let ig = conn.ig_account_id.clone();
            let ctx = TokenContext::Page { org, ig: &ig };
            if let Some(token) = conn
                .page_token
                .take()
                .and_then(|t| self.deps.cipher.open(&t, &ctx).ok())
            {
                let sealed = self.deps.cipher.seal(
                    &token,
                    &TokenContext::PageRevoke {
                        org,
                        page: &conn.page_id,
                    },
                );
                let r = Revocation::PageSubscription {
                    page_id: conn.page_id.clone(),
                    ig_account_id: Some(ig.clone()),
                    token: sealed,
                };
                let p = self.pending(org, &format!("page:{}", conn.page_id), r, mark);
                self.deps.repo.put(&p, Condition::Always).await?;
            }
            let r = Revocation::FacebookGrant {
                facebook_user_id: conn.facebook_user_id.clone(),
            };
            let p = self.pending(org, &format!("fbuser:{}", conn.facebook_user_id), r, mark);
            self.deps.repo.put(&p, Condition::Always).await?;
            // Routing stops before the record says so: a cut in between is redone next time.
            self.stop_routing(org, &ig).await?;
            conn.status = ConnectionStatus::Disconnected;
            conn.updated_at = now;
            conn.expires_at = Some(mark);
            self.deps.repo.put(&conn, Condition::Always).await?;
        }
        Ok(())
    }

    /// Tries the organization's pending revocations while time is left; the rest stay for the
    /// sweeper.
    async fn revoke_pending(
        &self,
        org: &OrgId,
        deadline: Instant,
        report: &mut UninstallReport,
    ) -> Result<(), StoreError> {
        let mut pending: Vec<PendingRevocation> = self
            .deps
            .repo
            .query_prefix(keys::REVOCATIONS, &keys::revocations_of(org))
            .await?;
        pending.retain(|p| p.organization_id == *org);
        pending.sort_by_key(|p| p.revocation.order());
        let mut page_pending = false;
        for mut p in pending {
            // The grant waits for every Page unsubscribe: revoking it kills the Page tokens.
            if page_pending && matches!(p.revocation, Revocation::FacebookGrant { .. }) {
                report.deferred += 1;
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let done = !left.is_zero()
                && tokio::time::timeout(left, self.revoke(org, &p.revocation))
                    .await
                    .unwrap_or(false);
            page_pending |= !done && matches!(p.revocation, Revocation::PageSubscription { .. });
            if done {
                self.deps
                    .repo
                    .store()
                    .delete(&p.key(), Condition::Always)
                    .await?;
                report.revoked += 1;
            } else {
                if !left.is_zero() {
                    p.attempts += 1;
                    self.deps.repo.put(&p, Condition::Always).await?;
                }
                report.deferred += 1;
            }
        }
        Ok(())
    }

    /// Marks every item of the organization with the uninstall's expiry (contacts also lose their
    /// cached customer token), a page at a time, saving the position after each page.
    async fn mark_items(
        &self,
        org: &OrgId,
        entry: &mut PurgeEntry,
        mark: i64,
        deadline: Instant,
        report: &mut UninstallReport,
    ) -> Result<(), StoreError> {
        // A page is started only with time in hand for it (a query, a batch read and a batch
        // write of up to 2,000 items), so the webhook keeps its answer time.
        while Instant::now() + PAGE_RESERVE < deadline {
            // Reinstalled meanwhile: marking stops (the new installation's records are not this
            // uninstall's; what was left unmarked belongs to the tenant, installed again).
            if self.reinstalled(org).await? {
                entry.marked = true;
                entry.mark_cursor = None;
                return self.save_progress(entry).await;
            }
            let page = PageRequest {
                limit: Some(MARK_PAGE),
                cursor: entry.mark_cursor.clone().map(Cursor),
            };
            let got = self.deps.repo.store().query_organization(org, page).await?;
            let n = got.items.len();
            match self
                .mark_page(org, &got.items, mark, entry.due_at, deadline)
                .await?
            {
                Marked::Page => {}
                // The next run reads this page again (what is marked already is skipped).
                Marked::OutOfTime => return Ok(()),
                // Reinstalled while this page was marked: the rest is the new installation's.
                Marked::Reinstalled => {
                    entry.marked = true;
                    entry.mark_cursor = None;
                    return self.save_progress(entry).await;
                }
            }
            report.items += n;
            entry.mark_cursor = got.next.map(|c| c.0);
            entry.marked = entry.mark_cursor.is_none();
            self.save_progress(entry).await?;
            if entry.marked {
                tracing::info!(organization_id = %org, "every item marked for purge");
                break;
            }
        }
        Ok(())
    }

    /// Saves the marking position. IfPresent: a purge that already ran is not brought back.
    async fn save_progress(&self, entry: &PurgeEntry) -> Result<(), StoreError> {
        match self.deps.repo.put(entry, Condition::IfPresent).await {
            Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Marks one page of keys: a batch read, then the items not yet marked written back with
    /// the mark (contacts also lose their cached customer token and move on a version, so a
    /// worker holding the old one cannot write the token back). Each write is conditional on the
    /// item being unchanged since it was read, and each transaction of them on the installation
    /// still being this uninstall's (`purge_due_at`): a reinstall, or any write to an item, that
    /// lands between the read and the write is never overwritten by the stale copy. A chunk
    /// refused that way is read again (a few times); `Ok(false)` when the installation changed
    /// (reinstalled: marking stops).
    async fn mark_page(
        &self,
        org: &OrgId,
        keys: &[Key],
        mark: i64,
        due: i64,
        deadline: Instant,
    ) -> Result<Marked, StoreError> {
        let fence = crate::store::TransactWrite::Check {
            key: Installation::key_for(org),
            condition: Condition::IfEquals {
                attribute: "purge_due_at".into(),
                value: due.into(),
            },
        };
        for chunk in keys.chunks(crate::store::TRANSACT_MAX - 1) {
            if Instant::now() >= deadline {
                return Ok(Marked::OutOfTime);
            }
            if !self.mark_chunk(org, chunk, mark, &fence).await? {
                return Ok(Marked::Reinstalled);
            }
        }
        Ok(Marked::Page)
    }

    /// One transaction's worth of [`Lifecycle::mark_page`], retried when an item changed.
    async fn mark_chunk(
        &self,
        org: &OrgId,
        keys: &[Key],
        mark: i64,
        fence: &crate::store::TransactWrite,
    ) -> Result<bool, StoreError> {
        for _ in 0..crate::store::MAX_CONFLICT_RETRIES {
            let items = self.deps.repo.store().get_many(keys).await?;
            let mut writes = vec![fence.clone()];
            for item in items {
                if let Some(write) = marked_copy(item, mark)? {
                    writes.push(write);
                }
            }
            if writes.len() == 1 {
                return Ok(true);
            }
            match self.deps.repo.store().transact(writes).await {
                Ok(()) => return Ok(true),
                Err(StoreError::ConditionFailed) if self.reinstalled(org).await? => {
                    return Ok(false);
                }
                // An item changed since the read (a worker still finishing a job): read again.
                Err(StoreError::ConditionFailed) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Backend {
            message: "items kept changing while marked for purge".into(),
            transient: true,
        })
    }
}

/// How far marking a page got.
enum Marked {
    /// Every item of the page.
    Page,
    /// Time ran out part-way.
    OutOfTime,
    /// The installation changed (reinstalled): marking stops.
    Reinstalled,
}

/// The write that marks `item` with the uninstall's expiry, conditional on the item being
/// unchanged since it was read; `None` when it needs no mark.
fn marked_copy(
    item: crate::store::Item,
    mark: i64,
) -> Result<Option<crate::store::TransactWrite>, StoreError> {
    let kind = item.str(KIND_ATTR);
    // The installation carries its mark since `begin` (and fences the write); the data key is
    // a tombstone.
    if kind == Some(Installation::KIND) || kind == Some(OrganizationKey::KIND) {
        return Ok(None);
    }
    let contact = kind == Some(Contact::KIND);
    let token = contact && item.get("customer_token").is_some();
    // Already marked, or expiring sooner on its own.
    if item.expires_at().is_some_and(|e| e <= mark) && !token {
        return Ok(None);
    }
    let unchanged = unchanged_since_read(&item);
    let mut attrs = item.into_attributes();
    attrs.insert(crate::store::EXPIRES_AT.into(), mark.into());
    if contact {
        attrs.remove("customer_token");
        attrs.remove("customer_token_expires_at");
        let v = attrs
            .get(crate::store::VERSION)
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        attrs.insert(crate::store::VERSION.into(), (v + 1).into());
    }
    Ok(Some(crate::store::TransactWrite::Put {
        item: crate::store::Item::new(attrs)?,
        condition: unchanged,
    }))
}

/// The condition that an item is as it was read: its version for versioned records, its
/// `updated_at` for records that keep one, else its expiry as read; and in every case that it
/// still exists (a stale copy never brings back what was deleted meanwhile).
fn unchanged_since_read(item: &crate::store::Item) -> Condition {
    if let Some(v) = item.get(crate::store::VERSION).and_then(|v| v.as_u64()) {
        return Condition::IfVersion(v);
    }
    for attribute in ["updated_at", crate::store::EXPIRES_AT] {
        if let Some(value) = item.get(attribute) {
            return Condition::IfEquals {
                attribute: attribute.into(),
                value: value.clone(),
            };
        }
    }
    Condition::IfPresent
}
