//! Exactly-once bookkeeping, one claim per platform event, for both workers. A claim is written
//! before the first effect and completed after the last; a claim found in progress means an
//! earlier attempt stopped part-way, so the caller recovers (looks at what already happened)
//! instead of repeating blindly.

use std::sync::Arc;

use crate::clock::Clock;
use crate::domain::{IDEMPOTENCY_TTL_SECS, IdempotencyRecord, IdempotencyState};
use crate::ids::{ClaimedEventId, OrgId, Stream};
use crate::store::{Repo, StoreError};

// A claim remembers an unsend for as long as the unsent message's job can wait parked.
const _: () = assert!(IDEMPOTENCY_TTL_SECS >= crate::provision::DLQ_RETENTION_SECS as i64);

/// What the claim found.
#[derive(Debug)]
pub(crate) enum Claimed {
    /// The first attempt: nothing of the event has happened.
    Fresh(IdempotencyRecord),
    /// An earlier attempt stopped part-way (crash, timeout, retry): some effects may have
    /// happened; `parts_done` says how many are known to have.
    Recover(IdempotencyRecord),
    /// Completed before.
    Done,
    /// Unsent by the customer before it was delivered: never to be delivered.
    Unsent,
}

/// Claims over the table.
#[derive(Clone)]
pub(crate) struct Claims {
    pub repo: Repo,
    pub clock: Arc<dyn Clock>,
}

impl Claims {
    /// A fresh claim of `event_id`, in progress from now.
    fn record(&self, org: &OrgId, scope: Stream, event_id: &str) -> IdempotencyRecord {
        let now = self.clock.now();
        IdempotencyRecord {
            organization_id: org.to_owned(),
            scope,
            event_id: event_id.into(),
            state: IdempotencyState::InProgress,
            claimed_at: now,
            completed_at: None,
            parts_done: 0,
            delay_told: false,
            unsent: false,
            expires_at: now.timestamp() + IDEMPOTENCY_TTL_SECS,
            version: 0,
        }
    }

    /// Claims `event_id` of `scope` for `org`.
    pub async fn claim(
        &self,
        org: &OrgId,
        scope: Stream,
        event_id: &str,
    ) -> Result<Claimed, StoreError> {
        let mut record = self.record(org, scope, event_id);
        match self.repo.create(&mut record).await {
            Ok(()) => return Ok(Claimed::Fresh(record)),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e),
        }
        let key = IdempotencyRecord::key_for(org, scope, &ClaimedEventId::from(event_id));
        match self.repo.get::<IdempotencyRecord>(&key).await? {
            Some(r) if r.state == IdempotencyState::Done && r.unsent => Ok(Claimed::Unsent),
            Some(r) if r.state == IdempotencyState::Done => Ok(Claimed::Done),
            Some(r) => Ok(Claimed::Recover(r)),
            // Expired between the two calls: let the retry claim it afresh.
            None => Err(StoreError::ConditionFailed),
        }
    }

    /// Saves progress (parts done, a notice told); `ConditionFailed` if another attempt wrote
    /// the claim meanwhile.
    pub async fn progress(&self, record: &mut IdempotencyRecord) -> Result<(), StoreError> {
        self.repo.save(record).await
    }

    /// Remembers that the customer unsent `event_id` before the bridge delivered it: its claim
    /// is written done-and-unsent, so any later delivery (a replay of its parked job) is
    /// skipped; a claim an attempt left in progress is marked unsent, and its recovery takes
    /// back what it posted. The claim outlives the dead-letter retention.
    pub async fn unsent(
        &self,
        org: &OrgId,
        scope: Stream,
        event_id: &str,
    ) -> Result<(), StoreError> {
        let mut record = IdempotencyRecord {
            state: IdempotencyState::Done,
            completed_at: Some(self.clock.now()),
            unsent: true,
            ..self.record(org, scope, event_id)
        };
        match self.repo.create(&mut record).await {
            Err(StoreError::ConditionFailed) => {}
            other => return other,
        }
        let key = IdempotencyRecord::key_for(org, scope, &ClaimedEventId::from(event_id));
        let Some(mut claimed) = self.repo.get::<IdempotencyRecord>(&key).await? else {
            return Ok(());
        };
        // Kept as long as the job can wait parked from now on.
        let until = self.clock.now().timestamp() + IDEMPOTENCY_TTL_SECS;
        let marked = self
            .repo
            .update(&mut claimed, |r| {
                r.expires_at = r.expires_at.max(until);
                !std::mem::replace(&mut r.unsent, true)
            })
            .await;
        match marked {
            Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Marks the event done.
    pub async fn finish(&self, mut record: IdempotencyRecord) -> Result<(), StoreError> {
        record.state = IdempotencyState::Done;
        record.completed_at = Some(self.clock.now());
        self.repo.save(&mut record).await
    }
}

impl Claimed {
    /// The record of a claim to work on (`None` when done before).
    pub fn into_record(self) -> Option<(IdempotencyRecord, bool)> {
        match self {
            Claimed::Fresh(r) => Some((r, false)),
            Claimed::Recover(r) => Some((r, true)),
            Claimed::Done | Claimed::Unsent => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn fresh_then_recover_then_done() {
        let claims = Claims {
            repo: Repo::new(Arc::new(MemoryStore::new())),
            clock: Arc::new(ManualClock::new(chrono::Utc::now())),
        };
        let Claimed::Fresh(mut first) = claims
            .claim(&OrgId::from("o"), Stream::Livechat, "e")
            .await
            .unwrap()
        else {
            panic!("a new event is fresh")
        };
        first.parts_done = 1;
        claims.progress(&mut first).await.unwrap();
        let Claimed::Recover(again) = claims
            .claim(&OrgId::from("o"), Stream::Livechat, "e")
            .await
            .unwrap()
        else {
            panic!("an unfinished claim is recovered")
        };
        assert_eq!(again.parts_done, 1);
        // The same id in the other stream is another event.
        assert!(matches!(
            claims
                .claim(&OrgId::from("o"), Stream::Instagram, "e")
                .await
                .unwrap(),
            Claimed::Fresh(_)
        ));
        // A stale copy cannot overwrite newer progress.
        let mut stale = first.clone();
        stale.version -= 1;
        assert!(matches!(
            claims.progress(&mut stale).await,
            Err(StoreError::ConditionFailed)
        ));
        claims.finish(again).await.unwrap();
        assert!(matches!(
            claims
                .claim(&OrgId::from("o"), Stream::Livechat, "e")
                .await
                .unwrap(),
            Claimed::Done
        ));
    }

    #[tokio::test]
    async fn an_unsend_before_the_delivery_is_remembered_by_the_claim() {
        let claims = Claims {
            repo: Repo::new(Arc::new(MemoryStore::new())),
            clock: Arc::new(ManualClock::new(chrono::Utc::now())),
        };
        // Not claimed yet: the delivery that comes later finds it unsent.
        claims
            .unsent(&OrgId::from("o"), Stream::Instagram, "m1")
            .await
            .unwrap();
        assert!(matches!(
            claims
                .claim(&OrgId::from("o"), Stream::Instagram, "m1")
                .await
                .unwrap(),
            Claimed::Unsent
        ));
        // Claimed by an attempt that stopped part-way: its recovery sees the unsend.
        let Claimed::Fresh(_) = claims
            .claim(&OrgId::from("o"), Stream::Instagram, "m2")
            .await
            .unwrap()
        else {
            panic!("fresh")
        };
        claims
            .unsent(&OrgId::from("o"), Stream::Instagram, "m2")
            .await
            .unwrap();
        let Claimed::Recover(r) = claims
            .claim(&OrgId::from("o"), Stream::Instagram, "m2")
            .await
            .unwrap()
        else {
            panic!("an unfinished claim is recovered")
        };
        assert!(r.unsent);
    }
}
