//! The suite's observers of a host's run events (`wasmcron::events`): a
//! lateness probe timing each scheduled fire's stages, and a count of
//! ended runs that tells the throughput section when its queue is done.
//!
//! The scheduler calls them on its own threads, synchronously, so each
//! does next to nothing there: a push under an uncontended lock, an atomic
//! add.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use wasmcron::events::{Observer, RunEvent, Stage};
use wasmcron::record::Trigger;

/// How late each scheduled fire reached each stage, as the scheduler's
/// clock saw it. Due time is the fire's nominal instant, so a declared
/// `jitter` would count as lateness.
#[derive(Debug, Default)]
pub struct Lateness {
    samples: Mutex<Samples>,
}

/// Lateness samples by stage, in the order they were taken.
#[derive(Debug, Default)]
pub struct Samples {
    /// Due time to the overlap policy's decision: the scheduler's own delay.
    pub fired: Vec<Duration>,
    /// Due time to the run's row committed as pending.
    pub recorded: Vec<Duration>,
    /// Due time to the guest's instantiation starting.
    pub started: Vec<Duration>,
}

impl Observer for Lateness {
    fn observe(&self, event: &RunEvent) {
        if event.trigger != Trigger::Schedule {
            return;
        }
        let late = (event.at - event.scheduled_for).to_std().unwrap_or_default();
        let mut samples = self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match event.stage {
            Stage::Fired => samples.fired.push(late),
            Stage::Recorded => samples.recorded.push(late),
            Stage::Started => samples.started.push(late),
            Stage::Ended => {}
        }
    }
}

impl Lateness {
    /// Takes the samples so far, leaving the probe empty.
    pub fn take(&self) -> Samples {
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

/// Counts runs as they end, and wakes [`Ended::all`] at the `expected`th.
#[derive(Debug)]
pub struct Ended {
    count: AtomicUsize,
    expected: usize,
    reached: Notify,
}

impl Ended {
    pub fn expecting(expected: usize) -> Self {
        Ended { count: AtomicUsize::new(0), expected, reached: Notify::new() }
    }

    /// Resolves once `expected` runs have ended. (The `Ended` event comes
    /// before the outcome is written; a scheduler told to stop then still
    /// waits for its runs in flight, writes included, before it returns.)
    pub async fn all(&self) {
        if self.count.load(Ordering::Acquire) < self.expected {
            // `notify_one` keeps a permit if it comes first: no wake-up is lost.
            self.reached.notified().await;
        }
    }
}

impl Observer for Ended {
    fn observe(&self, event: &RunEvent) {
        if event.stage == Stage::Ended && self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.expected {
            self.reached.notify_one();
        }
    }
}
