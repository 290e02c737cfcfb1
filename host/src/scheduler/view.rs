//! The jobs view: every job with its schedule, next fire, last outcome,
//! pause, load error and runs in flight, the queue of triggered runs, and
//! the store's health. The
//! scheduler publishes it over a `watch` channel whenever it changes;
//! `wasmcron jobs` builds the same type from the files and the store when
//! it reads them itself.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::record::{RunRecord, RunStatus, format_time};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobsView {
    /// True while the scheduler fires jobs and takes commands: not before
    /// it has recovered from the last stop, nor once it drains.
    pub ready: bool,
    /// By name.
    pub jobs: Vec<JobView>,
    pub store: StoreHealth,
    /// The queue of triggered runs; none when no scheduler answers for it
    /// (`wasmcron jobs` reading the files and the store itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueHealth>,
}

/// Triggered runs accepted and waiting to start, against `--max-queued`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueHealth {
    /// Accepted (or being written) and not yet started, delayed ones included.
    pub waiting: usize,
    /// The most that may wait: beyond it a trigger is answered 429.
    pub capacity: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobView {
    pub name: String,
    /// The cron expression as written; none for a job that only runs when triggered.
    pub schedule: Option<String>,
    /// The schedule in words.
    pub schedule_text: Option<String>,
    pub timezone: String,
    pub enabled: bool,
    pub paused: bool,
    /// Why, as whoever paused it said.
    pub paused_reason: Option<String>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub next_fire: Option<DateTime<Utc>>,
    pub last_run: Option<LastRun>,
    /// Why the job's newest declaration or module does not load. When a
    /// version is in service (`module_sha256`), that version keeps running.
    pub load_error: Option<String>,
    /// The module version in service, if any.
    pub module_sha256: Option<String>,
    /// Runs of this job started and not yet ended, by id.
    pub in_flight: Vec<i64>,
    /// Runs of this job due and not yet started: waiting for a free slot
    /// under `--max-running`, or held by `overlap = "queue"`.
    pub queued: usize,
    /// The largest trigger payload the job accepts, in bytes (`[limits] payload`).
    pub payload_limit: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastRun {
    pub id: i64,
    pub status: RunStatus,
    #[serde(serialize_with = "rfc3339_opt")]
    pub ended_at: Option<DateTime<Utc>>,
}

impl From<&RunRecord> for LastRun {
    fn from(run: &RunRecord) -> Self {
        LastRun { id: run.id, status: run.status, ended_at: run.ended_at }
    }
}

/// Whether the store takes writes, and what the host holds meanwhile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreHealth {
    /// Why the newest write failed, while writes keep failing.
    pub failing: Option<String>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub failing_since: Option<DateTime<Utc>>,
    /// Outcomes of ended runs held in memory until the store takes them.
    pub held_outcomes: usize,
    /// False while the host has stopped starting runs because it cannot
    /// hold any more outcomes.
    pub starting_runs: bool,
}

impl StoreHealth {
    pub fn healthy() -> Self {
        StoreHealth { starting_runs: true, ..StoreHealth::default() }
    }
}

fn rfc3339_opt<S: serde::Serializer>(time: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => s.serialize_str(&format_time(*time)),
        None => s.serialize_none(),
    }
}

/// How often the jobs view is published at most: runs end by the
/// thousand a second under load, and a dashboard needs no more.
const PUBLISH_EVERY: chrono::TimeDelta = chrono::TimeDelta::milliseconds(50);

impl super::Scheduler {
    /// Publishes the jobs view if it changed, at most every `PUBLISH_EVERY`
    /// (a timer catches up on a change that came too soon).
    pub(super) fn publish_view(&mut self) {
        if !self.view_changed {
            return;
        }
        let now = self.clock.now();
        if let Some(last) = self.view_published
            && now < last + PUBLISH_EVERY
        {
            if !self.view_timer {
                self.view_timer = true;
                self.add_timer(last + PUBLISH_EVERY, super::TimerKind::View);
            }
            return;
        }
        let view = self.jobs_view();
        self.view.send_replace(view);
        self.view_published = Some(now);
        self.view_changed = false;
    }

    /// Publishes the jobs view now, whatever the time since the last.
    pub(super) fn publish_view_now(&mut self) {
        self.view_changed = true;
        self.view_published = None;
        self.publish_view();
    }

    fn jobs_view(&self) -> JobsView {
        let mut in_flight: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
        for (id, run) in &self.in_flight {
            in_flight.entry(run.job.as_str()).or_default().push(*id);
        }
        let mut jobs: Vec<JobView> = self
            .jobs
            .iter()
            .map(|(name, slot)| JobView {
                name: name.clone(),
                schedule: slot.spec.schedule.as_ref().map(|s| s.text().to_owned()),
                schedule_text: slot.spec.schedule.as_ref().map(|s| s.describe()),
                timezone: slot.spec.timezone.to_string(),
                enabled: slot.spec.enabled,
                paused: slot.paused,
                paused_reason: slot.paused_reason.clone().filter(|_| slot.paused),
                next_fire: slot.next_fire.filter(|_| !slot.paused),
                last_run: self.last_runs.get(name).cloned(),
                load_error: slot.load_error.clone(),
                module_sha256: Some(slot.compiled.sha256.clone()),
                in_flight: in_flight.remove(name.as_str()).unwrap_or_default(),
                queued: slot.waiting + usize::from(slot.queued.is_some()),
                payload_limit: slot.spec.limits.payload,
            })
            .collect();
        // Jobs whose files never loaded: only their error to show.
        for (name, error) in self.reload.iter().flat_map(|reload| reload.errors()) {
            if !self.jobs.contains_key(name) {
                jobs.push(JobView { name: name.clone(), load_error: Some(error.clone()), ..JobView::default() });
            }
        }
        jobs.sort_by(|a, b| a.name.cmp(&b.name));
        let queue = QueueHealth { waiting: self.triggered_waiting, capacity: self.config.max_queued };
        JobsView { ready: !self.draining, jobs, store: self.backlog.health(), queue: Some(queue) }
    }
}
