//! Runs from ready to ended: the FIFO of runs ready to start, dispatch
//! under `max_running` into the run registry, what a completion changes
//! (retries, the `queue` overlap slot), and the drain at shutdown.

use chrono::{DateTime, Utc};

use super::task::{self, Completion};
use super::timer::TimerKind;
use super::view::LastRun;
use super::{InFlight, Scheduler, retry_allowed, retry_delay};
use crate::record::Trigger;
use crate::runtime::{RunControl, RunOutcome};
use crate::store::{Finished, NewRun, PendingRun};

/// A run that ended, as its retry needs it.
struct EndedRun<'a> {
    job: &'a str,
    run_id: i64,
    attempt: u32,
    at: DateTime<Utc>,
    payload: Vec<u8>,
}

impl Scheduler {
    /// Makes a run ready to start, or times it if it is due later.
    pub(super) fn ready_or_timed(&mut self, run: PendingRun, now: DateTime<Utc>) {
        if run.scheduled_for <= now {
            self.make_ready(run);
        } else {
            self.add_timer(run.scheduled_for, TimerKind::Start(run));
        }
    }

    pub(super) fn make_ready(&mut self, run: PendingRun) {
        if self.member.is_some() {
            // It waits in the shared store; whichever host claims it first runs it.
            return self.want_claim();
        }
        if let Some(slot) = self.jobs.get_mut(&run.job) {
            slot.waiting += 1;
            self.view_changed = true;
            self.ready.push_back(run);
        } else {
            tracing::warn!(job = %run.job, run_id = run.id, "pending run of a job that is not loaded; it stays pending");
            self.left_waiting(&run);
        }
    }

    /// Claims at the loop's next turn (on a shared store): a run may be due.
    pub(super) fn want_claim(&mut self) {
        if let Some(member) = &mut self.member {
            member.wanted = true;
        }
    }

    /// Counts a run out of the triggered runs waiting.
    pub(super) fn left_waiting(&mut self, run: &PendingRun) {
        if run.trigger == Trigger::Manual {
            self.triggered_waiting = self.triggered_waiting.saturating_sub(1);
            self.view_changed = true;
        }
    }

    /// Starts ready runs while there is room under `max_running` (and the
    /// host can still hold outcomes the store does not take).
    pub(super) fn dispatch(&mut self) {
        while self.in_flight.len() < self.config.max_running && self.backlog.may_start_runs() {
            let Some(run) = self.ready.pop_front() else { return };
            self.left_waiting(&run);
            let Some(slot) = self.jobs.get_mut(&run.job) else { continue };
            // Saturating: a job removed and declared again gets a fresh slot,
            // while runs queued for its old one may still be in line.
            slot.waiting = slot.waiting.saturating_sub(1);
            slot.active += 1;
            let control = RunControl::new(slot.spec.limits.timeout);
            self.in_flight.insert(run.id, InFlight { job: run.job.clone(), control: control.clone() });
            self.view_changed = true;
            let task = task::RunTask {
                runtime: self.runtime.clone(),
                store: self.store.clone(),
                clock: self.clock.clone(),
                spec: slot.spec.clone(),
                compiled: slot.compiled.clone(),
                run,
                control,
                job_host: self.job_host.clone(),
                events: self.events.clone(),
                lease: self
                    .member
                    .as_ref()
                    .map(|member| task::Lease { cluster: member.cluster.clone(), lease: member.lease }),
            };
            tokio::spawn(task.run(self.completed.clone()));
        }
    }

    pub(super) async fn on_completion(&mut self, done: Completion) {
        let Completion { job, run_id, attempt, ended_at, payload, ended } = done;
        self.in_flight.remove(&run_id);
        self.view_changed = true;
        self.after_run();
        if let Some(slot) = self.jobs.get_mut(&job) {
            slot.active = slot.active.saturating_sub(1);
        }
        let outcome = match ended {
            task::Ended::NotStarted(run, error) => {
                // Its row is still pending: it runs once the store takes writes.
                self.store_failed(&error, self.clock.now());
                self.backlog.hold_unstarted(run);
                self.arm_store_retry();
                return;
            }
            task::Ended::Superseded => {
                // Another host has the run now; its own host retries it.
                self.want_claim();
                return;
            }
            task::Ended::Ran { outcome, unrecorded } => {
                let last = LastRun { id: run_id, status: outcome.status(), ended_at: Some(ended_at) };
                self.last_runs.insert(job.clone(), last);
                if let Some((finished, error)) = unrecorded {
                    self.store_failed(&error, self.clock.now());
                    self.backlog.hold_outcome(run_id, finished);
                    self.arm_store_retry();
                }
                (outcome, None)
            }
            task::Ended::Retryable { outcome, finished } => {
                let last = LastRun { id: run_id, status: outcome.status(), ended_at: Some(ended_at) };
                self.last_runs.insert(job.clone(), last);
                (outcome, Some(finished))
            }
        };
        let (outcome, unwritten) = outcome;
        let ended = EndedRun { job: &job, run_id, attempt, at: ended_at, payload };
        self.maybe_retry(ended, &outcome, unwritten).await;
        if let Some(slot) = self.jobs.get_mut(&job)
            && slot.active == 0
            && let Some(queued) = slot.queued.take()
        {
            self.make_ready(queued);
        }
    }

    /// Records and times the next attempt of a run that failed, per
    /// `[retry]`. `unwritten` is the run's outcome if its task left it to
    /// be written here, in one transaction with the retry.
    async fn maybe_retry(&mut self, done: EndedRun<'_>, outcome: &RunOutcome, unwritten: Option<Finished>) {
        let retry = self.plan_retry(&done, outcome);
        let row = retry.as_ref().map(|(row, ..)| row.clone());
        let written = match unwritten {
            Some(finished) => self
                .store
                .finish_run_and_retry(done.run_id, finished.clone(), row)
                .await
                .map_err(|e| (e, Some(finished))),
            None if row.is_some() => self
                .store
                .insert_runs(row.into_iter().collect())
                .await
                .map(|ids| ids.first().copied())
                .map_err(|e| (e, None)),
            None => return,
        };
        match (written, retry) {
            (Ok(Some(id)), Some((retry, retry_at, delay))) => {
                let pending = retry.into_pending(id);
                tracing::info!(job = %done.job, run_id = pending.id, attempt = pending.attempt, delay_ms = delay.as_millis() as u64, "retry scheduled");
                self.add_timer(retry_at, TimerKind::Start(pending));
            }
            (Ok(_), _) => {}
            (Err((error, finished)), retry) => {
                self.store_failed(&error, self.clock.now());
                if let Some(finished) = finished {
                    self.backlog.hold_outcome(done.run_id, finished);
                }
                if let Some((retry, ..)) = retry {
                    self.backlog.hold_row(retry);
                }
                self.arm_store_retry();
            }
        }
    }

    /// The retry a failed run calls for, if `[retry]` allows one: its row,
    /// when it is due, and the delay.
    fn plan_retry(
        &mut self,
        done: &EndedRun<'_>,
        outcome: &RunOutcome,
    ) -> Option<(NewRun, DateTime<Utc>, std::time::Duration)> {
        let slot = self.jobs.get(done.job)?;
        if !super::policy::retryable(outcome) || done.attempt >= slot.spec.retry.attempts {
            return None;
        }
        let delay = retry_delay(&slot.spec.retry, done.attempt, self.random.unit());
        let retry_at = done.at + chrono::Duration::from_std(delay).unwrap_or_default();
        if !retry_allowed(retry_at, slot.next_fire) {
            tracing::info!(job = %done.job, run_id = done.run_id, "no retry: the next scheduled fire comes first");
            return None;
        }
        let retry = NewRun {
            attempt: done.attempt + 1,
            payload: done.payload.clone(),
            ..NewRun::pending(done.job, Trigger::Retry, retry_at)
        };
        Some((retry, retry_at, delay))
    }

    /// After shutdown: wait up to the grace period, then cancel what runs;
    /// meanwhile, try once more to write what the store has not taken.
    pub(super) async fn drain(mut self) {
        // Not ready from now; and each run that ends is shown at once (the
        // view's timer is no longer served, and the runs left are few).
        self.draining = true;
        self.publish_view_now();
        if !self.in_flight.is_empty() {
            let (running, grace_ms) = (self.in_flight.len(), self.config.grace.as_millis() as u64);
            tracing::info!(running, grace_ms, "waiting for running guests");
        }
        let grace = tokio::time::sleep(self.config.grace);
        tokio::pin!(grace);
        // Commands meanwhile are refused: a guest enqueueing a run must not
        // wait out the grace period for an answer. Triggers already being
        // written are answered: their runs wait in the store for the next start.
        // Once the grace period is over, what still runs is cancelled.
        let mut grace_over = false;
        while !self.in_flight.is_empty() || self.accepting > 0 {
            tokio::select! {
                () = super::watchdog::beat(&mut self.heartbeat) => {}
                Some(done) = self.completions.recv() => {
                    self.on_completion(done).await;
                    self.publish_view_now();
                }
                Some(command) = self.commands.recv() => self.refuse(command),
                Some(accepted) = self.accepted.recv() => self.on_accepted(accepted, false),
                () = &mut grace, if !grace_over => {
                    grace_over = true;
                    if !self.in_flight.is_empty() {
                        tracing::warn!(running = self.in_flight.len(), "grace period over: cancelling running guests");
                        self.in_flight.values().for_each(|run| run.control.cancel());
                    }
                }
            }
        }
        self.retry_store().await;
        self.backlog.report_loss();
        self.leave().await;
    }
}
