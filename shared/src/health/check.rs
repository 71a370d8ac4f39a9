//! The scheduled health check: for every installation, refresh the LiveChat agent token ahead of
//! its expiry; for every connection, ask Meta whether the Page token still works (`debug_token`)
//! and whether the Page is still subscribed (`subscribed_apps`), subscribe it again if not, and
//! notice a usually busy account gone silent. A broken connection or a refused grant is told to
//! the admin (lifecycle event, status page, one notice in the next chat); a repair replays the
//! jobs parked waiting for it.

use std::time::Instant;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use secrecy::SecretString;
use serde::Serialize;

use super::replay::{QueuePair, ReplayReport, release_lease, replay, take_lease};
use crate::cipher::TokenContext;
use crate::connection::records::{
    Activity, ConnectionHealth, InstallationEntry, SubscriptionState, TokenState,
};
use crate::connection::{repaired, transition};
use crate::customer::Customers;
use crate::domain::*;
use crate::events::{LifecycleEvent, LifecycleKind, publish_logged};
use crate::ids::OrgId;
use crate::instagram::graph::SUBSCRIBED_FIELDS;
use crate::instagram::graph::TokenInfo;
use crate::metrics::{Metric, Metrics, Sample};
use crate::outcome::Fail;
use crate::store::{Condition, Record, Repo, StoreError, keys};

/// The Page token permission without which replies cannot reach Instagram: the one Meta's Send
/// API for Instagram requires ("The instagram_manage_messages permission", Messenger Platform >
/// Instagram > Send a message > Requirements), which every Instagram messaging call and webhook
/// field lists too. Only its absence — or an invalid token — breaks a connection (replies wait).
/// `pages_messaging` is not one: no Instagram messaging call lists it (docs/health.md).
pub const REQUIRED_PERMISSIONS: &[&str] = &["instagram_manage_messages"];
/// Permissions whose absence degrades a connection without stopping replies: what fails without
/// each, shown on the status page (docs/health.md has the sources).
pub const WANTED_PERMISSIONS: &[(&str, &str)] = &[
    (
        "instagram_basic",
        "Meta requires it beside instagram_manage_messages for Instagram messaging",
    ),
    (
        "pages_manage_metadata",
        "new messages stop arriving if Facebook drops the Page's webhook subscription, which igbridge could not restore",
    ),
    (
        "pages_messaging",
        "Facebook may refuse to restore the Page's webhook subscription",
    ),
    (
        "pages_show_list",
        "the subscription cannot be checked and the Page cannot be listed to reconnect it",
    ),
    (
        "pages_read_engagement",
        "customers' Instagram names and pictures cannot be read",
    ),
];
/// A reply Meta accepted within this long is proof the connection works, whatever
/// `debug_token` says of its permissions.
pub const PROOF_OF_SENDING: chrono::Duration = chrono::Duration::hours(24);
/// The agent token is refreshed when it expires within this (the check runs hourly; the token
/// lasts 8 hours).
pub const REFRESH_AHEAD: chrono::Duration = chrono::Duration::hours(2);
/// A Page token Meta says expires within this is shown as expiring.
pub const EXPIRY_WARNING: chrono::Duration = chrono::Duration::days(7);
/// A usually busy account without a message for this long gets noticed.
pub const SILENCE: chrono::Duration = chrono::Duration::hours(48);
/// "Usually busy": messages on each of this many days before the last one.
const BUSY_DAYS: i64 = 3;
/// Installations checked at once.
const CONCURRENCY: usize = 8;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// Installations looked at.
    pub installations: u64,
    /// Connections checked with Meta.
    pub connections: u64,
    /// Connections found broken (newly).
    pub broken: u64,
    /// Connections working again (the token is accepted again).
    pub repaired: u64,
    /// Pages subscribed again.
    pub resubscribed: u64,
    /// Agent tokens refreshed ahead of expiry.
    pub refreshed: u64,
    /// Installations whose refresh was refused (newly).
    pub reauthorization_needed: u64,
    /// Busy accounts found silent.
    pub silent: u64,
    /// Jobs replayed.
    pub replayed: u64,
    /// Replay requests left to the run holding the replay lease (or to the next hourly run).
    pub replays_left: u64,
    /// Checks that could not be made (Meta or LiveChat down); tried again next run.
    pub unchecked: u64,
    /// False when the run ran out of time before the last installation.
    pub complete: bool,
}

impl HealthReport {
    fn add(&mut self, other: &HealthReport) {
        self.installations += other.installations;
        self.connections += other.connections;
        self.broken += other.broken;
        self.repaired += other.repaired;
        self.resubscribed += other.resubscribed;
        self.refreshed += other.refreshed;
        self.reauthorization_needed += other.reauthorization_needed;
        self.silent += other.silent;
        self.replayed += other.replayed;
        self.replays_left += other.replays_left;
        self.unchecked += other.unchecked;
    }

    fn sample(&self) -> Sample {
        let mut s = Sample::default();
        let counts = [
            (Metric::HealthRepairs, self.repaired + self.resubscribed),
            (Metric::ConnectionsBroken, self.broken),
            (Metric::ReauthorizationsNeeded, self.reauthorization_needed),
        ];
        for (metric, n) in counts {
            if n > 0 {
                s.add(metric, n as f64);
            }
        }
        s
    }
}

/// The health check and its replays.
#[derive(Clone)]
pub struct HealthCheck {
    /// The table, cipher, clock, events and platform clients.
    pub deps: crate::deps::Deps,
    /// Metrics.
    pub metrics: Metrics,
    /// Meta app id (the app token asks `debug_token`; the subscription lists it).
    pub meta_app_id: String,
    /// Meta app secret (the app token).
    pub meta_app_secret: SecretString,
    /// The queues whose parked jobs a repair replays.
    pub queues: Vec<QueuePair>,
}

/// A pending replay request: the organization, and when the replay was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PendingReplay(pub OrgId, pub DateTime<Utc>);

/// What a health run was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthInput {
    /// Check everything (the hourly schedule).
    Run,
    /// Replay one organization's parked jobs (an `igbridge.repaired` or
    /// `igbridge.replay_requested` event).
    Replay(OrgId),
}

impl HealthInput {
    /// The input a Lambda event asks for: a lifecycle event of the bus naming an organization
    /// replays it; anything else (the schedule's `{}`) is a run.
    pub fn from_event(event: &serde_json::Value) -> Self {
        let kind = event.get("detail-type").and_then(|v| v.as_str());
        let org = event
            .pointer("/detail/organization_id")
            .and_then(|v| v.as_str());
        match (kind, org) {
            (Some(k), Some(org))
                if k == LifecycleKind::Repaired.detail_type()
                    || k == LifecycleKind::ReplayRequested.detail_type() =>
            {
                HealthInput::Replay(org.into())
            }
            _ => HealthInput::Run,
        }
    }
}

impl HealthCheck {
    fn app_token(&self) -> SecretString {
        crate::instagram::graph::app_token(&self.meta_app_id, &self.meta_app_secret)
    }

    fn customers(&self) -> Customers {
        Customers {
            deps: self.deps.clone(),
        }
    }

    /// Does what the input asks, until `deadline`.
    pub async fn handle(
        &self,
        input: &HealthInput,
        deadline: Instant,
    ) -> Result<HealthReport, StoreError> {
        match input {
            HealthInput::Run => self.run(deadline).await,
            HealthInput::Replay(org) => self.serve_replays(Some(org), deadline).await,
        }
    }

    /// Checks every installation, a few at a time, until `deadline`. Each run starts at another
    /// place in the list, so a list too long for one run is still covered over several.
    pub async fn run(&self, deadline: Instant) -> Result<HealthReport, StoreError> {
        let mut entries: Vec<InstallationEntry> =
            self.deps.repo.query_prefix(keys::INSTALLATIONS, "").await?;
        if !entries.is_empty() {
            let start = (self.deps.clock.now().timestamp() / 3600) as usize % entries.len();
            entries.rotate_left(start);
        }
        let mut report = HealthReport {
            complete: true,
            ..HealthReport::default()
        };
        // Replays asked for first, in at most half the run (the checks rotate; a request must
        // not wait behind them), then the checks, then what their repairs asked for.
        let half = Instant::now() + deadline.saturating_duration_since(Instant::now()) / 2;
        self.serve_replays_into(half, &mut report).await;
        let mut runs = futures_util::stream::iter(entries)
            .map(|e| async move {
                if Instant::now() >= deadline {
                    return None;
                }
                Some(self.check_installation(&e.organization_id, deadline).await)
            })
            .buffer_unordered(CONCURRENCY);
        while let Some(done) = runs.next().await {
            match done {
                None => report.complete = false,
                Some(Ok(r)) => report.add(&r),
                Some(Err(e)) => {
                    report.unchecked += 1;
                    tracing::warn!(error = %e, "an installation could not be checked");
                }
            }
        }
        self.serve_replays_into(deadline, &mut report).await;
        self.metrics.write(&report.sample(), self.deps.clock.now());
        tracing::info!(?report, "health check done");
        Ok(report)
    }

    /// Checks one installation and its connections (the replays their repairs ask for follow
    /// the checks: [`HealthCheck::serve_replays`]).
    pub async fn check_installation(
        &self,
        org: &OrgId,
        deadline: Instant,
    ) -> Result<HealthReport, StoreError> {
        let mut report = HealthReport {
            installations: 1,
            ..HealthReport::default()
        };
        let Some(mut inst) = self
            .deps
            .repo
            .get::<Installation>(&Installation::key_for(org))
            .await?
        else {
            return Ok(report);
        };
        if inst.status == InstallationStatus::Uninstalled {
            return Ok(report);
        }
        if inst.status == InstallationStatus::Active {
            self.check_livechat(&mut inst, &mut report).await;
        }
        let conns: Vec<InstagramConnection> = self
            .deps
            .repo
            .query_prefix(&keys::organization(org), keys::CONNECTION_PREFIX)
            .await?;
        for conn in conns {
            if Instant::now() >= deadline {
                report.complete = false;
                break;
            }
            if conn.status != ConnectionStatus::Disconnected {
                self.check_connection(conn, &mut report).await?;
            }
        }
        Ok(report)
    }

    /// Refreshes the agent token when it expires within [`REFRESH_AHEAD`].
    async fn check_livechat(&self, inst: &mut Installation, report: &mut HealthReport) {
        let now = self.deps.clock.now();
        let due = inst
            .access_token_expires_at
            .is_none_or(|at| at - now < REFRESH_AHEAD);
        if !due {
            return;
        }
        match self.customers().agent_token(inst, true).await {
            Ok(_) => report.refreshed += 1,
            Err(Fail::Blocked(_)) => report.reauthorization_needed += 1,
            Err(_) => {
                report.unchecked += 1;
                tracing::warn!(organization_id = %inst.organization_id, "the agent token could not be refreshed ahead of expiry; retried next run");
            }
        }
    }

    /// Checks one connection's token, subscription and silence, and records what it found.
    async fn check_connection(
        &self,
        mut conn: InstagramConnection,
        report: &mut HealthReport,
    ) -> Result<(), StoreError> {
        let now = self.deps.clock.now();
        let mut health = self.health_of(&conn).await?;
        health.checked_at = Some(now);
        let Some(token) = self.page_token(&conn) else {
            return Ok(());
        };
        report.connections += 1;
        let info = match self.deps.graph.debug_token(&token, &self.app_token()).await {
            Ok(info) => info,
            Err(e) => {
                report.unchecked += 1;
                tracing::warn!(error = %e, organization_id = %conn.organization_id, "debug_token failed; the token's state is unknown until the next run");
                health.token = TokenState::Unknown;
                return self.deps.repo.put(&health, Condition::Always).await;
            }
        };
        let limited = match self.judge_token(&conn, &info).await? {
            TokenVerdict::Broken(problem) => {
                health.token = TokenState::Invalid;
                health.subscription = SubscriptionState::Unknown;
                health.problem = Some(problem.clone());
                if conn.status != ConnectionStatus::Broken {
                    self.mark_broken(&mut conn, &problem).await?;
                    report.broken += 1;
                }
                return self.deps.repo.put(&health, Condition::Always).await;
            }
            TokenVerdict::Limited(warning) => Some(warning),
            TokenVerdict::Works => None,
        };
        record_working_token(&mut health, &info, limited, now);
        if conn.status == ConnectionStatus::Broken {
            self.mark_repaired(&mut conn, "Facebook accepts the Page token again", true)
                .await?;
            health.repaired_at = Some(now);
            health.repair = Some("the Page token works again".into());
            report.repaired += 1;
        }
        self.check_subscription(&conn, &token, &mut health, report)
            .await;
        self.check_silence(&conn, &mut health, report).await?;
        self.deps.repo.put(&health, Condition::Always).await
    }

    /// What the last run found of a connection (a fresh record for a new connection).
    async fn health_of(&self, conn: &InstagramConnection) -> Result<ConnectionHealth, StoreError> {
        let key = keys::connection_health(&conn.organization_id, &conn.ig_account_id);
        let found = self.deps.repo.get::<ConnectionHealth>(&key).await?;
        Ok(found.unwrap_or_else(|| ConnectionHealth {
            organization_id: conn.organization_id.clone(),
            ig_account_id: conn.ig_account_id.clone(),
            ..ConnectionHealth::default()
        }))
    }

    /// [`token_verdict`], except that a reply Instagram accepted lately outweighs a permission
    /// `debug_token` does not list: a send Meta accepts is proof the connection works.
    async fn judge_token(
        &self,
        conn: &InstagramConnection,
        info: &TokenInfo,
    ) -> Result<TokenVerdict, StoreError> {
        Ok(match token_verdict(info) {
            TokenVerdict::Broken(problem) if info.is_valid && self.sent_lately(conn).await? => {
                TokenVerdict::Limited(format!(
                    "{problem}; yet Instagram accepted a reply in the last 24 hours, so igbridge keeps sending"
                ))
            }
            other => other,
        })
    }

    /// Whether Instagram accepted a reply of this connection within [`PROOF_OF_SENDING`] (the
    /// workers note each connection's outbound activity).
    async fn sent_lately(&self, conn: &InstagramConnection) -> Result<bool, StoreError> {
        let key = Activity::key_for(
            &conn.organization_id,
            &conn.ig_account_id,
            Direction::Outbound,
        );
        let now = self.deps.clock.now();
        Ok(self
            .deps
            .repo
            .get::<Activity>(&key)
            .await?
            .is_some_and(|a| now - a.last_at < PROOF_OF_SENDING))
    }

    fn page_token(&self, conn: &InstagramConnection) -> Option<SecretString> {
        let sealed = conn.page_token.as_ref()?;
        let context = TokenContext::Page {
            org: &conn.organization_id,
            ig: &conn.ig_account_id,
        };
        self.deps.cipher.open(sealed, &context).ok()
    }

    /// Subscribes the Page again when this app is missing from it, or missing a field.
    async fn check_subscription(
        &self,
        conn: &InstagramConnection,
        token: &SecretString,
        health: &mut ConnectionHealth,
        report: &mut HealthReport,
    ) {
        let apps = match self.deps.graph.subscribed_apps(&conn.page_id, token).await {
            Ok(apps) => apps,
            Err(e) => {
                report.unchecked += 1;
                tracing::warn!(error = %e, "subscribed_apps failed; checked again next run");
                health.subscription = SubscriptionState::Unknown;
                return;
            }
        };
        let ours = apps.iter().find(|a| a.id == self.meta_app_id);
        let complete = ours.is_some_and(|a| {
            SUBSCRIBED_FIELDS
                .iter()
                .all(|f| a.subscribed_fields.iter().any(|s| s == f))
        });
        if complete {
            health.subscription = SubscriptionState::Subscribed;
            return;
        }
        // Subscribe only a Page still connected: an admin may have disconnected it meanwhile.
        let fresh = self.deps.repo.get::<InstagramConnection>(&conn.key()).await;
        if !matches!(&fresh, Ok(Some(c)) if c.status != ConnectionStatus::Disconnected) {
            return;
        }
        let graph = &self.deps.graph;
        match graph
            .subscribe_page(&conn.page_id, token, SUBSCRIBED_FIELDS)
            .await
        {
            Ok(()) => self.resubscribed(conn, health, report).await,
            Err(e) => {
                health.subscription = SubscriptionState::Missing;
                health.problem = Some(format!(
                    "the Page is not subscribed to igbridge and Facebook refused to subscribe it again ({e})"
                ));
            }
        }
    }

    /// The Page is subscribed again: recorded, counted and announced.
    async fn resubscribed(
        &self,
        conn: &InstagramConnection,
        health: &mut ConnectionHealth,
        report: &mut HealthReport,
    ) {
        let now = self.deps.clock.now();
        health.subscription = SubscriptionState::Resubscribed;
        health.repaired_at = Some(now);
        health.repair = Some("the Page's webhook subscription was restored".into());
        report.resubscribed += 1;
        tracing::warn!(organization_id = %conn.organization_id, "the Page had lost its subscription; subscribed again");
        let event = LifecycleEvent::new(LifecycleKind::Repaired, now)
            .org(&conn.organization_id)
            .account(&conn.ig_account_id)
            .detail("webhook subscription restored");
        publish_logged(self.deps.events.as_ref(), &[event]).await;
    }

    /// A usually busy account silent for [`SILENCE`]: noted once per silence (its subscription
    /// was just checked, and repaired if it had gone).
    async fn check_silence(
        &self,
        conn: &InstagramConnection,
        health: &mut ConnectionHealth,
        report: &mut HealthReport,
    ) -> Result<(), StoreError> {
        let now = self.deps.clock.now();
        let key = Activity::key_for(
            &conn.organization_id,
            &conn.ig_account_id,
            Direction::Inbound,
        );
        let Some(activity) = self.deps.repo.get::<Activity>(&key).await? else {
            return Ok(());
        };
        let silent = now - activity.last_at >= SILENCE && activity.was_daily(BUSY_DAYS);
        let noted = health
            .silence_noted_at
            .is_some_and(|t| t > activity.last_at);
        if silent && !noted {
            health.silence_noted_at = Some(now);
            report.silent += 1;
            tracing::warn!(
                organization_id = %conn.organization_id,
                hours = (now - activity.last_at).num_hours(),
                subscription = ?health.subscription,
                "a usually busy Instagram account has received nothing for 48 hours"
            );
        }
        Ok(())
    }

    /// Marks a connection broken and tells the admin (event; the status page reads it; the next
    /// chat gets one notice).
    async fn mark_broken(
        &self,
        conn: &mut InstagramConnection,
        problem: &str,
    ) -> Result<(), StoreError> {
        let now = self.deps.clock.now();
        if !transition(&self.deps.repo, conn, ConnectionStatus::Broken, now).await? {
            return Ok(());
        }
        tracing::error!(organization_id = %conn.organization_id, %problem, "connection broken");
        publish_logged(
            self.deps.events.as_ref(),
            &[LifecycleEvent::new(LifecycleKind::ConnectionBroken, now)
                .org(&conn.organization_id)
                .account(&conn.ig_account_id)
                .detail(problem)],
        )
        .await;
        Ok(())
    }

    /// Marks a connection working again, tells the admin and asks for the replay of its jobs.
    async fn mark_repaired(
        &self,
        conn: &mut InstagramConnection,
        what: &str,
        replay: bool,
    ) -> Result<(), StoreError> {
        let now = self.deps.clock.now();
        if !transition(&self.deps.repo, conn, ConnectionStatus::Connected, now).await? {
            return Ok(());
        }
        repaired(
            &self.deps.repo,
            self.deps.events.as_ref(),
            &conn.organization_id,
            Some(&conn.ig_account_id),
            what,
            replay,
            now,
        )
        .await
    }

    /// [`HealthCheck::serve_replays`] for a scheduled run, added to its report.
    async fn serve_replays_into(&self, deadline: Instant, report: &mut HealthReport) {
        match self.serve_replays(None, deadline).await {
            Ok(r) => {
                report.replayed += r.replayed;
                report.replays_left = r.replays_left;
                report.complete &= r.complete;
            }
            Err(e) => {
                report.complete = false;
                tracing::warn!(error = %e, "the pending replays could not be carried out; the next run retries");
            }
        }
    }

    /// Carries out every replay asked for (where no event triggers them: `igbridge serve`);
    /// how many jobs moved.
    pub async fn replay_all_requested(&self, deadline: Instant) -> Result<u64, StoreError> {
        Ok(self.serve_replays(None, deadline).await?.replayed)
    }

    /// Carries out the pending replay requests — `first` (the organization an event named)
    /// before the others — if this run can take the replay lease; otherwise leaves them to its
    /// holder, which looks for requests once more after letting go, or to the next hourly run.
    /// Never waits for the lease: a burst of events ends as a burst of short runs.
    pub async fn serve_replays(
        &self,
        first: Option<&OrgId>,
        deadline: Instant,
    ) -> Result<HealthReport, StoreError> {
        let mut report = HealthReport {
            complete: true,
            ..HealthReport::default()
        };
        let mut served = std::collections::HashSet::new();
        let mut first = first.cloned();
        loop {
            let Some(holder) = take_lease(&self.deps.repo, self.deps.clock.as_ref()).await? else {
                report.replays_left = self.pending_replays().await?.len() as u64;
                tracing::info!(
                    pending = report.replays_left,
                    "another run holds the replay lease; it carries out the pending replays"
                );
                return Ok(report);
            };
            let done = self
                .replay_pending(first.take(), deadline, &mut served, &mut report)
                .await;
            release_lease(&self.deps.repo, self.deps.clock.as_ref(), &holder).await;
            done?;
            // A request accepted while the lease was held, whose own run found it taken (a new
            // request of an organization served already counts: it was asked at another time).
            let pending = self.pending_replays().await?;
            if Instant::now() >= deadline || pending.iter().all(|p| served.contains(p)) {
                return Ok(report);
            }
        }
    }

    /// While holding the lease: replays every pending request not served yet in this run.
    async fn replay_pending(
        &self,
        first: Option<OrgId>,
        deadline: Instant,
        served: &mut std::collections::HashSet<PendingReplay>,
        report: &mut HealthReport,
    ) -> Result<(), StoreError> {
        let mut pending = self.pending_replays().await?;
        if let Some(i) = pending.iter().position(|p| Some(&p.0) == first.as_ref()) {
            let first = pending.remove(i);
            pending.insert(0, first);
        }
        for request in pending {
            if served.contains(&request) {
                continue;
            }
            if Instant::now() >= deadline {
                report.complete = false;
                break;
            }
            let r = self.replay_org(&request.0, deadline).await?;
            served.insert(request);
            report.replayed += r.replayed;
            report.complete &= r.complete;
        }
        report.replays_left = 0;
        Ok(())
    }

    /// The replay requests pending, each an organization and when it was asked (one query of
    /// the installation list and batch reads of their backlogs).
    pub async fn pending_replays(&self) -> Result<Vec<PendingReplay>, StoreError> {
        let entries: Vec<InstallationEntry> =
            self.deps.repo.query_prefix(keys::INSTALLATIONS, "").await?;
        let keys: Vec<_> = entries
            .iter()
            .map(|e| keys::backlog(&e.organization_id))
            .collect();
        let mut pending = Vec::new();
        for item in self.deps.repo.store().get_many(&keys).await? {
            let b: super::Backlog = Repo::from_item(item)?;
            if let Some(at) = b.replay_requested_at {
                pending.push(PendingReplay(b.organization_id, at));
            }
        }
        pending.sort();
        Ok(pending)
    }

    /// Replays `org`'s parked jobs if a replay was asked for (by a repair or the status page),
    /// taking the lease for it (never waiting); `None` when nothing was asked for or another
    /// replay holds the lease.
    pub async fn replay_requested(
        &self,
        org: &OrgId,
        deadline: Instant,
    ) -> Result<Option<ReplayReport>, StoreError> {
        let Some(holder) = take_lease(&self.deps.repo, self.deps.clock.as_ref()).await? else {
            return Ok(None);
        };
        let pending = self
            .deps
            .repo
            .get::<super::Backlog>(&keys::backlog(org))
            .await;
        let done = match pending {
            Ok(Some(b)) if b.replay_requested_at.is_some() => {
                self.replay_org(org, deadline).await.map(Some)
            }
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        };
        release_lease(&self.deps.repo, self.deps.clock.as_ref(), &holder).await;
        done
    }

    /// Replays `org`'s parked jobs (the caller holds the lease).
    async fn replay_org(&self, org: &OrgId, deadline: Instant) -> Result<ReplayReport, StoreError> {
        let now = self.deps.clock.now();
        let (queues, repo, metrics) = (&self.queues, &self.deps.repo, &self.metrics);
        replay(queues, repo, metrics, now, org, deadline)
            .await
            .map_err(|e| StoreError::Backend {
                message: format!("replay: {e}"),
                transient: true,
            })
    }
}

/// What `debug_token` says of a Page token, for the bridge's own calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenVerdict {
    /// Valid, with every permission the bridge's calls use.
    Works,
    /// Valid, but lacking permissions some calls need (not the replies): a warning, in words.
    Limited(String),
    /// Invalid, or lacking a permission replies need: the connection is broken.
    Broken(String),
}

/// Judges a token Meta described: broken only when invalid or lacking a
/// [`REQUIRED_PERMISSIONS`] one; lacking a [`WANTED_PERMISSIONS`] one is a warning.
pub fn token_verdict(info: &TokenInfo) -> TokenVerdict {
    if !info.is_valid {
        let why = info
            .error
            .as_ref()
            .and_then(|e| e.message.clone())
            .unwrap_or_else(|| "Facebook no longer accepts the Page token".into());
        return TokenVerdict::Broken(why);
    }
    let lacks = |p: &str| !info.scopes.iter().any(|s| s == p);
    let missing: Vec<&str> = REQUIRED_PERMISSIONS
        .iter()
        .copied()
        .filter(|p| lacks(p))
        .collect();
    if !missing.is_empty() {
        return TokenVerdict::Broken(format!(
            "the Page token lacks the permission {}, without which Instagram refuses replies; reconnect and allow it",
            missing.join(" and ")
        ));
    }
    let wanted: Vec<String> = WANTED_PERMISSIONS
        .iter()
        .filter(|(p, _)| lacks(p))
        .map(|(p, what)| format!("{p} ({what})"))
        .collect();
    if wanted.is_empty() {
        return TokenVerdict::Works;
    }
    TokenVerdict::Limited(format!(
        "the Page token lacks {}; replies still go out. Reconnect and allow every permission to fix it",
        wanted.join("; ")
    ))
}

/// Records a Page token that works: its expiry, and whether it expires soon or lacks a
/// permission replies do not need (`limited`, the warning shown).
fn record_working_token(
    health: &mut ConnectionHealth,
    info: &TokenInfo,
    limited: Option<String>,
    now: DateTime<Utc>,
) {
    health.token_expires_at = info
        .expires_at
        .filter(|at| *at > 0)
        .and_then(|at| DateTime::from_timestamp(at, 0));
    health.token = match health.token_expires_at {
        Some(at) if at - now < EXPIRY_WARNING => TokenState::Expiring,
        _ if limited.is_some() => TokenState::Limited,
        _ => TokenState::Valid,
    };
    health.problem = limited;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn a_stale_copy_never_undoes_a_disconnect() {
        let repo = Repo::new(Arc::new(MemoryStore::new()));
        let t0 = Utc::now();
        let mut conn = InstagramConnection {
            organization_id: "o".into(),
            ig_account_id: "i".into(),
            ig_username: None,
            page_id: "p".into(),
            page_name: None,
            page_token: None,
            facebook_user_id: "u".into(),
            status: ConnectionStatus::Connected,
            connected_at: t0,
            updated_at: t0,
            expires_at: None,
        };
        repo.put(&conn, Condition::Always).await.unwrap();
        let mut stale = conn.clone();
        // Disconnected meanwhile (token wiped, marked for purge).
        conn.status = ConnectionStatus::Disconnected;
        conn.updated_at = t0 + chrono::Duration::seconds(1);
        conn.expires_at = Some(1);
        repo.put(&conn, Condition::Always).await.unwrap();
        let later = t0 + chrono::Duration::seconds(2);
        let moved = transition(&repo, &mut stale, ConnectionStatus::Broken, later).await;
        assert!(!moved.unwrap());
        let stored: InstagramConnection = repo.get(&conn.key()).await.unwrap().unwrap();
        assert_eq!(stored, conn);
        // A fresh copy moves.
        let mut fresh = stored;
        assert!(
            transition(&repo, &mut fresh, ConnectionStatus::Broken, later)
                .await
                .unwrap()
        );
    }
}
