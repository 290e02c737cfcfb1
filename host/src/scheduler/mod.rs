//! The scheduler: fires jobs on time, applies overlap and retry policies,
//! and keeps every fire accounted for in the store.
//!
//! Strategy: one actor owns all scheduling state — the jobs, a heap of
//! timers (fires, delayed retries, history pruning) and a FIFO of runs ready
//! to start — and sleeps until the earliest timer, a run's completion, or
//! shutdown. It never polls. Runs are tasks of their own: each marks its row
//! `running`, runs the guest, writes the outcome, and reports back over a
//! channel. Everything a fire decides is written through the store before
//! it takes effect, so a crash loses no accepted run.

mod fire;
mod policy;
mod probe;
mod recover;
mod reload;
mod task;
mod timer;

use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

pub use policy::{CatchUpPlan, MAX_MISSED_RECORDS, plan_catch_up, retry_allowed, retry_delay};
pub use probe::{FireProbe, Samples};
pub use reload::ReloadConfig;

use crate::clock::Clock;
use crate::config::JobSpec;
use crate::jobhost::{Enqueue, Queue, StoreJobHost, enqueued};
use crate::record::{RunStatus, Trigger};
use crate::registry::LoadedJob;
use crate::runtime::{CompiledJob, JobHost, RunControl, RunOutcome, Runtime};
use crate::store::{NewRun, PendingRun, Retention, StoreHandle};
use task::Completion;
pub use task::finished;
use timer::{Timer, TimerKind};

/// Knobs of `wasmcron run`.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Guests running at once, across all jobs.
    pub max_running: usize,
    /// How long shutdown waits for running guests before cancelling them.
    pub grace: Duration,
    pub retention: Retention,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { max_running: 32, grace: Duration::from_secs(15), retention: Retention::default() }
    }
}

/// How often history is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

struct JobSlot {
    spec: Arc<JobSpec>,
    compiled: Arc<CompiledJob>,
    /// The declaration as text, to tell a changed one on reload.
    fingerprint: String,
    /// Fire timers carry the generation they were set for; a reload that
    /// changes the schedule starts a new one, and older timers are void.
    generation: u64,
    next_fire: Option<DateTime<Utc>>,
    /// Runs of this job that have started, by run id.
    active: BTreeMap<i64, RunControl>,
    /// Runs of this job in the ready queue, not yet started.
    waiting: usize,
    /// The one run held back by `overlap = "queue"`.
    queued: Option<PendingRun>,
}

impl JobSlot {
    fn new(job: LoadedJob, generation: u64) -> Self {
        JobSlot {
            spec: Arc::new(job.spec),
            compiled: job.compiled,
            fingerprint: job.fingerprint,
            generation,
            next_fire: None,
            active: BTreeMap::new(),
            waiting: 0,
            queued: None,
        }
    }

    fn busy(&self) -> bool {
        !self.active.is_empty() || self.waiting > 0
    }
}

pub struct Scheduler {
    runtime: Arc<Runtime>,
    store: StoreHandle,
    clock: Clock,
    config: SchedulerConfig,
    jobs: BTreeMap<String, JobSlot>,
    timers: BinaryHeap<Timer>,
    timer_seq: u64,
    /// The next unused job generation (see `JobSlot::generation`).
    next_generation: u64,
    ready: VecDeque<PendingRun>,
    running: usize,
    completions: mpsc::UnboundedReceiver<Completion>,
    completed: mpsc::UnboundedSender<Completion>,
    random: task::Random,
    reload: Option<reload::Reloader>,
    /// Job-world guests reach the store and `enqueue` through this.
    job_host: Arc<dyn JobHost>,
    enqueues: mpsc::UnboundedReceiver<Enqueue>,
    probe: Option<Arc<FireProbe>>,
}

impl Scheduler {
    pub fn new(
        runtime: Arc<Runtime>,
        store: StoreHandle,
        clock: Clock,
        config: SchedulerConfig,
        jobs: Vec<LoadedJob>,
    ) -> Self {
        let (completed, completions) = mpsc::unbounded_channel();
        let (enqueue, enqueues) = mpsc::unbounded_channel();
        let job_host = Arc::new(StoreJobHost { store: store.clone(), queue: Queue::Scheduler(enqueue) });
        let jobs_count = jobs.len() as u64;
        let jobs = jobs
            .into_iter()
            .enumerate()
            .map(|(generation, job)| (job.spec.name.clone(), JobSlot::new(job, generation as u64)))
            .collect();
        Scheduler {
            runtime,
            store,
            clock,
            config,
            jobs,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            next_generation: jobs_count,
            ready: VecDeque::new(),
            running: 0,
            completions,
            completed,
            random: task::Random::seeded(),
            reload: None,
            job_host,
            enqueues,
            probe: None,
        }
    }

    /// Watches the jobs folder and the modules' folders, and reloads jobs
    /// as their files change. Without this the job set is fixed.
    pub fn with_reload(mut self, config: ReloadConfig) -> Self {
        self.reload = Some(reload::Reloader::new(config));
        self
    }

    /// Times every fire's stages into `probe` (see `FireProbe`).
    pub fn with_probe(mut self, probe: Arc<FireProbe>) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Fires until `shutdown` resolves, then drains: running guests get the
    /// grace period, then are cancelled. Pending runs stay in the store.
    ///
    /// Drive it with `block_on` on a thread of its own, as `wasmcron run`
    /// does: on the system clock it blocks its thread for the last
    /// milliseconds before each fire, to fire on time (see `Clock`).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        self.recover().await?;
        self.add_timer(self.clock.now() + chrono::Duration::from_std(PRUNE_EVERY)?, TimerKind::Prune);
        if let Some(reload) = &mut self.reload {
            reload.start()?;
        }
        tokio::pin!(shutdown);
        loop {
            self.dispatch();
            let next = self.timers.peek().map(|timer| timer.at);
            let clock = self.clock.clone();
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = self.completions.recv() => self.on_completion(done).await?,
                Some(event) = reload::next_event(&mut self.reload) => self.on_reload_event(event).await?,
                Some(request) = self.enqueues.recv() => self.on_enqueue(request).await?,
                () = async move {
                    match next {
                        Some(at) => clock.sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => self.on_timers().await?,
            }
        }
        self.drain().await
    }

    fn add_timer(&mut self, at: DateTime<Utc>, kind: TimerKind) {
        self.timer_seq += 1;
        self.timers.push(Timer { at, seq: self.timer_seq, kind });
    }

    /// Schedules `job`'s next fire after `after`, with its jitter.
    fn schedule_next(&mut self, job: &str, after: DateTime<Utc>) {
        let Some(slot) = self.jobs.get_mut(job) else { return };
        let Some(schedule) = slot.spec.schedule.as_ref().filter(|_| slot.spec.enabled) else {
            slot.next_fire = None;
            return;
        };
        slot.next_fire = schedule.next_after(after);
        if let Some(nominal) = slot.next_fire {
            let jitter = self.random.below(slot.spec.jitter);
            let at = nominal + chrono::Duration::from_std(jitter).unwrap_or_default();
            let generation = slot.generation;
            self.add_timer(at, TimerKind::Fire { job: job.to_owned(), nominal, generation });
        }
    }

    /// Handles every timer that is due.
    async fn on_timers(&mut self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let mut fires = Vec::new();
        while self.timers.peek().is_some_and(|timer| timer.at <= now) {
            let Timer { kind, .. } = self.timers.pop().expect("peeked");
            match kind {
                TimerKind::Fire { job, nominal, generation } => {
                    if self.jobs.get(&job).is_none_or(|slot| slot.generation != generation) {
                        continue; // the job was removed or rescheduled since
                    }
                    self.schedule_next(&job, nominal);
                    if let Some(probe) = &self.probe {
                        probe.note(probe::Stage::Fired, nominal, self.clock.now());
                    }
                    if let Some(decision) = self.decide(&job, nominal) {
                        fires.push(decision);
                    }
                }
                TimerKind::Start(run) => self.make_ready(run),
                TimerKind::Prune => {
                    let retention = self.config.retention;
                    let store = self.store.clone();
                    tokio::spawn(async move {
                        match store.call(move |s| s.prune(&retention, now)).await {
                            Ok(pruned) => tracing::debug!(pruned, "history pruned"),
                            Err(error) => tracing::warn!(%error, "pruning history failed"),
                        }
                    });
                    self.add_timer(now + chrono::Duration::from_std(PRUNE_EVERY)?, TimerKind::Prune);
                }
            }
        }
        if !fires.is_empty() {
            self.record_fires(fires).await?;
        }
        Ok(())
    }

    async fn on_enqueue(&mut self, request: Enqueue) -> anyhow::Result<()> {
        if !self.jobs.contains_key(&request.job) {
            let _ = request.reply.send(Err(format!("no job named {:?} is loaded", request.job)));
            return Ok(());
        }
        let now = self.clock.now();
        let at = now + chrono::Duration::from_std(request.delay).unwrap_or_default();
        let Enqueue { parent_run, job, payload, reply, .. } = request;
        let (id, payload) = self
            .store
            .call(move |store| Ok((store.insert_run(&enqueued(&job, &payload, at, parent_run))?, (job, payload))))
            .await?;
        let (job, payload) = payload;
        tracing::info!(job = %job, run_id = id, parent_run, "run enqueued by another run");
        let run = PendingRun { id, job, trigger: Trigger::Manual, attempt: 1, scheduled_for: at, payload };
        if at <= now {
            self.make_ready(run);
        } else {
            self.add_timer(at, TimerKind::Start(run));
        }
        let _ = reply.send(Ok(id));
        Ok(())
    }

    fn make_ready(&mut self, run: PendingRun) {
        if let Some(slot) = self.jobs.get_mut(&run.job) {
            slot.waiting += 1;
            self.ready.push_back(run);
        } else {
            tracing::warn!(job = %run.job, run_id = run.id, "pending run of a job that is not loaded; it stays pending");
        }
    }

    /// Starts ready runs while there is room under `max_running`.
    fn dispatch(&mut self) {
        while self.running < self.config.max_running {
            let Some(run) = self.ready.pop_front() else { return };
            let Some(slot) = self.jobs.get_mut(&run.job) else { continue };
            // Saturating: a job removed and declared again gets a fresh slot,
            // while runs queued for its old one may still be in line.
            slot.waiting = slot.waiting.saturating_sub(1);
            let control = RunControl::new(slot.spec.limits.timeout);
            slot.active.insert(run.id, control.clone());
            self.running += 1;
            let task = task::RunTask {
                runtime: self.runtime.clone(),
                store: self.store.clone(),
                clock: self.clock.clone(),
                spec: slot.spec.clone(),
                compiled: slot.compiled.clone(),
                run,
                control,
                job_host: self.job_host.clone(),
                probe: self.probe.clone(),
            };
            tokio::spawn(task.run(self.completed.clone()));
        }
    }

    async fn on_completion(&mut self, done: Completion) -> anyhow::Result<()> {
        self.running -= 1;
        let Some(slot) = self.jobs.get_mut(&done.job) else { return Ok(()) };
        slot.active.remove(&done.run_id);
        let retryable =
            matches!(done.outcome, RunOutcome::Failed { .. } | RunOutcome::TimedOut | RunOutcome::OutOfFuel);
        if retryable && done.attempt < slot.spec.retry.attempts {
            let delay = retry_delay(&slot.spec.retry, done.attempt, self.random.unit());
            let retry_at = done.ended_at + chrono::Duration::from_std(delay)?;
            if retry_allowed(retry_at, slot.next_fire) {
                let retry =
                    NewRetry { job: done.job.clone(), attempt: done.attempt + 1, at: retry_at, payload: done.payload };
                let pending = self.store.call(move |store| retry.write(store)).await?;
                tracing::info!(job = %done.job, run_id = pending.id, attempt = pending.attempt, delay_ms = delay.as_millis() as u64, "retry scheduled");
                self.add_timer(retry_at, TimerKind::Start(pending));
            } else {
                tracing::info!(job = %done.job, run_id = done.run_id, "no retry: the next scheduled fire comes first");
            }
        }
        let slot = self.jobs.get_mut(&done.job).expect("looked up above");
        if slot.active.is_empty()
            && let Some(queued) = slot.queued.take()
        {
            self.make_ready(queued);
        }
        Ok(())
    }

    /// After shutdown: wait up to the grace period, then cancel what runs.
    async fn drain(mut self) -> anyhow::Result<()> {
        let running = self.running;
        if running > 0 {
            tracing::info!(running, grace_ms = self.config.grace.as_millis() as u64, "waiting for running guests");
        }
        let grace = tokio::time::sleep(self.config.grace);
        tokio::pin!(grace);
        while self.running > 0 {
            tokio::select! {
                Some(done) = self.completions.recv() => self.on_completion(done).await?,
                () = &mut grace => break,
            }
        }
        if self.running > 0 {
            tracing::warn!(running = self.running, "grace period over: cancelling running guests");
            for slot in self.jobs.values() {
                slot.active.values().for_each(RunControl::cancel);
            }
            while self.running > 0 {
                let Some(done) = self.completions.recv().await else { break };
                self.on_completion(done).await?;
            }
        }
        Ok(())
    }
}
/// A retry to record as a pending run.
struct NewRetry {
    job: String,
    attempt: u32,
    at: DateTime<Utc>,
    payload: Vec<u8>,
}

impl NewRetry {
    fn write(self, store: &crate::store::Store) -> crate::store::Result<PendingRun> {
        let id = store.insert_run(&NewRun {
            attempt: self.attempt,
            payload: &self.payload,
            ..NewRun::new(&self.job, RunStatus::Pending, Trigger::Retry, self.at)
        })?;
        Ok(PendingRun {
            id,
            job: self.job,
            trigger: Trigger::Retry,
            attempt: self.attempt,
            scheduled_for: self.at,
            payload: self.payload,
        })
    }
}
