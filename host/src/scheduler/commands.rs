//! The scheduler's side of its `Handle`: triggers, cancels, retries,
//! pauses and the job world's `enqueue`, each answered once what it
//! changed is durable.

use chrono::{DateTime, Utc};

use super::handle::{Command, CommandError, Reply, TriggerRequest, Triggered};
use super::{Scheduler, TimerKind};
use crate::events::{HostEvent, RunEvent, Stage};
use crate::record::{RunStatus, Trigger};
use crate::store::{Cancelled, NewRun, PendingRun, StoreError};

/// A trigger whose row is being written; answered once the write is
/// durable (or failed). Triggers are written concurrently, so that many
/// share one commit, and answered in the order their writes finish.
pub(super) struct Accepting {
    run: NewRun,
    requested_at: DateTime<Utc>,
    written: Result<(i64, bool), StoreError>,
    reply: Answer,
}

/// Who waits for a trigger, and what they are told.
pub(super) enum Answer {
    Trigger(Reply<Triggered>),
    Enqueue { parent_run: i64, reply: Reply<i64> },
    Retry(Reply<i64>),
}

impl Answer {
    fn send(self, answer: Result<Triggered, CommandError>) {
        match self {
            Answer::Trigger(reply) => {
                let _ = reply.send(answer);
            }
            Answer::Enqueue { parent_run, reply } => {
                if let Ok(triggered) = &answer {
                    tracing::info!(run_id = triggered.run_id, parent_run, "run enqueued by another run");
                }
                let _ = reply.send(answer.map(|t| t.run_id));
            }
            Answer::Retry(reply) => {
                let _ = reply.send(answer.map(|t| t.run_id));
            }
        }
    }
}

impl Scheduler {
    pub(super) async fn on_command(&mut self, command: Command) {
        match command {
            Command::Trigger(request, reply) => self.trigger(request, None, Answer::Trigger(reply)),
            Command::Enqueue { parent_run, job, payload, delay, reply } => {
                let at = self.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
                let request = TriggerRequest { job, payload, at: Some(at), key: None };
                self.trigger(request, Some(parent_run), Answer::Enqueue { parent_run, reply });
            }
            Command::Cancel(id, reply) => {
                let answer = self.cancel(id).await;
                let _ = reply.send(answer);
            }
            Command::Retry(id, reply) => self.retry(id, reply).await,
            Command::Pause { job, paused, reason, reply } => {
                let answer = self.pause(job, paused, reason).await;
                let _ = reply.send(answer);
            }
        }
    }

    /// Checks a trigger and sets its row writing; `on_accepted` answers it.
    /// The run counts against `max_queued` from now, so that triggers in
    /// flight cannot overshoot it.
    fn trigger(&mut self, request: TriggerRequest, parent_run: Option<i64>, reply: Answer) {
        let Some(slot) = self.jobs.get(&request.job) else {
            return self.refuse_trigger(reply, CommandError::UnknownJob(request.job));
        };
        let limit = slot.spec.limits.payload;
        if request.payload.len() as u64 > limit {
            let size = request.payload.len();
            return self.refuse_trigger(reply, CommandError::PayloadTooLarge { job: request.job, size, limit });
        }
        if self.triggered_waiting >= self.config.max_queued {
            let full = CommandError::QueueFull { queued: self.triggered_waiting };
            if request.key.is_some() {
                // The API may yet answer it with the run its key made:
                // it counts the refusal if not.
                reply.send(Err(full));
                return;
            }
            return self.refuse_trigger(reply, full);
        }
        self.triggered_waiting += 1;
        self.view_changed = true;
        self.accepting += 1;
        let now = self.clock.now();
        let at = request.at.unwrap_or(now).max(now);
        let run = NewRun {
            payload: request.payload,
            parent_run,
            idempotency_key: request.key,
            ..NewRun::pending(request.job, Trigger::Manual, at)
        };
        let (store, accepted) = (self.store.clone(), self.accept.clone());
        tokio::spawn(async move {
            let written = store.trigger_run(run.clone(), now).await;
            let _ = accepted.send(Accepting { run, requested_at: now, written, reply });
        });
    }

    /// Answers a trigger with why it was refused, and tells observers.
    fn refuse_trigger(&self, reply: Answer, error: CommandError) {
        self.events.note(HostEvent::TriggerRefused { reason: error.code() });
        reply.send(Err(error));
    }

    /// A store failure that a command is answered with, counted by observers.
    fn store_refused(&self, error: StoreError) -> CommandError {
        self.events.note(HostEvent::StoreFailed);
        CommandError::Store(error.to_string())
    }

    /// Refuses a command as a draining scheduler does (`ShuttingDown`);
    /// a trigger among them is counted as refused.
    pub(super) fn refuse(&self, command: Command) {
        if command.is_trigger() {
            self.events.note(HostEvent::TriggerRefused { reason: CommandError::ShuttingDown.code() });
        }
        command.refuse();
    }

    /// A trigger's row is written (or not): the run joins the ready queue
    /// or the timers — unless the host is draining (`start` false): then it
    /// waits in the store for the next start — and the caller is answered.
    pub(super) fn on_accepted(&mut self, accepting: Accepting, start: bool) {
        let Accepting { run, requested_at, written, reply } = accepting;
        self.accepting -= 1;
        self.view_changed = true; // the queue's depth
        let answer = match written {
            Ok((id, true)) => {
                tracing::info!(job = %run.job, run_id = id, "run triggered");
                let recorded_at = self.clock.now();
                self.events.emit(|| RunEvent {
                    stage: Stage::Recorded,
                    job: run.job.clone(),
                    run_id: Some(id),
                    trigger: Trigger::Manual,
                    attempt: 1,
                    scheduled_for: run.scheduled_for,
                    at: recorded_at,
                    status: Some(RunStatus::Pending),
                });
                if start {
                    self.ready_or_timed(run.into_pending(id), requested_at);
                }
                Ok(Triggered { run_id: id, created: true })
            }
            Ok((id, false)) => {
                self.triggered_waiting -= 1;
                Ok(Triggered { run_id: id, created: false })
            }
            Err(error) => {
                self.triggered_waiting -= 1;
                let error = self.store_refused(error);
                return self.refuse_trigger(reply, error);
            }
        };
        reply.send(answer);
    }

    async fn cancel(&mut self, id: i64) -> Result<(), CommandError> {
        if let Some(running) = self.in_flight.get(&id) {
            tracing::info!(job = %running.job, run_id = id, "cancelling the run, as asked");
            running.control.cancel();
            return Ok(());
        }
        let cancelled = self.store.cancel_pending(id, self.clock.now()).await;
        match cancelled.map_err(|error| self.store_refused(error))? {
            Cancelled::WasPending => {
                if let Some(run) = self.forget_waiting(id) {
                    self.emit_not_run(&run, RunStatus::Cancelled);
                }
                tracing::info!(run_id = id, "cancelled before it started, as asked");
                Ok(())
            }
            Cancelled::Not(status) => Err(CommandError::RunEnded { id, status }),
            Cancelled::NoSuchRun => Err(CommandError::NoSuchRun(id)),
        }
    }

    /// Drops a cancelled run from wherever it waits: the ready queue, a
    /// timer, or a job's `overlap = "queue"` slot; the run, if found.
    fn forget_waiting(&mut self, id: i64) -> Option<PendingRun> {
        self.view_changed = true; // its job's `queued`
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
        if let Some(run) = &forgotten {
            self.left_waiting(run);
        }
        forgotten
    }

    /// The `Ended` event of a run that ended without starting.
    pub(super) fn emit_not_run(&self, run: &PendingRun, status: RunStatus) {
        let now = self.clock.now();
        self.events
            .emit(|| RunEvent::ended(&run.job, run.id, run.trigger, run.attempt, run.scheduled_for, now, status));
    }

    async fn retry(&mut self, id: i64, reply: Reply<i64>) {
        let answer = async {
            let run = self.store.run(id).await.map_err(|error| self.store_refused(error))?;
            let run = run.ok_or(CommandError::NoSuchRun(id))?;
            if matches!(run.status, RunStatus::Pending | RunStatus::Running) {
                return Err(CommandError::RunNotEnded { id, status: run.status });
            }
            let payload = self.store.run_payload(id).await.map_err(|error| self.store_refused(error))?;
            Ok(TriggerRequest { job: run.job, payload, at: None, key: None })
        }
        .await;
        match answer {
            Ok(request) => self.trigger(request, Some(id), Answer::Retry(reply)),
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    async fn pause(&mut self, job: String, paused: bool, reason: Option<String>) -> Result<(), CommandError> {
        if !self.jobs.contains_key(&job) {
            return Err(CommandError::UnknownJob(job));
        }
        let reason = reason.filter(|_| paused);
        let set = self.store.set_paused(job.clone(), paused, reason.clone()).await;
        set.map_err(|error| self.store_refused(error))?;
        if let Some(slot) = self.jobs.get_mut(&job) {
            slot.paused = paused;
            slot.paused_reason = reason.clone();
        }
        // Shown before the answer: whoever paused it reads it back paused.
        self.publish_view_now();
        tracing::info!(job = %job, paused, reason = reason.as_deref().unwrap_or(""), "job paused or resumed, as asked");
        Ok(())
    }
}
