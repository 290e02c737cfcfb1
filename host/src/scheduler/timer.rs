//! The scheduler's timers: a min-heap entry per fire, delayed run, store
//! retry and pruning round, ordered by due time and then by insertion.

use chrono::{DateTime, Utc};

use crate::store::PendingRun;

pub(super) enum TimerKind {
    /// The job's fire due at the given nominal instant.
    Fire {
        job: String,
        nominal: DateTime<Utc>,
        generation: u64,
    },
    /// A pending run (a delayed retry or trigger) whose time has come.
    Start(PendingRun),
    /// Time to try the writes the store refused again (see `backlog`).
    StoreRetry,
    /// Time to publish a change of the jobs view (see `view`).
    View,
    Prune,
    /// A cluster tick: heartbeat, rescue, claim (see `cluster`).
    Poll,
    /// A claim held back to space claims out may go now (see `cluster`).
    Claim,
}

/// A heap entry, ordered so the earliest (then the first added) pops first.
pub(super) struct Timer {
    pub at: DateTime<Utc>,
    pub seq: u64,
    pub kind: TimerKind,
}

impl Ord for Timer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Timer {}
