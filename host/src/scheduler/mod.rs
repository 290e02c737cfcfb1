//! The scheduler: fires jobs on time, applies overlap and retry policies,
//! and keeps every fire accounted for in the store. Reached only through
//! its [`Handle`] and its jobs-view snapshot.
//!
//! Strategy: one actor owns all scheduling state — the jobs, a heap of
//! timers (fires, delayed runs, store retries, history pruning), a FIFO of
//! runs ready to start, and the registry of runs in flight — and sleeps
//! until the earliest timer, a run's completion, a command, a reload or
//! shutdown. It never polls. Runs are tasks of their own: each marks its
//! row `running`, runs the guest, writes the outcome, and reports back.
//! Everything a fire decides is written through the store before it takes
//! effect, so a crash loses no accepted run; when the store fails, the
//! actor holds what it could not write and retries (see `backlog`).

mod backlog;
mod cluster;
mod commands;
mod fire;
mod handle;
mod policy;
mod recover;
mod reload;
mod runs;
mod task;
mod timer;
mod view;
mod watchdog;

use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};

pub use handle::{CommandError, Handle, MAX_PAUSE_REASON, TriggerRequest, Triggered, pause_reason};
pub use policy::{CatchUpPlan, MAX_MISSED_RECORDS, plan_catch_up, retry_allowed, retry_delay};
pub use reload::ReloadConfig;
pub use task::finished;
pub use view::{JobView, JobsView, LastRun, QueueHealth, StoreHealth};
pub use watchdog::Liveness;

use crate::clock::Clock;
use crate::config::JobSpec;
use crate::events::{Events, HostEvent, Observer};
use crate::jobhost::{Queue, StoreJobHost};

use crate::registry::LoadedJob;
use crate::runtime::{CompiledJob, JobHost, RunControl, Runtime};
use crate::store::{PendingRun, Retention, Store};
use task::Completion;
use timer::{Timer, TimerKind};

/// Knobs of `wasmcron run`.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Guests running at once, across all jobs.
    pub max_running: usize,
    /// Triggered runs (API, `enqueue`) accepted and waiting to start, at
    /// most; beyond it a trigger is refused (`QueueFull`), never dropped.
    pub max_queued: usize,
    /// How long shutdown waits for running guests before cancelling them.
    pub grace: Duration,
    pub retention: Retention,
    /// How often history is pruned to `retention`.
    pub prune_every: Duration,
    /// On a shared store: how long a claim holds without renewal. A host
    /// renews at a third of it; one silent for longer loses its runs.
    pub lease: Duration,
    /// On a shared store: this host's name in the hosts table.
    pub host_name: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_running: 32,
            max_queued: 10_000,
            grace: Duration::from_secs(15),
            retention: Retention::default(),
            prune_every: Duration::from_secs(3600),
            lease: Duration::from_secs(30),
            host_name: "wasmcron".to_owned(),
        }
    }
}

struct JobSlot {
    spec: Arc<JobSpec>,
    compiled: Arc<CompiledJob>,
    /// Fire timers carry the generation they were set for; a reload that
    /// changes the schedule starts a new one, and older timers are void.
    generation: u64,
    next_fire: Option<DateTime<Utc>>,
    /// Runs of this job that have started and not ended.
    active: usize,
    /// Runs of this job in the ready queue, not yet started.
    waiting: usize,
    /// The one run held back by `overlap = "queue"`.
    queued: Option<PendingRun>,
    paused: bool,
    /// Why it is paused, as its pauser said.
    paused_reason: Option<String>,
    /// Why the job's newest files failed to load (this version stays).
    load_error: Option<String>,
    /// The sha256 of the declaration in service, for hosts to compare.
    declaration: String,
}

impl JobSlot {
    fn new(job: LoadedJob, generation: u64) -> Self {
        JobSlot {
            declaration: cluster::declaration_digest(&job.spec),
            spec: Arc::new(job.spec),
            compiled: job.compiled,
            generation,
            next_fire: None,
            active: 0,
            waiting: 0,
            queued: None,
            paused: false,
            paused_reason: None,
            load_error: None,
        }
    }

    fn busy(&self) -> bool {
        self.active > 0 || self.waiting > 0
    }
}

/// A run that has started: its job and its stop switch. The registry of
/// these is scheduler-wide, so shutdown, `replace` and `cancel` reach
/// every run in flight, also of a job removed or renamed since it started.
struct InFlight {
    job: String,
    control: RunControl,
}

pub struct Scheduler {
    runtime: Arc<Runtime>,
    store: Arc<dyn Store>,
    clock: Clock,
    config: SchedulerConfig,
    jobs: BTreeMap<String, JobSlot>,
    timers: BinaryHeap<Timer>,
    timer_seq: u64,
    /// The next unused job generation (see `JobSlot::generation`).
    next_generation: u64,
    ready: VecDeque<PendingRun>,
    in_flight: BTreeMap<i64, InFlight>,
    /// Triggered runs accepted and not yet started (see `max_queued`).
    triggered_waiting: usize,
    completions: mpsc::UnboundedReceiver<Completion>,
    completed: mpsc::UnboundedSender<Completion>,
    commands: mpsc::Receiver<handle::Command>,
    /// Triggers whose rows are being written, and where they report.
    accepting: usize,
    accepted: mpsc::UnboundedReceiver<commands::Accepting>,
    accept: mpsc::UnboundedSender<commands::Accepting>,
    random: task::Random,
    reload: Option<reload::Reloader>,
    /// Job-world guests reach the store and `enqueue` through this.
    job_host: Arc<dyn JobHost>,
    events: Events,
    backlog: backlog::Backlog,
    last_runs: BTreeMap<String, LastRun>,
    view: watch::Sender<JobsView>,
    view_changed: bool,
    view_published: Option<DateTime<Utc>>,
    /// A `TimerKind::View` is in the heap.
    view_timer: bool,
    /// Shutting down: no runs start, the view says not ready.
    draining: bool,
    /// How often, and whom, to tell that the loop turns (see `with_watchdog`).
    watchdog: Option<(Duration, Arc<dyn Liveness>)>,
    /// Beats from the loop, once it runs.
    heartbeat: Option<watchdog::Heartbeat>,
    /// One host of several on a shared store (see `cluster`).
    member: Option<cluster::Member>,
}

impl Scheduler {
    /// A scheduler for `jobs`, and the handle that reaches it once it runs.
    pub fn new(
        runtime: Arc<Runtime>,
        store: Arc<dyn Store>,
        clock: Clock,
        config: SchedulerConfig,
        jobs: Vec<LoadedJob>,
    ) -> (Self, Handle) {
        let (completed, completions) = mpsc::unbounded_channel();
        let (commands_in, commands) = mpsc::channel(handle::COMMAND_QUEUE);
        let (accept, accepted) = mpsc::unbounded_channel();
        // The queue is known from the start; everything else once recovered.
        let queue = Some(QueueHealth { waiting: 0, capacity: config.max_queued });
        let (view, view_out) = watch::channel(JobsView { queue, ..JobsView::default() });
        let handle = Handle { commands: commands_in, view: view_out };
        let job_host = Arc::new(StoreJobHost { store: store.clone(), queue: Queue::Scheduler(handle.clone()) });
        let member = store.cluster().map(|c| cluster::Member::new(c, config.lease, config.host_name.clone()));
        let jobs_count = jobs.len() as u64;
        let jobs = jobs
            .into_iter()
            .enumerate()
            .map(|(generation, job)| (job.spec.name.clone(), JobSlot::new(job, generation as u64)))
            .collect();
        let scheduler = Scheduler {
            runtime,
            store,
            clock,
            config,
            jobs,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            next_generation: jobs_count,
            ready: VecDeque::new(),
            in_flight: BTreeMap::new(),
            triggered_waiting: 0,
            completions,
            completed,
            commands,
            accepting: 0,
            accepted,
            accept,
            random: task::Random::seeded(),
            reload: None,
            job_host,
            events: Events::default(),
            backlog: backlog::Backlog::default(),
            last_runs: BTreeMap::new(),
            view,
            view_changed: true,
            view_published: None,
            view_timer: false,
            draining: false,
            watchdog: None,
            heartbeat: None,
            member,
        };
        (scheduler, handle)
    }

    /// Watches the jobs folder and the modules' folders, and reloads jobs
    /// as their files change. Without this the job set is fixed.
    pub fn with_reload(mut self, config: ReloadConfig) -> Self {
        self.reload = Some(reload::Reloader::new(config));
        self
    }

    /// Tells `liveness` every `every`, from the scheduler's own loop, that
    /// the loop turns: a supervisor's watchdog (systemd's `WatchdogSec`)
    /// then notices a scheduler that has wedged.
    pub fn with_watchdog(mut self, every: Duration, liveness: Arc<dyn Liveness>) -> Self {
        self.watchdog = Some((every, liveness));
        self
    }

    /// Sends every run lifecycle event to `observers` (see `events`).
    pub fn with_observers(mut self, observers: Vec<Arc<dyn Observer>>) -> Self {
        self.events = Events::new(observers);
        self
    }

    /// Fires until `shutdown` resolves, then drains: running guests get the
    /// grace period, then are cancelled. Pending runs stay in the store.
    /// A failing store never ends it: what it could not write is held and
    /// retried (see `backlog`).
    ///
    /// Drive it with `block_on` on a thread of its own, as `wasmcron run`
    /// does: on the system clock it blocks its thread for the last
    /// milliseconds before each fire, to fire on time (see `Clock`).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        if !self.recover(shutdown.as_mut()).await {
            return Ok(()); // stopped while the store kept failing
        }
        self.add_timer(self.clock.now() + chrono::Duration::from_std(self.config.prune_every)?, TimerKind::Prune);
        if self.member.is_some() {
            self.add_timer(self.clock.now(), TimerKind::Poll);
        }
        if let Some(reload) = &mut self.reload {
            reload.start()?;
        }
        self.heartbeat = self.watchdog.take().map(|(every, liveness)| watchdog::Heartbeat::new(every, liveness));
        loop {
            self.claim().await;
            self.dispatch();
            self.publish_view();
            let next = self.timers.peek().map(|timer| timer.at);
            let clock = self.clock.clone();
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                // Second, so that a loop kept busy by the arms below still beats.
                () = watchdog::beat(&mut self.heartbeat) => {}
                Some(done) = self.completions.recv() => self.on_completion(done).await,
                Some(event) = reload::next_event(&mut self.reload) => self.on_reload_event(event).await,
                Some(command) = self.commands.recv() => self.on_command(command).await,
                Some(accepted) = self.accepted.recv() => self.on_accepted(accepted, true),
                () = cluster::woken(&mut self.member) => self.want_claim(),
                () = async move {
                    match next {
                        Some(at) => clock.sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => self.on_timers().await,
            }
        }
        self.drain().await;
        Ok(())
    }

    fn add_timer(&mut self, at: DateTime<Utc>, kind: TimerKind) {
        self.timer_seq += 1;
        self.timers.push(Timer { at, seq: self.timer_seq, kind });
    }

    /// Schedules `job`'s next fire after `after`, with its jitter.
    fn schedule_next(&mut self, job: &str, after: DateTime<Utc>) {
        let Some(slot) = self.jobs.get_mut(job) else { return };
        self.view_changed = true;
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
    async fn on_timers(&mut self) {
        let now = self.clock.now();
        let mut fires = Vec::new();
        let mut store_retry = false;
        let mut poll = false;
        let mut behind = std::collections::BTreeSet::new();
        self.keep_interval_cadence(now);
        while self.timers.peek().is_some_and(|timer| timer.at <= now) {
            let Timer { kind, .. } = self.timers.pop().expect("peeked");
            match kind {
                TimerKind::Fire { job, nominal, generation } => {
                    if self.jobs.get(&job).is_none_or(|slot| slot.generation != generation) {
                        continue; // the job was removed or rescheduled since
                    }
                    // Fires the clock jumped past (or a stall outlasted) are
                    // the catch-up's, not a burst of late runs.
                    let fell_behind = self.fell_behind(&job, nominal, now);
                    self.schedule_next(&job, if fell_behind { now } else { nominal });
                    if !fell_behind {
                        self.events.emit(|| fire::event(&job, nominal, self.clock.now()));
                    }
                    if self.backlog.owes_catch_up(&job) {
                        continue; // recorded by the catch-up once the store recovers
                    }
                    if fell_behind {
                        behind.insert(job);
                        continue;
                    }
                    if let Some(decision) = self.decide(&job, nominal) {
                        fires.push(decision);
                    }
                }
                TimerKind::Start(run) => self.make_ready(run),
                TimerKind::StoreRetry => store_retry = true,
                TimerKind::View => self.view_timer = false,
                TimerKind::Poll => poll = true,
                TimerKind::Claim => self.on_claim_timer(),
                TimerKind::Prune => {
                    let (retention, store, events) = (self.config.retention, self.store.clone(), self.events.clone());
                    tokio::spawn(async move {
                        match store.prune(retention, now).await {
                            Ok(pruned) => tracing::debug!(pruned, "history pruned"),
                            Err(error) => {
                                events.note(HostEvent::StoreFailed);
                                tracing::warn!(%error, "pruning history failed");
                            }
                        }
                    });
                    let every =
                        chrono::Duration::from_std(self.config.prune_every).unwrap_or(chrono::Duration::hours(1));
                    self.add_timer(now + every, TimerKind::Prune);
                }
            }
        }
        if !fires.is_empty() {
            self.record_fires(fires).await;
        }
        if !behind.is_empty() {
            self.catch_up_behind(behind, now).await;
        }
        if store_retry {
            self.retry_store().await;
        }
        if poll {
            self.on_poll().await;
        }
    }
}
