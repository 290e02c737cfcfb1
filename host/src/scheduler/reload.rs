//! Hot reload inside the scheduler: file batches from the watcher start a
//! reload plan on a blocking thread (compiling never holds up firing); its
//! result is applied here, in the actor, so the swap is atomic for every
//! later run. Runs in flight keep the `Arc` of the version they started on.
//!
//! Strategy: at most one plan is computed at a time; batches arriving
//! meanwhile are merged and planned next. A schedule change starts a new
//! timer generation, so the edit itself never fires the job and the next
//! fire is computed from now, never in the past.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{JobSlot, Scheduler};
use crate::events::HostEvent;
use crate::registry::{self, Change, LoadedJob};
use crate::runtime::CompileCache;
use crate::store::Load;
use crate::watcher::Watcher;

/// Where jobs come from, and how quickly a change is picked up.
pub struct ReloadConfig {
    pub jobs_dir: PathBuf,
    pub cache: Option<Arc<CompileCache>>,
    pub debounce: Duration,
    /// Module folders to watch from the start (`Registry::module_folders`).
    pub module_folders: BTreeSet<PathBuf>,
    /// Load errors already reported at start, by job, so they are not
    /// reported again until they change.
    pub reported: BTreeMap<String, String>,
}

pub(super) struct Reloader {
    config: ReloadConfig,
    watcher: Option<Watcher>,
    batches: Option<mpsc::UnboundedReceiver<BTreeSet<PathBuf>>>,
    done: (
        mpsc::UnboundedSender<anyhow::Result<registry::Reload>>,
        mpsc::UnboundedReceiver<anyhow::Result<registry::Reload>>,
    ),
    in_flight: bool,
    waiting: BTreeSet<PathBuf>,
    /// The last load error reported per job, so it is logged once, not on every reload.
    reported: BTreeMap<String, String>,
}

pub(super) enum Event {
    Changed(BTreeSet<PathBuf>),
    Planned(anyhow::Result<registry::Reload>),
}

impl Reloader {
    pub fn new(mut config: ReloadConfig) -> Self {
        Reloader {
            reported: std::mem::take(&mut config.reported),
            config,
            watcher: None,
            batches: None,
            done: mpsc::unbounded_channel(),
            in_flight: false,
            waiting: BTreeSet::new(),
        }
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let (mut watcher, batches) = Watcher::start(self.config.debounce)?;
        watcher.watch(self.folders(self.config.module_folders.clone()));
        self.watcher = Some(watcher);
        self.batches = Some(batches);
        Ok(())
    }

    /// The load error of each job whose newest files fail to load.
    pub fn errors(&self) -> impl Iterator<Item = (&String, &String)> {
        self.reported.iter()
    }

    fn folders(&self, mut modules: BTreeSet<PathBuf>) -> BTreeSet<PathBuf> {
        modules.extend(self.config.jobs_dir.canonicalize().ok());
        modules
    }
}

/// The next reload event, or never when reloading is off.
pub(super) async fn next_event(reload: &mut Option<Reloader>) -> Option<Event> {
    let Some(reload) = reload else { return std::future::pending().await };
    let batches = reload.batches.as_mut();
    tokio::select! {
        Some(batch) = async move { match batches { Some(b) => b.recv().await, None => None } } => Some(Event::Changed(batch)),
        Some(planned) = reload.done.1.recv() => Some(Event::Planned(planned)),
    }
}

impl Scheduler {
    pub(super) async fn on_reload_event(&mut self, event: Event) {
        match event {
            Event::Changed(paths) => {
                let reload = self.reload.as_mut().expect("events come only with a reloader");
                reload.waiting.extend(paths);
                if !reload.in_flight {
                    self.start_plan();
                }
            }
            Event::Planned(planned) => {
                self.reload.as_mut().expect("events come only with a reloader").in_flight = false;
                match planned {
                    Ok(plan) => self.apply(plan).await,
                    Err(error) => {
                        self.events.note(HostEvent::Reloaded { failed: true });
                        tracing::error!("reload failed: {error:#}");
                    }
                }
                if !self.reload.as_ref().expect("present").waiting.is_empty() {
                    self.start_plan();
                }
            }
        }
    }

    fn start_plan(&mut self) {
        let current: BTreeMap<String, LoadedJob> = self
            .jobs
            .iter()
            .map(|(name, slot)| {
                let job = LoadedJob { spec: (*slot.spec).clone(), compiled: slot.compiled.clone() };
                (name.clone(), job)
            })
            .collect();
        let reload = self.reload.as_mut().expect("planning only with a reloader");
        let changed = std::mem::take(&mut reload.waiting);
        reload.in_flight = true;
        let runtime = self.runtime.clone();
        let (dir, cache, done) = (reload.config.jobs_dir.clone(), reload.config.cache.clone(), reload.done.0.clone());
        tokio::task::spawn_blocking(move || {
            let plan = registry::plan_reload(&runtime, &dir, cache.as_deref(), &current, &changed);
            let _ = done.send(plan);
        });
    }

    /// Applies a reload plan: the swap every later run sees.
    async fn apply(&mut self, plan: registry::Reload) {
        let now = self.clock.now();
        let mut loads = Vec::new();
        self.view_changed = true;
        // Failed: it found a load error not reported yet. (A plan lists
        // every declaration that does not load, each time.)
        let mut failed = false;
        for change in plan.changes {
            match change {
                Change::Loaded(job) => {
                    let name = job.spec.name.clone();
                    let sha = job.compiled.sha256.clone();
                    let first = !self.jobs.contains_key(&name);
                    self.swap(*job, now);
                    tracing::info!(job = %name, module_sha256 = %sha, new = first, "job loaded");
                    if let Some(reload) = &mut self.reload {
                        reload.reported.remove(&name);
                    }
                    loads.push(Load::Loaded { job: name, module_sha256: sha, first });
                }
                Change::Removed(name) => {
                    // Its runs in flight stay in the run registry: they can
                    // still be cancelled, and shutdown still reaches them.
                    self.jobs.remove(&name);
                    tracing::info!(job = %name, "job removed: its declaration is gone");
                }
                Change::Failed { job, error } => {
                    let message = error.to_string();
                    let reload = self.reload.as_mut().expect("applying only with a reloader");
                    if reload.reported.get(&job) != Some(&message) {
                        let keeping = self.jobs.contains_key(&job);
                        tracing::error!(job = %job, keeping_previous_version = keeping, "{message}");
                        failed = true;
                        reload.reported.insert(job.clone(), message.clone());
                        loads.push(Load::Failed { job: job.clone(), error: message.clone() });
                    }
                    if let Some(slot) = self.jobs.get_mut(&job) {
                        slot.load_error = Some(message);
                    }
                }
            }
        }
        self.events.note(HostEvent::Reloaded { failed });
        if let Some(reload) = &mut self.reload {
            let folders = reload.folders(plan.module_folders);
            if let Some(watcher) = &mut reload.watcher {
                watcher.watch(folders);
            }
        }
        if !loads.is_empty()
            && let Err(error) = self.store.record_loads(loads, now).await
        {
            self.events.note(HostEvent::StoreFailed);
            // The jobs are in service all the same; only their state row
            // (what `wasmcron jobs` reads without a host) is behind.
            tracing::warn!(%error, "could not record the reloaded jobs in the store");
        }
    }

    /// Puts `job` in service, rescheduling it from `now` if its timing changed.
    fn swap(&mut self, job: LoadedJob, now: chrono::DateTime<chrono::Utc>) {
        let name = job.spec.name.clone();
        let timing =
            |spec: &crate::config::JobSpec| (spec.schedule.as_ref().map(|s| s.to_string()), spec.enabled, spec.jitter);
        let reschedule = match self.jobs.get_mut(&name) {
            Some(slot) => {
                let changed = timing(&slot.spec) != timing(&job.spec);
                slot.declaration = super::cluster::declaration_digest(&job.spec);
                slot.spec = Arc::new(job.spec);
                slot.compiled = job.compiled;
                slot.load_error = None;
                changed
            }
            None => {
                self.jobs.insert(name.clone(), JobSlot::new(job, 0));
                true
            }
        };
        if reschedule {
            self.next_generation += 1;
            self.jobs.get_mut(&name).expect("just put in").generation = self.next_generation;
            self.schedule_next(&name, now);
        }
    }
}
