//! Exactly-once bookkeeping, one claim per platform event, for both workers. A claim is written
//! before the first effect and completed after the last; a claim found in progress means an
//! earlier attempt stopped part-way, so the caller recovers (looks at what already happened)
//! instead of repeating blindly.

use std::sync::Arc;

use crate::clock::Clock;
use crate::domain::{IDEMPOTENCY_TTL_SECS, IdempotencyRecord, IdempotencyState};
use crate::store::{Repo, StoreError};

/// Which platform's event ids a claim is for (ids are unique only within one stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Instagram webhook events (`{ig account}:{event id}`).
    Instagram,
    /// LiveChat events (`{chat}:{event id}` or the webhook's event id).
    Livechat,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Instagram => "instagram",
            Scope::Livechat => "livechat",
        }
    }
}

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
}

/// Claims over the table.
#[derive(Clone)]
pub(crate) struct Claims {
    pub repo: Repo,
    pub clock: Arc<dyn Clock>,
}

impl Claims {
    /// Claims `event_id` of `scope` for `org`.
    pub async fn claim(
        &self,
        org: &str,
        scope: Scope,
        event_id: &str,
    ) -> Result<Claimed, StoreError> {
        let now = self.clock.now();
        let mut record = IdempotencyRecord {
            organization_id: org.to_string(),
            scope: scope.as_str().to_string(),
            event_id: event_id.to_string(),
            state: IdempotencyState::InProgress,
            claimed_at: now,
            completed_at: None,
            parts_done: 0,
            delay_told: false,
            expires_at: now.timestamp() + IDEMPOTENCY_TTL_SECS,
            version: 0,
        };
        match self.repo.create(&mut record).await {
            Ok(()) => return Ok(Claimed::Fresh(record)),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e),
        }
        let key = IdempotencyRecord::key_for(org, scope.as_str(), event_id);
        match self.repo.get::<IdempotencyRecord>(&key).await? {
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
            Claimed::Done => None,
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
        let Claimed::Fresh(mut first) = claims.claim("o", Scope::Livechat, "e").await.unwrap()
        else {
            panic!("a new event is fresh")
        };
        first.parts_done = 1;
        claims.progress(&mut first).await.unwrap();
        let Claimed::Recover(again) = claims.claim("o", Scope::Livechat, "e").await.unwrap() else {
            panic!("an unfinished claim is recovered")
        };
        assert_eq!(again.parts_done, 1);
        // The same id in the other stream is another event.
        assert!(matches!(
            claims.claim("o", Scope::Instagram, "e").await.unwrap(),
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
            claims.claim("o", Scope::Livechat, "e").await.unwrap(),
            Claimed::Done
        ));
    }
}
