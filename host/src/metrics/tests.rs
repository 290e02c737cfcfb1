//! The observer on synthetic events, read back from the text it serves:
//! what each event moves, and what the jobs view shows.

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

use super::Metrics;
use crate::events::{HostEvent, Observer, RunEvent, Stage};
use crate::record::{RunStatus, Trigger};
use crate::scheduler::{JobView, JobsView, LastRun, QueueHealth};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn event(stage: Stage, job: &str, run_id: i64, trigger: Trigger, at: DateTime<Utc>, status: RunStatus) -> RunEvent {
    RunEvent {
        stage,
        job: job.to_owned(),
        run_id: Some(run_id),
        trigger,
        attempt: 1,
        scheduled_for: at,
        at,
        status: Some(status),
    }
}

/// The value of the sample written exactly `sample` (name and labels,
/// in the order the families declare them), if the scrape has it. The
/// integration tests read scrapes with a real parser; here the text is
/// known to the byte.
fn value(metrics: &Metrics, sample: &str) -> Option<f64> {
    let text = metrics.render();
    let line = text.lines().find(|line| line.strip_prefix(sample).is_some_and(|rest| rest.starts_with(' ')))?;
    Some(line[sample.len()..].trim().parse().unwrap())
}

#[test]
fn a_run_from_start_to_end_moves_its_counters_gauges_and_histograms() {
    let (_view, view) = watch::channel(JobsView::default());
    let metrics = Metrics::new(view);
    let due = at("2026-11-24T09:00:00Z");
    let started = due + TimeDelta::milliseconds(20);
    let ended = started + TimeDelta::milliseconds(1500);
    let mut start = event(Stage::Started, "report", 7, Trigger::Schedule, started, RunStatus::Running);
    start.scheduled_for = due;
    metrics.observe(&start);
    assert_eq!(value(&metrics, r#"wasmcron_runs_in_progress{job="report"}"#), Some(1.0));
    metrics.observe(&event(Stage::Ended, "report", 7, Trigger::Schedule, ended, RunStatus::Failed));

    let runs = r#"wasmcron_runs_total{job="report",trigger="schedule",outcome="failed"}"#;
    assert_eq!(value(&metrics, runs), Some(1.0));
    assert_eq!(value(&metrics, r#"wasmcron_runs_in_progress{job="report"}"#), Some(0.0));
    assert_eq!(value(&metrics, r#"wasmcron_run_duration_seconds_sum{job="report"}"#), Some(1.5));
    assert_eq!(value(&metrics, r#"wasmcron_run_duration_seconds_count{job="report"}"#), Some(1.0));
    assert_eq!(value(&metrics, "wasmcron_schedule_lateness_seconds_sum"), Some(0.02));
    // A failure is no success.
    assert_eq!(value(&metrics, r#"wasmcron_job_last_success_timestamp_seconds{job="report"}"#), None);
}

#[test]
fn runs_that_never_started_count_as_ended_without_a_duration_or_a_gauge() {
    let (_view, view) = watch::channel(JobsView::default());
    let metrics = Metrics::new(view);
    let now = at("2026-11-24T09:00:00Z");
    metrics.observe(&event(Stage::Ended, "report", 3, Trigger::Manual, now, RunStatus::Cancelled));
    metrics.observe(&event(Stage::Recorded, "report", 4, Trigger::Schedule, now, RunStatus::Skipped));
    metrics.observe(&event(Stage::Recorded, "report", 5, Trigger::Schedule, now, RunStatus::Pending));
    let cancelled = r#"wasmcron_runs_total{job="report",trigger="manual",outcome="cancelled"}"#;
    assert_eq!(value(&metrics, cancelled), Some(1.0));
    assert_eq!(value(&metrics, r#"wasmcron_skipped_fires_total{job="report"}"#), Some(1.0));
    assert_eq!(value(&metrics, r#"wasmcron_runs_in_progress{job="report"}"#), None);
    assert_eq!(value(&metrics, r#"wasmcron_run_duration_seconds_count{job="report"}"#), None);
}

#[test]
fn a_catch_up_run_is_not_counted_late() {
    let (_view, view) = watch::channel(JobsView::default());
    let metrics = Metrics::new(view);
    let mut start =
        event(Stage::Started, "nightly", 1, Trigger::CatchUp, at("2026-11-24T09:00:00Z"), RunStatus::Running);
    start.scheduled_for = at("2026-11-24T02:30:00Z");
    metrics.observe(&start);
    assert_eq!(value(&metrics, "wasmcron_schedule_lateness_seconds_count"), Some(0.0));
}

#[test]
fn host_events_move_their_counters() {
    let (_view, view) = watch::channel(JobsView::default());
    let metrics = Metrics::new(view);
    metrics.observe_host(&HostEvent::TriggerRefused { reason: "queue_full" });
    metrics.observe_host(&HostEvent::TriggerRefused { reason: "queue_full" });
    metrics.trigger_refused("payload_too_large");
    metrics.observe_host(&HostEvent::StoreFailed);
    metrics.observe_host(&HostEvent::Reloaded { failed: false });
    metrics.observe_host(&HostEvent::Reloaded { failed: true });
    metrics.observe_host(&HostEvent::FiresMissed { job: "nightly".into(), count: 130 });
    metrics.observe_host(&HostEvent::NetworkDenied { job: "webhook".into(), count: 2 });
    metrics.http_request("/api/v1/runs/{id}", 404);
    assert_eq!(value(&metrics, r#"wasmcron_trigger_rejected_total{reason="queue_full"}"#), Some(2.0));
    assert_eq!(value(&metrics, r#"wasmcron_trigger_rejected_total{reason="payload_too_large"}"#), Some(1.0));
    assert_eq!(value(&metrics, r#"wasmcron_trigger_rejected_total{reason="unknown_job"}"#), Some(0.0));
    assert_eq!(value(&metrics, "wasmcron_store_errors_total"), Some(1.0));
    assert_eq!(value(&metrics, r#"wasmcron_reloads_total{result="ok"}"#), Some(1.0));
    assert_eq!(value(&metrics, r#"wasmcron_reloads_total{result="failed"}"#), Some(1.0));
    assert_eq!(value(&metrics, r#"wasmcron_missed_fires_total{job="nightly"}"#), Some(130.0));
    assert_eq!(value(&metrics, r#"wasmcron_network_denied_total{job="webhook"}"#), Some(2.0));
    let http = r#"wasmcron_http_requests_total{route="/api/v1/runs/{id}",status="404"}"#;
    assert_eq!(value(&metrics, http), Some(1.0));
    let build = value(&metrics, &format!(r#"wasmcron_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION")));
    assert_eq!(build, Some(1.0));
}

#[test]
fn the_view_gauges_follow_the_published_view() {
    let (publish, view) = watch::channel(JobsView::default());
    let metrics = Metrics::new(view);
    assert_eq!(value(&metrics, "wasmcron_queue_depth"), None, "no queue before the scheduler publishes one");
    let loaded = |name: &str| JobView { name: name.into(), module_sha256: Some("ab".into()), ..JobView::default() };
    let daily = JobView {
        next_fire: Some(at("2026-11-25T02:30:00Z")),
        last_run: Some(LastRun { id: 9, status: RunStatus::Succeeded, ended_at: Some(at("2026-11-24T02:30:01Z")) }),
        ..loaded("daily")
    };
    let held = JobView { paused: true, ..loaded("held") };
    let broken = JobView { name: "broken".into(), load_error: Some("bad".into()), ..JobView::default() };
    publish.send_replace(JobsView {
        ready: true,
        jobs: vec![broken, daily, held],
        queue: Some(QueueHealth { waiting: 3, capacity: 10 }),
        ..JobsView::default()
    });
    assert_eq!(value(&metrics, "wasmcron_queue_depth"), Some(3.0));
    assert_eq!(value(&metrics, "wasmcron_queue_capacity"), Some(10.0));
    let next = value(&metrics, r#"wasmcron_job_next_fire_timestamp_seconds{job="daily"}"#);
    assert_eq!(next, Some(at("2026-11-25T02:30:00Z").timestamp() as f64));
    assert_eq!(value(&metrics, r#"wasmcron_job_next_fire_timestamp_seconds{job="held"}"#), None);
    let success = value(&metrics, r#"wasmcron_job_last_success_timestamp_seconds{job="daily"}"#);
    assert_eq!(success, Some(at("2026-11-24T02:30:01Z").timestamp() as f64), "the recorded success, from the view");
    assert_eq!(value(&metrics, r#"wasmcron_job_paused{job="held"}"#), Some(1.0));
    assert_eq!(value(&metrics, r#"wasmcron_job_paused{job="daily"}"#), Some(0.0));
    assert_eq!(value(&metrics, r#"wasmcron_job_paused{job="broken"}"#), None, "a job that never loaded");

    // A newer success seen as an event wins over an older one in the view;
    // and a job gone from the view takes its gauges with it.
    let later = at("2026-11-24T10:00:00Z");
    metrics.observe(&event(Stage::Ended, "held", 11, Trigger::Manual, later, RunStatus::Succeeded));
    let success = value(&metrics, r#"wasmcron_job_last_success_timestamp_seconds{job="held"}"#);
    assert_eq!(success, Some(later.timestamp() as f64));
    publish.send_replace(JobsView { ready: true, jobs: vec![loaded("daily")], ..JobsView::default() });
    assert_eq!(value(&metrics, r#"wasmcron_job_paused{job="held"}"#), None);
    assert_eq!(value(&metrics, r#"wasmcron_job_last_success_timestamp_seconds{job="held"}"#), None);
}

#[test]
fn every_metric_the_docs_name_is_one_the_host_serves() {
    let (publish, view) = watch::channel(JobsView::default());
    let metrics = Metrics::new(view);
    // Something in every family: a scheduled run, a skipped fire, host events, the view.
    let due = at("2026-11-24T02:30:00Z");
    for (stage, status) in [(Stage::Started, RunStatus::Running), (Stage::Ended, RunStatus::Succeeded)] {
        metrics.observe(&event(stage, "daily", 1, Trigger::Schedule, due, status));
    }
    metrics.observe(&event(Stage::Recorded, "daily", 2, Trigger::Schedule, due, RunStatus::Skipped));
    metrics.observe_host(&HostEvent::TriggerRefused { reason: "queue_full" });
    metrics.observe_host(&HostEvent::StoreFailed);
    metrics.observe_host(&HostEvent::Reloaded { failed: false });
    metrics.observe_host(&HostEvent::FiresMissed { job: "daily".into(), count: 1 });
    metrics.observe_host(&HostEvent::NetworkDenied { job: "daily".into(), count: 1 });
    metrics.observe_host(&HostEvent::LeaseLost { job: "daily".into() });
    metrics.http_request("/api/v1/jobs", 200);
    let daily =
        JobView { name: "daily".into(), module_sha256: Some("ab".into()), next_fire: Some(due), ..JobView::default() };
    publish.send_replace(JobsView {
        ready: true,
        jobs: vec![daily],
        queue: Some(QueueHealth { waiting: 0, capacity: 10 }),
        ..JobsView::default()
    });
    let served = metrics.render();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for doc in ["README.md", "docs/operations.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        // Metric names are `wasmcron_` and two words or more (`wasmcron_sdk` is the crate).
        let named = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("wasmcron_") && w.matches('_').count() >= 2);
        for name in named {
            let found = served.lines().any(|line| {
                line.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' ']) || rest.starts_with("_bucket"))
            });
            assert!(found, "{doc} names {name}, which the host does not serve:\n{served}");
        }
    }
}
