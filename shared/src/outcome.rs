//! What became of a job: the failure a step reports ([`Fail`]), the outcome a worker acts on
//! ([`Outcome`]) and which delivery it was ([`Attempt`]). Shared by the services that handle jobs
//! and the worker that runs them, below both.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::cipher::CipherError;
use crate::jobs::Blocked;
use crate::livechat::LivechatError;
use crate::retry::{MAX_RECEIVES, RETRY_FOR};
use crate::store::StoreError;

/// What became of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its effect happened.
    Done,
    /// Nothing to do (duplicate, own echo, unknown account); the reason is logged.
    Skipped(&'static str),
    /// A transient failure: retry after the delay (or the policy's, if none).
    Retry {
        /// Log-safe reason.
        reason: String,
        /// Explicit delay, e.g. a short wait for an echo race.
        after: Option<Duration>,
    },
    /// A permanent failure: park in the dead-letter queue with the reason, for a human.
    Park(String),
    /// Cannot go through until the installation is repaired: parked, and replayed by the repair.
    Blocked(Blocked),
}

/// Which delivery of a job this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Receives so far, this one included.
    pub number: u32,
    /// How long since the platform handed the event over (the envelope's `received_at`).
    pub held_for: chrono::Duration,
    /// No retry follows: a transient failure now parks the job.
    pub last: bool,
}

impl Attempt {
    /// The attempt for a job received `number` times, first handed over at `received_at`.
    pub fn of(number: u32, received_at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        let held_for = (now - received_at).max(chrono::Duration::zero());
        Self {
            number,
            held_for,
            last: number >= MAX_RECEIVES || held_for >= RETRY_FOR,
        }
    }

    /// A first delivery, just received (tests and direct calls).
    pub fn first() -> Self {
        Self {
            number: 1,
            held_for: chrono::Duration::zero(),
            last: false,
        }
    }
}

/// Why a job did not complete.
#[derive(Debug)]
pub(crate) enum Fail {
    /// Try again later.
    Retry(String),
    /// Park for a human.
    Park(String),
    /// Park until the installation is repaired; the repair replays it.
    Blocked(Blocked),
    /// Kept typed so callers can react to specific LiveChat errors.
    Livechat(LivechatError),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        // A lost race (a conditional write another worker beat) is retried from a fresh read.
        if e.is_transient() || matches!(e, StoreError::ConditionFailed) {
            Fail::Retry(e.to_string())
        } else {
            Fail::Park(e.to_string())
        }
    }
}

impl From<LivechatError> for Fail {
    fn from(e: LivechatError) -> Self {
        Fail::Livechat(e)
    }
}

impl From<CipherError> for Fail {
    fn from(e: CipherError) -> Self {
        Fail::Park(e.to_string())
    }
}

impl Fail {
    /// The queue outcome.
    pub(crate) fn outcome(self) -> Outcome {
        match self {
            Fail::Retry(reason) => Outcome::Retry {
                reason,
                after: None,
            },
            Fail::Park(reason) => Outcome::Park(reason),
            Fail::Blocked(cause) => Outcome::Blocked(cause),
            Fail::Livechat(e) if e.is_transient() => Outcome::Retry {
                reason: e.to_string(),
                after: None,
            },
            Fail::Livechat(e) => Outcome::Park(e.to_string()),
        }
    }
}
