//! A fire, from due timer to written record: the overlap policy decides
//! (start, skip, queue or replace), then all the fires due together are
//! written in one store round trip before any of them takes effect.

use chrono::{DateTime, Utc};

use super::Scheduler;
use crate::config::Overlap;
use crate::record::{RunStatus, Trigger};
use crate::store::{NewRun, PendingRun};

impl Scheduler {
    /// The overlap policy's answer to a fire of `job`.
    pub(super) fn decide(&mut self, job: &str, nominal: DateTime<Utc>) -> Option<Fire> {
        let slot = self.jobs.get_mut(job)?;
        let action = match (slot.busy(), slot.spec.overlap) {
            (false, _) | (true, Overlap::Allow) => Action::Start,
            (true, Overlap::Skip) => Action::Skip("the previous run was still going (overlap = \"skip\")"),
            (true, Overlap::Queue) if slot.queued.is_some() => {
                Action::Skip("a run was already queued behind the running one (overlap = \"queue\")")
            }
            (true, Overlap::Queue) => Action::Queue,
            (true, Overlap::Replace) => Action::Replace,
        };
        Some(Fire { job: job.to_owned(), nominal, action })
    }

    /// Writes the fires' rows (one store round trip), then acts on them.
    pub(super) async fn record_fires(&mut self, fires: Vec<Fire>) -> anyhow::Result<()> {
        let now = self.clock.now();
        let written = self
            .store
            .call(move |store| {
                store.transaction(|store| {
                    let mut written = Vec::with_capacity(fires.len());
                    for fire in fires {
                        let paused = store.job_state(&fire.job)?.paused;
                        store.set_last_fire(&fire.job, fire.nominal)?;
                        let run = if paused { None } else { Some(fire.write(store, now)?) };
                        written.push((fire, run));
                    }
                    Ok(written)
                })
            })
            .await?;
        let recorded = self.clock.now();
        for (fire, run) in written {
            let Some(run) = run else { continue };
            if let Some(probe) = self.probe.as_ref().filter(|_| matches!(fire.action, Action::Start)) {
                probe.note(super::probe::Stage::Recorded, fire.nominal, recorded);
            }
            let Some(slot) = self.jobs.get_mut(&fire.job) else { continue };
            match fire.action {
                Action::Skip(reason) => tracing::info!(job = %fire.job, run_id = run.id, reason, "fire skipped"),
                Action::Queue => slot.queued = Some(run),
                Action::Replace => {
                    for (run_id, control) in &slot.active {
                        tracing::info!(job = %fire.job, run_id, "cancelling the running run (overlap = \"replace\")");
                        control.cancel();
                    }
                    self.make_ready(run);
                }
                Action::Start => self.make_ready(run),
            }
        }
        Ok(())
    }
}

pub(super) enum Action {
    Start,
    Skip(&'static str),
    Queue,
    Replace,
}

/// One fire and what the overlap policy made of it.
pub(super) struct Fire {
    job: String,
    nominal: DateTime<Utc>,
    action: Action,
}

impl Fire {
    fn write(&self, store: &crate::store::Store, now: DateTime<Utc>) -> crate::store::Result<PendingRun> {
        let (status, ended_at, error) = match self.action {
            Action::Skip(reason) => (RunStatus::Skipped, Some(now), Some(reason.to_owned())),
            _ => (RunStatus::Pending, None, None),
        };
        let run = NewRun { ended_at, error, ..NewRun::new(&self.job, status, Trigger::Schedule, self.nominal) };
        let id = store.insert_run(&run)?;
        Ok(PendingRun {
            id,
            job: self.job.clone(),
            trigger: Trigger::Schedule,
            attempt: 1,
            scheduled_for: self.nominal,
            payload: Vec::new(),
        })
    }
}
