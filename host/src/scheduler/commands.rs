//! The scheduler's side of its `Handle`: triggers, cancels, retries,
//! pauses and the job world's `enqueue`, each answered once what it
//! changed is durable.

use super::handle::{Command, CommandError, Reply, TriggerRequest, Triggered};
use super::{Scheduler, TimerKind};
use crate::record::{RunStatus, Trigger};
use crate::store::{Cancelled, NewRun, StoreError};

impl Scheduler {
    pub(super) async fn on_command(&mut self, command: Command) {
        match command {
            Command::Trigger(request, reply) => {
                let answer = self.trigger(request, None).await;
                let _ = reply.send(answer);
            }
            Command::Enqueue { parent_run, job, payload, delay, reply } => {
                let at = self.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
                let request = TriggerRequest { job, payload, at: Some(at), key: None };
                let answer = self.trigger(request, Some(parent_run)).await.map(|t| t.run_id);
                if let Ok(id) = answer {
                    tracing::info!(run_id = id, parent_run, "run enqueued by another run");
                }
                let _ = reply.send(answer);
            }
            Command::Cancel(id, reply) => {
                let answer = self.cancel(id).await;
                let _ = reply.send(answer);
            }
            Command::Retry(id, reply) => self.retry(id, reply).await,
            Command::Pause { job, paused, reply } => {
                let answer = self.pause(job, paused).await;
                let _ = reply.send(answer);
            }
        }
    }

    async fn trigger(&mut self, request: TriggerRequest, parent_run: Option<i64>) -> Result<Triggered, CommandError> {
        let Some(slot) = self.jobs.get(&request.job) else {
            return Err(CommandError::UnknownJob(request.job));
        };
        let limit = slot.spec.limits.payload;
        if request.payload.len() as u64 > limit {
            return Err(CommandError::PayloadTooLarge { job: request.job, size: request.payload.len(), limit });
        }
        if self.triggered_waiting >= self.config.max_queued {
            return Err(CommandError::QueueFull { queued: self.triggered_waiting });
        }
        let now = self.clock.now();
        let at = request.at.unwrap_or(now).max(now);
        let run = NewRun {
            payload: request.payload,
            parent_run,
            idempotency_key: request.key,
            ..NewRun::pending(request.job, Trigger::Manual, at)
        };
        let (id, created) = self.store.trigger_run(run.clone(), now).await.map_err(store_error)?;
        if created {
            self.triggered_waiting += 1;
            tracing::info!(job = %run.job, run_id = id, "run triggered");
            self.ready_or_timed(run.into_pending(id), now);
        }
        Ok(Triggered { run_id: id, created })
    }

    async fn cancel(&mut self, id: i64) -> Result<(), CommandError> {
        if let Some(running) = self.in_flight.get(&id) {
            tracing::info!(job = %running.job, run_id = id, "cancelling the run, as asked");
            running.control.cancel();
            return Ok(());
        }
        match self.store.cancel_pending(id, self.clock.now()).await.map_err(store_error)? {
            Cancelled::WasPending => {
                self.forget_waiting(id);
                tracing::info!(run_id = id, "cancelled before it started, as asked");
                Ok(())
            }
            Cancelled::Not(status) => Err(CommandError::RunEnded { id, status }),
            Cancelled::NoSuchRun => Err(CommandError::NoSuchRun(id)),
        }
    }

    /// Drops a cancelled run from wherever it waits: the ready queue, a
    /// timer, or a job's `overlap = "queue"` slot.
    fn forget_waiting(&mut self, id: i64) {
        let mut forgotten = None;
        if let Some(index) = self.ready.iter().position(|run| run.id == id) {
            let run = self.ready.remove(index).expect("found");
            if let Some(slot) = self.jobs.get_mut(&run.job) {
                slot.waiting = slot.waiting.saturating_sub(1);
            }
            forgotten = Some(run);
        }
        if forgotten.is_none() {
            let timers = std::mem::take(&mut self.timers).into_vec();
            let (gone, kept): (Vec<_>, Vec<_>) =
                timers.into_iter().partition(|timer| matches!(&timer.kind, TimerKind::Start(run) if run.id == id));
            self.timers = kept.into();
            forgotten = gone.into_iter().find_map(|timer| match timer.kind {
                TimerKind::Start(run) => Some(run),
                _ => None,
            });
        }
        if forgotten.is_none() {
            forgotten = self.jobs.values_mut().find_map(|slot| slot.queued.take_if(|run| run.id == id));
        }
        if let Some(run) = forgotten {
            self.left_waiting(&run);
        }
    }

    async fn retry(&mut self, id: i64, reply: Reply<i64>) {
        let answer = async {
            let run = self.store.run(id).await.map_err(store_error)?.ok_or(CommandError::NoSuchRun(id))?;
            if matches!(run.status, RunStatus::Pending | RunStatus::Running) {
                return Err(CommandError::RunNotEnded { id, status: run.status });
            }
            let payload = self.store.run_payload(id).await.map_err(store_error)?;
            let request = TriggerRequest { job: run.job, payload, at: None, key: None };
            self.trigger(request, Some(id)).await.map(|t| t.run_id)
        }
        .await;
        let _ = reply.send(answer);
    }

    async fn pause(&mut self, job: String, paused: bool) -> Result<(), CommandError> {
        if !self.jobs.contains_key(&job) {
            return Err(CommandError::UnknownJob(job));
        }
        self.store.set_paused(job.clone(), paused).await.map_err(store_error)?;
        if let Some(slot) = self.jobs.get_mut(&job) {
            slot.paused = paused;
        }
        self.view_changed = true;
        tracing::info!(job = %job, paused, "job paused or resumed, as asked");
        Ok(())
    }
}

fn store_error(error: StoreError) -> CommandError {
    CommandError::Store(error.to_string())
}
