//! An Instagram connection's state and what tells about it, shared by the workers, the health
//! check, the install flow and the status page: the guarded state transition, the record of a
//! repair (and the replay it asks for), the one notice a broken connection gives each spell, and
//! the health records (`records`) with the organization's backlog.

pub mod records;

use chrono::{DateTime, Utc};

use crate::domain::{ConnectionStatus, InstagramConnection};
use crate::events::{EventPublisher, LifecycleEvent, LifecycleKind, publish_logged};
use crate::ids::{IgAccountId, OrgId};
use crate::store::{Condition, Repo, StoreError};
use records::Backlog;

/// Moves a connection to `to`, only if nobody wrote it since it was read: a disconnect
/// (deauthorize, the status page) or a reconnect that landed meanwhile changed its token, which
/// a write of the copy read before must not undo. False when it had changed.
pub async fn transition(
    repo: &Repo,
    conn: &mut InstagramConnection,
    to: ConnectionStatus,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    // Every writer of a connection sets `updated_at`: unchanged since read means nobody wrote.
    let was = serde_json::to_value(conn.updated_at).expect("a time serializes");
    conn.status = to;
    conn.updated_at = now;
    let unchanged = Condition::IfEquals {
        attribute: "updated_at".into(),
        value: was,
    };
    match repo.put(&*conn, unchanged).await {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Records a repair: the lifecycle event, and (`replay`) a request to replay the organization's
/// jobs parked waiting for it, which the event's rule (or the next run) carries out.
pub async fn repaired(
    repo: &Repo,
    events: &dyn EventPublisher,
    org: &OrgId,
    ig: Option<&IgAccountId>,
    what: &str,
    replay: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if replay {
        // Moved to now even when one is pending: a replay already running started before this
        // repair, and leaves the request for the next one.
        update_backlog(repo, org, |b| {
            b.replay_requested_at = Some(b.replay_requested_at.map_or(now, |at| at.max(now)));
            true
        })
        .await?;
    }
    let mut event = LifecycleEvent::new(LifecycleKind::Repaired, now)
        .org(org)
        .detail(what);
    if let Some(ig) = ig {
        event = event.account(ig);
    }
    tracing::info!(organization_id = %org, what, "repaired");
    publish_logged(events, &[event]).await;
    Ok(())
}

/// Applies `change` to an organization's backlog, creating it if needed; concurrent writers
/// (workers, the health check, the status page) are serialised by its version.
pub async fn update_backlog(
    repo: &Repo,
    org: &OrgId,
    mut change: impl FnMut(&mut Backlog) -> bool,
) -> Result<Backlog, StoreError> {
    for _ in 0..crate::store::MAX_CONFLICT_RETRIES {
        let key = crate::store::keys::backlog(org);
        let mut backlog = match repo.get::<Backlog>(&key).await? {
            Some(b) => b,
            None => {
                let mut fresh = Backlog::new(org);
                if !change(&mut fresh) {
                    return Ok(fresh);
                }
                match repo.create(&mut fresh).await {
                    Ok(()) => return Ok(fresh),
                    Err(StoreError::ConditionFailed) => continue,
                    Err(e) => return Err(e),
                }
            }
        };
        match repo.update(&mut backlog, &mut change).await {
            Ok(_) => return Ok(backlog),
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Backend {
        message: "backlog kept changing".into(),
        transient: true,
    })
}

/// The path of the status page (`GET`: sign in through LiveChat; the page's buttons post to it).
pub fn status_url(public_base_url: &str) -> String {
    format!("{public_base_url}{}", crate::routes::STATUS)
}

/// The one notice a chat gets when its Instagram connection is broken.
pub fn broken_notice_text(public_base_url: &str) -> String {
    format!(
        "igbridge: the Instagram connection of this account is broken (Facebook no longer accepts its Page token), so replies cannot reach Instagram. They are kept and sent once an admin reconnects it on the status page: {}",
        status_url(public_base_url)
    )
}

/// Claims the one notice of a connection's broken spell: true for the first caller only.
pub async fn claim_broken_notice(
    repo: &Repo,
    conn: &InstagramConnection,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let notice = records::BrokenNotice {
        organization_id: conn.organization_id.clone(),
        ig_account_id: conn.ig_account_id.clone(),
        since: conn.updated_at.timestamp(),
        expires_at: now.timestamp() + crate::domain::MESSAGE_LINK_TTL_SECS,
    };
    match repo.put(&notice, Condition::IfAbsent).await {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the notice back (posting it failed), so the next chat tries again.
pub async fn release_broken_notice(repo: &Repo, conn: &InstagramConnection) {
    let key = crate::store::keys::broken_notice(
        &conn.organization_id,
        &conn.ig_account_id,
        conn.updated_at.timestamp(),
    );
    if let Err(e) = repo.remove(&key, Condition::Always).await {
        tracing::warn!(error = %e, "could not release the broken-connection notice");
    }
}
