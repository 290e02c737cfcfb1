//! Run lifecycle events and the observers that subscribe to them: metrics,
//! the API's live stream, benchmark probes.
//!
//! The scheduler emits one event at each stage of a run's life — fired
//! (a scheduled fire acted on, before it is recorded), recorded (its row
//! committed), started (the guest about to be instantiated), ended (the
//! outcome known) — to every observer, synchronously, on the thread where
//! it happens. Observers must be quick and must not block: one that has
//! real work to do hands the event on (a channel, an atomic counter).
//! With no observer attached, an event costs one branch.
//!
//! Beside a run's life, the scheduler reports what observers count about
//! the host itself ([`HostEvent`]: refused triggers, failed store
//! operations, reloads, missed fires), on the same terms.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::record::{RunStatus, Trigger};

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A scheduled fire acted on by the overlap policy; not yet recorded.
    Fired,
    /// The run's row committed (pending, or skipped).
    Recorded,
    /// Marked running; the guest is about to be instantiated.
    Started,
    /// The guest's outcome is known. Its record is being written: it is
    /// durable once the run leaves the jobs view's `in_flight`.
    Ended,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEvent {
    pub stage: Stage,
    pub job: String,
    /// None only for `Fired`: the run has no row yet.
    pub run_id: Option<i64>,
    pub trigger: Trigger,
    pub attempt: u32,
    /// The instant the run was due (a fire's nominal time, without jitter).
    pub scheduled_for: DateTime<Utc>,
    /// When the stage was reached, by the scheduler's clock.
    pub at: DateTime<Utc>,
    /// The status the stage left the run in: `Recorded` pending or skipped,
    /// `Started` running, `Ended` how it ended.
    pub status: Option<RunStatus>,
}

/// Something the host did that is not a stage of one run's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// A trigger (API, the job world's `enqueue`, an operator's retry) was
    /// refused and nothing was recorded. `reason` is the API's error code
    /// for it (`queue_full`, `payload_too_large`, `unknown_job`, …): a
    /// small fixed set, never a job name or a payload.
    TriggerRefused { reason: &'static str },
    /// A store operation the scheduler asked for failed.
    StoreFailed,
    /// Changed files were reloaded (`failed` false), or the reload found a
    /// job whose files newly fail to load (it keeps its previous version,
    /// if any), or the reload itself failed (`failed` true).
    Reloaded { failed: bool },
    /// `count` scheduled fires of `job` were recorded `missed` (outside
    /// its catch-up policy or window), now that their record is durable.
    FiresMissed { job: String, count: u64 },
    /// A run of `job` was refused `count` distinct destinations by its
    /// `[network]` grants.
    NetworkDenied { job: String, count: u64 },
    /// On a shared store: a run of `job` this host was running lost its
    /// lease to another host, so its guest was stopped and its result
    /// discarded (the other host retries it).
    LeaseLost { job: String },
}

impl RunEvent {
    /// The `Ended` event of a run that ended with `status`.
    pub fn ended(
        job: &str,
        run_id: i64,
        trigger: Trigger,
        attempt: u32,
        scheduled_for: DateTime<Utc>,
        at: DateTime<Utc>,
        status: RunStatus,
    ) -> RunEvent {
        RunEvent {
            stage: Stage::Ended,
            job: job.to_owned(),
            run_id: Some(run_id),
            trigger,
            attempt,
            scheduled_for,
            at,
            status: Some(status),
        }
    }
}

pub trait Observer: Send + Sync {
    fn observe(&self, event: &RunEvent);

    /// What the host did besides runs; most observers ignore it.
    fn observe_host(&self, _event: &HostEvent) {}
}

/// The observers attached to a scheduler.
#[derive(Clone, Default)]
pub struct Events(Arc<Vec<Arc<dyn Observer>>>);

impl Events {
    pub fn new(observers: Vec<Arc<dyn Observer>>) -> Self {
        Events(Arc::new(observers))
    }

    /// Sends the event `make` builds to every observer; builds nothing when
    /// there are none.
    pub fn emit(&self, make: impl FnOnce() -> RunEvent) {
        if self.0.is_empty() {
            return;
        }
        let event = make();
        for observer in self.0.iter() {
            observer.observe(&event);
        }
    }

    /// Sends a host event to every observer.
    pub fn note(&self, event: HostEvent) {
        for observer in self.0.iter() {
            observer.observe_host(&event);
        }
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Events({} observers)", self.0.len())
    }
}
