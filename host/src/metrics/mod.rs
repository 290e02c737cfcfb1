//! Prometheus metrics, served at `/metrics` in the text format 0.0.4 and
//! built on `prometheus-client`, the Prometheus project's crate.
//!
//! [`Metrics`] is an observer on the scheduler (see `events`): counters
//! and histograms move as run lifecycle and host events arrive, never by
//! asking the store. The gauges that mirror the jobs view (queue depth
//! and capacity, next fire, last success, pause) are read from the
//! scheduler's published view at each scrape, in memory (see `view`).
//! Labels are bounded: job names (the declared jobs), triggers, outcomes,
//! route templates and small fixed sets of reasons — never a run id, a
//! raw path or a payload.

mod view;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::watch;

use crate::events::{HostEvent, Observer, RunEvent, Stage};
use crate::record::{RunStatus, Trigger};
use crate::scheduler::JobsView;

/// The `Content-Type` of a scrape.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The `route` label of a request that matched no route: a fixed value,
/// so that probing random paths cannot grow the label set.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Why a trigger is refused (the API's error codes): each is shown from
/// the start, at 0, so that a rate over it never starts from nothing.
const REFUSALS: [&str; 7] = [
    "queue_full",
    "payload_too_large",
    "unknown_job",
    "not_ready",
    "shutting_down",
    "store_unavailable",
    "bad_request",
];

/// Bucket bounds of run durations, in seconds: from a quick guest to the
/// longest timeouts people set.
const DURATION_BUCKETS: [f64; 18] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
/// Bucket bounds of lateness, in seconds: a healthy host starts within
/// milliseconds; jitter and a full `--max-running` add the rest.
const LATENESS_BUCKETS: [f64; 16] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: String,
}

impl JobLabel {
    fn of(job: &str) -> Self {
        JobLabel { job: job.to_owned() }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    job: String,
    trigger: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    status: u16,
}

type Histograms = Family<JobLabel, Histogram, fn() -> Histogram>;

/// The host's metrics: a registry and the families the observer moves.
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    duration: Histograms,
    lateness: Histogram,
    in_progress: Family<JobLabel, Gauge>,
    rejected: Family<ReasonLabel, Counter>,
    missed: Family<JobLabel, Counter>,
    network_denied: Family<JobLabel, Counter>,
    leases_lost: Family<JobLabel, Counter>,
    skipped: Family<JobLabel, Counter>,
    store_errors: Counter,
    reloads: Family<ResultLabel, Counter>,
    http: Family<HttpLabels, Counter>,
    /// When each run in flight started, by id: what its duration is
    /// measured from, and whether its end takes it out of `in_progress`.
    started: Mutex<HashMap<i64, DateTime<Utc>>>,
    /// Each job's newest success seen by this host (see `view`).
    last_success: Arc<Mutex<HashMap<String, DateTime<Utc>>>>,
}

impl Metrics {
    /// Metrics of a host whose scheduler publishes `view`.
    pub fn new(view: watch::Receiver<JobsView>) -> Self {
        let mut registry = Registry::with_prefix("wasmcron");
        let runs = Family::default();
        registry.register("runs", "Runs that ended, by job, trigger and outcome", runs.clone());
        let duration: Histograms = Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        registry.register_with_unit("run_duration", "How long guests ran, by job", Unit::Seconds, duration.clone());
        let lateness = Histogram::new(LATENESS_BUCKETS);
        registry.register_with_unit(
            "schedule_lateness",
            "From when a run was due to when its guest started (jitter included; catch-up runs not counted)",
            Unit::Seconds,
            lateness.clone(),
        );
        let in_progress = Family::default();
        registry.register("runs_in_progress", "Guests running now, by job", in_progress.clone());
        let rejected: Family<ReasonLabel, Counter> = Family::default();
        for reason in REFUSALS {
            drop(rejected.get_or_create(&ReasonLabel { reason }));
        }
        registry.register("trigger_rejected", "Triggers refused with nothing recorded, by reason", rejected.clone());
        let missed = Family::default();
        registry.register(
            "missed_fires",
            "Scheduled fires recorded missed (outside the catch-up policy or window), by job",
            missed.clone(),
        );
        let network_denied = Family::default();
        registry.register(
            "network_denied",
            "Outbound destinations a job's runs were refused by its [network] grants (each distinct one once a run), by job",
            network_denied.clone(),
        );
        let leases_lost = Family::default();
        registry.register(
            "leases_lost",
            "Runs this host stopped, their results discarded, because their lease lapsed and another host took them over (a shared store), by job",
            leases_lost.clone(),
        );
        let skipped = Family::default();
        registry.register(
            "skipped_fires",
            "Scheduled fires recorded skipped by overlap = \"skip\" or \"queue\", by job",
            skipped.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Store operations that failed: the scheduler's, and the API's reads",
            store_errors.clone(),
        );
        let reloads: Family<ResultLabel, Counter> = Family::default();
        for result in ["ok", "failed"] {
            drop(reloads.get_or_create(&ResultLabel { result }));
        }
        registry.register(
            "reloads",
            "Reloads of changed job files, by result: ok, or failed (a job's files newly fail to load)",
            reloads.clone(),
        );
        let http = Family::default();
        registry.register("http_requests", "HTTP requests answered, by route template and status", http.clone());
        let build = Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]);
        registry.register("build", "The wasmcron build serving these metrics", build);
        let last_success = Arc::default();
        registry.register_collector(Box::new(view::FromView::new(view, Arc::clone(&last_success))));
        Metrics {
            registry,
            runs,
            duration,
            lateness,
            in_progress,
            rejected,
            missed,
            network_denied,
            leases_lost,
            skipped,
            store_errors,
            reloads,
            http,
            started: Mutex::default(),
            last_success,
        }
    }

    /// Every metric, in the Prometheus text format (`CONTENT_TYPE`).
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// Counts an HTTP request answered: `route` is the matched route's
    /// template, or `UNMATCHED_ROUTE`.
    pub fn http_request(&self, route: &str, status: u16) {
        self.http.get_or_create(&HttpLabels { route: route.to_owned(), status }).inc();
    }

    /// Counts a trigger the API refused before it reached the scheduler
    /// (which counts its own refusals); `reason` is the API's error code.
    pub fn trigger_refused(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    fn started(&self, event: &RunEvent) {
        if let Some(id) = event.run_id {
            self.started.lock().unwrap_or_else(PoisonError::into_inner).insert(id, event.at);
        }
        self.in_progress.get_or_create(&JobLabel::of(&event.job)).inc();
        // A catch-up run is due at a fire the host was down for: its
        // lateness is the downtime, not the scheduler's.
        if event.trigger != Trigger::CatchUp {
            self.lateness.observe(seconds(event.at - event.scheduled_for).max(0.0));
        }
    }

    fn ended(&self, event: &RunEvent, status: RunStatus) {
        let labels = RunLabels { job: event.job.clone(), trigger: event.trigger.as_str(), outcome: status.as_str() };
        self.runs.get_or_create(&labels).inc();
        let started =
            event.run_id.and_then(|id| self.started.lock().unwrap_or_else(PoisonError::into_inner).remove(&id));
        if let Some(started) = started {
            let job = JobLabel::of(&event.job);
            self.in_progress.get_or_create(&job).dec();
            self.duration.get_or_create(&job).observe(seconds(event.at - started).max(0.0));
        }
        if status == RunStatus::Succeeded {
            let mut last = self.last_success.lock().unwrap_or_else(PoisonError::into_inner);
            let newest = last.entry(event.job.clone()).or_insert(event.at);
            *newest = (*newest).max(event.at);
        }
    }
}

impl Observer for Metrics {
    fn observe(&self, event: &RunEvent) {
        match (event.stage, event.status) {
            (Stage::Recorded, Some(RunStatus::Skipped)) => {
                self.skipped.get_or_create(&JobLabel::of(&event.job)).inc();
            }
            (Stage::Started, _) => self.started(event),
            (Stage::Ended, Some(status)) => self.ended(event, status),
            _ => {}
        }
    }

    fn observe_host(&self, event: &HostEvent) {
        match event {
            HostEvent::TriggerRefused { reason } => self.trigger_refused(reason),
            HostEvent::StoreFailed => {
                self.store_errors.inc();
            }
            HostEvent::Reloaded { failed } => {
                let result = if *failed { "failed" } else { "ok" };
                self.reloads.get_or_create(&ResultLabel { result }).inc();
            }
            HostEvent::FiresMissed { job, count } => {
                self.missed.get_or_create(&JobLabel::of(job)).inc_by(*count);
            }
            HostEvent::NetworkDenied { job, count } => {
                self.network_denied.get_or_create(&JobLabel::of(job)).inc_by(*count);
            }
            HostEvent::LeaseLost { job } => {
                self.leases_lost.get_or_create(&JobLabel::of(job)).inc();
            }
        }
    }
}

/// A span of time in seconds, to the microsecond.
fn seconds(span: chrono::TimeDelta) -> f64 {
    span.num_microseconds().map_or(f64::MAX, |us| us as f64 / 1e6)
}

/// An instant as Prometheus timestamps are: seconds since the Unix epoch.
fn timestamp(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1e3
}

/// A float gauge, for timestamps.
type FloatGauge = Gauge<f64, AtomicU64>;
