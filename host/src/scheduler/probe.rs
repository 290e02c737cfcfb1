//! Timing of fires, for benchmarks and diagnostics: for each scheduled fire,
//! how long after its due time the scheduler acted on it (`fired`), had its
//! row committed (`recorded`) and started its guest (`started`).
//!
//! Due time is the fire's nominal instant, so a declared `jitter` counts
//! as lateness. Off unless a probe is attached (`Scheduler::with_probe`);
//! then each stage costs one clock read and a push under an uncontended
//! lock.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Default)]
pub struct FireProbe {
    samples: Mutex<Samples>,
}

/// Lateness samples by stage, in the order they were taken.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    /// Due time to the overlap policy's decision: the scheduler's own delay.
    pub fired: Vec<Duration>,
    /// Due time to the run's row committed as pending.
    pub recorded: Vec<Duration>,
    /// Due time to the guest's instantiation starting.
    pub started: Vec<Duration>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Stage {
    Fired,
    Recorded,
    Started,
}

impl FireProbe {
    /// Notes that a fire due at `due` reached `stage` now.
    pub(super) fn note(&self, stage: Stage, due: DateTime<Utc>, now: DateTime<Utc>) {
        let late = (now - due).to_std().unwrap_or_default();
        let mut samples = self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match stage {
            Stage::Fired => samples.fired.push(late),
            Stage::Recorded => samples.recorded.push(late),
            Stage::Started => samples.started.push(late),
        }
    }

    /// Takes the samples so far, leaving the probe empty.
    pub fn take(&self) -> Samples {
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}
