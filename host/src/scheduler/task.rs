//! One run as a task of its own: mark it `running`, run the guest, write
//! how it ended, log it, and tell the scheduler — with what the store did
//! not take, for the scheduler to hold and write later.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::config::JobSpec;
use crate::events::{Events, HostEvent, RunEvent, Stage};
use crate::record::RunStatus;
use crate::runtime::{CompiledJob, JobHost, RunContext, RunControl, RunOutcome, RunReport, Runtime};
use crate::store::{Cluster, Finished, PendingRun, Store, StoreError};

/// What the scheduler learns when a run task ends.
#[derive(Debug)]
pub(super) struct Completion {
    pub job: String,
    pub run_id: i64,
    pub attempt: u32,
    pub ended_at: DateTime<Utc>,
    /// Handed on to a retry.
    pub payload: Vec<u8>,
    pub ended: Ended,
}

#[derive(Debug)]
pub(super) enum Ended {
    /// The guest ran; `unrecorded` is its outcome if the store did not take it.
    Ran { outcome: RunOutcome, unrecorded: Option<(Finished, StoreError)> },
    /// The guest failed with attempts left: its outcome is not written yet,
    /// but by the scheduler together with the retry (`maybe_retry`), so no
    /// kill between the two loses the retry. Until then the row is
    /// `running`, and a host that dies is found to have abandoned it.
    Retryable { outcome: RunOutcome, finished: Finished },
    /// The run could not be marked `running`, so its guest was not started.
    NotStarted(PendingRun, StoreError),
    /// On a shared store: the lease lapsed and another host took the run
    /// over, so the guest was stopped and its result discarded.
    Superseded,
}

/// A claimed run's lease, kept alive by its task (on a shared store).
pub(super) struct Lease {
    pub cluster: Arc<dyn Cluster>,
    pub lease: Duration,
}

impl Lease {
    /// Renews at a third of the lease until it cannot: resolves once the
    /// run is another host's (`Superseded`), or once a lease's time has
    /// passed since the last renewal that got through (the store is out
    /// of reach, and by now another host may have taken the run over).
    async fn lost(&self, run_id: i64) -> String {
        let every = self.lease / 3;
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            match self.cluster.renew(run_id, self.lease).await {
                Ok(()) => renewed = tokio::time::Instant::now(),
                Err(StoreError::Superseded { .. }) => return "another host took the run over".to_owned(),
                Err(error) => {
                    let since = renewed.elapsed();
                    if since >= self.lease {
                        let ms = since.as_millis();
                        return format!("its lease could not be renewed for {ms} ms ({error})");
                    }
                    tracing::warn!(run_id, %error, "could not renew the run's lease; trying again");
                }
            }
        }
    }
}

pub(super) struct RunTask {
    pub runtime: Arc<Runtime>,
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    pub spec: Arc<JobSpec>,
    pub compiled: Arc<CompiledJob>,
    pub run: PendingRun,
    pub control: RunControl,
    pub job_host: Arc<dyn JobHost>,
    pub events: Events,
    /// The run was claimed from a shared store: it is `running` already,
    /// and holds only while this lease is renewed.
    pub lease: Option<Lease>,
}

impl RunTask {
    pub async fn run(self, completed: mpsc::UnboundedSender<Completion>) {
        let RunTask { runtime, store, clock, spec, compiled, run, control, job_host, events, lease } = self;
        let started_at = clock.now();
        let (job, run_id, attempt) = (spec.name.clone(), run.id, run.attempt);
        let event = |stage, at, status| RunEvent {
            stage,
            job: job.clone(),
            run_id: Some(run_id),
            trigger: run.trigger,
            attempt,
            scheduled_for: run.scheduled_for,
            at,
            status: Some(status),
        };
        if lease.is_none()
            && let Err(error) = store.start_run(run.id, started_at, compiled.sha256.clone()).await
        {
            tracing::debug!(job = %spec.name, run_id, %error, "could not mark the run as running");
            let (payload, ended_at) = (run.payload.clone(), clock.now());
            let ended = Ended::NotStarted(run, error);
            let _ = completed.send(Completion { job, run_id, attempt, ended_at, payload, ended });
            return;
        }
        events.emit(|| event(Stage::Started, clock.now(), RunStatus::Running));
        let context = RunContext {
            run_id: run.id,
            attempt: run.attempt,
            scheduled_at: run.scheduled_for,
            trigger: run.trigger,
            payload: run.payload.clone(),
            echo: false,
            host: Some(job_host),
        };
        let report = {
            let guest = runtime.run(&compiled, &spec, &context, &control);
            tokio::pin!(guest);
            let kept = async {
                match &lease {
                    Some(lease) => lease.lost(run_id).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                report = &mut guest => report,
                why = kept => {
                    control.cancel();
                    let _ = guest.await;
                    tracing::warn!(job = %spec.name, run_id, attempt, "lease lost: {why}; the guest was stopped and its result discarded");
                    let ended_at = clock.now();
                    events.note(HostEvent::LeaseLost { job: spec.name.clone() });
                    events.emit(|| event(Stage::Ended, ended_at, RunStatus::Abandoned));
                    let _ = completed.send(Completion { job, run_id, attempt, ended_at, payload: Vec::new(), ended: Ended::Superseded });
                    return;
                }
            }
        };
        let ended_at = clock.now();
        if !report.network_denied.is_empty() {
            let count = report.network_denied.len() as u64;
            events.note(HostEvent::NetworkDenied { job: spec.name.clone(), count });
        }
        let (outcome, finished) = finished(report, ended_at);
        events.emit(|| event(Stage::Ended, ended_at, outcome.status()));
        if super::policy::retryable(&outcome) && attempt < spec.retry.attempts && lease.is_none() {
            let ended = Ended::Retryable { outcome, finished };
            let _ = completed.send(Completion { job, run_id, attempt, ended_at, payload: context.payload, ended });
            return;
        }
        let unrecorded = match store.finish_run(run.id, finished.clone()).await {
            Ok(()) => None,
            Err(StoreError::Superseded { .. }) => {
                tracing::warn!(job = %spec.name, run_id, attempt, "lease lost: another host took the run over; its result is discarded");
                events.note(HostEvent::LeaseLost { job: spec.name.clone() });
                let _ = completed.send(Completion {
                    job,
                    run_id,
                    attempt,
                    ended_at,
                    payload: context.payload,
                    ended: Ended::Superseded,
                });
                return;
            }
            Err(error) => Some((finished, error)),
        };
        let duration_ms = (ended_at - started_at).num_milliseconds();
        let status = outcome.status().as_str();
        if outcome.is_success() {
            tracing::info!(job = %spec.name, run_id, attempt, outcome = status, duration_ms, "run ended");
        } else {
            let error = outcome.error().unwrap_or_default();
            tracing::warn!(job = %spec.name, run_id, attempt, outcome = status, duration_ms, error, "run ended");
        }
        let ended = Ended::Ran { outcome, unrecorded };
        let _ = completed.send(Completion { job, run_id, attempt, ended_at, payload: context.payload, ended });
    }
}

/// Splits a report into its outcome and the row that records it.
pub fn finished(report: RunReport, ended_at: DateTime<Utc>) -> (RunOutcome, Finished) {
    let finished = Finished {
        status: report.outcome.status(),
        ended_at,
        exit_code: report.outcome.exit_code(),
        error: report.outcome.error(),
        fuel_used: report.fuel_used,
        stdout: report.stdout,
        stderr: report.stderr,
        output_dropped: report.output_dropped,
    };
    (report.outcome, finished)
}

/// A small xorshift generator for jitter: not for secrets, and no dependency.
pub(super) struct Random(u64);

impl Random {
    pub fn seeded() -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Random(nanos | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, limit)`; zero for a zero limit.
    pub fn below(&mut self, limit: std::time::Duration) -> std::time::Duration {
        limit.mul_f64(self.unit())
    }
}
