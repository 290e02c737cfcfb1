//! `GET /metrics` end to end: the real binary, runs triggered, failed,
//! scheduled, skipped, missed and abandoned across a kill, reloads, then a
//! scrape read with the Prometheus project's own parser (its Python
//! client's) and, where it is installed, checked by `promtool check
//! metrics`. Counts are held against the state database where it keeps
//! the same facts.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use wasmcron::record::{RunRecord, RunStatus, Trigger};

use crate::api::Api;
use crate::daemon::Host;
use crate::support::{ECHO, Sandbox, all_runs, describe, fixture, guests, sleeper, toml_path, toolchains, wait_for};

/// Reads a scrape on stdin with `prometheus_client.parser` and prints its
/// samples as JSON.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        samples.append({"family": family.name, "type": family.type, "name": sample.name,
                        "labels": sample.labels, "value": sample.value})
print(json.dumps(samples))
"#;

/// One sample of a scrape.
#[derive(Debug)]
struct Sample {
    /// The family's type: counter, gauge, histogram, …
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed.
pub struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// Needs `support::toolchains()` (the Python client) first.
    pub fn parse(text: String) -> Scrape {
        let mut python = Command::new("python3")
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running python3");
        python.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let output = python.wait_with_output().unwrap();
        assert!(output.status.success(), "the Prometheus parser refused the scrape:\n{}\n{text}", describe(&output));
        let parsed: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
        let samples = parsed
            .into_iter()
            .map(|sample| Sample {
                kind: sample["type"].as_str().unwrap().to_owned(),
                name: sample["name"].as_str().unwrap().to_owned(),
                labels: serde_json::from_value(sample["labels"].clone()).unwrap(),
                value: sample["value"].as_f64().unwrap(),
            })
            .collect();
        Scrape { text, samples }
    }

    /// The value of the sample `name` with exactly `labels`, if any.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples.iter().find(|s| s.name == name && s.labels == labels).map(|s| s.value)
    }

    /// `get`, for a sample that must be there.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?} in the scrape:\n{}", self.text))
    }

    /// Checks the scrape with `promtool check metrics` (format and naming
    /// lint), where Debian's prometheus package is installed.
    fn promtool_check(&self) {
        let Ok(mut promtool) = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            eprintln!("promtool is not installed: the scrape is not linted");
            return;
        };
        promtool.stdin.take().unwrap().write_all(self.text.as_bytes()).unwrap();
        let output = promtool.wait_with_output().unwrap();
        assert!(output.status.success(), "promtool check metrics:\n{}\n{}", describe(&output), self.text);
        assert!(output.stdout.is_empty() && output.stderr.is_empty(), "promtool's lint:\n{}", describe(&output));
    }
}

impl Api {
    /// Triggers `job`; the new run's id.
    fn trigger(&self, job: &str, payload: &[u8]) -> i64 {
        let answer = self.post(&format!("/api/v1/jobs/{job}/trigger"), payload);
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
        answer.body["id"].as_i64().unwrap()
    }

    /// Pauses `job`, and waits until the jobs view shows it.
    fn pause(&self, job: &str) {
        let answer = self.post(&format!("/api/v1/jobs/{job}/pause"), b"");
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        wait_for(&format!("{job} paused"), Duration::from_secs(10), || {
            self.get(&format!("/api/v1/jobs/{job}")).body["paused"] == true
        });
    }

    /// The scrape, with the read-only token, as Prometheus asks for it.
    pub fn scrape(&self) -> Scrape {
        let answer = self.call(reqwest::Method::GET, "/metrics", Some(&self.read), Vec::new(), &[]).unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(answer.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
        Scrape::parse(answer.text)
    }
}

fn count(runs: &[RunRecord], job: &str, trigger: Trigger, status: RunStatus) -> usize {
    runs.iter().filter(|r| r.job == job && r.trigger == trigger && r.status == status).count()
}

/// Waits until none of `job`'s runs is pending or running.
fn settled(sandbox: &Sandbox, job: &str) {
    wait_for(&format!("{job}'s runs to end"), Duration::from_secs(30), || {
        all_runs(sandbox)
            .iter()
            .filter(|r| r.job == job)
            .all(|r| !matches!(r.status, RunStatus::Pending | RunStatus::Running))
    });
}

#[test]
fn a_scrape_counts_runs_by_outcome_and_shows_the_jobs_view() {
    toolchains(); // promtool and the Python parser
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("echo.wat"), ECHO).unwrap();
    sandbox.declare("echo", "[limits]\npayload = \"16B\"");
    std::fs::copy(fixture("exit3.wat"), sandbox.jobs().join("bad.wat")).unwrap();
    std::fs::copy(fixture("exit0.wat"), sandbox.jobs().join("tick.wat")).unwrap();
    sandbox.declare("tick", "schedule = \"@every 1s\"");
    // Due next New Year: a next fire to show, and never a run here.
    std::fs::copy(fixture("exit0.wat"), sandbox.jobs().join("yearly.wat")).unwrap();
    sandbox.declare("yearly", "schedule = \"@yearly\"");
    let host = Host::start(&sandbox, &["--max-queued", "50"]);
    let api = Api::ready(&sandbox, &host);

    // No token, no metrics.
    let answer = api.call(reqwest::Method::GET, "/metrics", None, Vec::new(), &[]).unwrap();
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);

    let echoes = [api.trigger("echo", b"secret-payload-1"), api.trigger("echo", b"secret-payload-2")];
    let bad = api.trigger("bad", b"");
    assert_eq!(api.post("/api/v1/jobs/echo/trigger", &[b'x'; 17]).status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(api.post("/api/v1/jobs/nope/trigger", b"").status, StatusCode::NOT_FOUND);
    assert_eq!(api.get("/nope/7").status, StatusCode::NOT_FOUND);
    for id in echoes.iter().chain([&bad]) {
        assert_eq!(api.get(&format!("/api/v1/runs/{id}")).status, StatusCode::OK);
    }
    wait_for("two scheduled runs of tick", Duration::from_secs(20), || {
        count(&all_runs(&sandbox), "tick", Trigger::Schedule, RunStatus::Succeeded) >= 2
    });
    api.pause("tick");
    for job in ["echo", "bad", "tick"] {
        settled(&sandbox, job);
    }

    let scrape = api.scrape();
    scrape.promtool_check();
    let runs = all_runs(&sandbox);
    let ran = |job, trigger: &str, outcome| {
        scrape.value("wasmcron_runs_total", &[("job", job), ("trigger", trigger), ("outcome", outcome)])
    };
    assert_eq!(ran("echo", "manual", "succeeded"), 2.0);
    assert_eq!(ran("bad", "manual", "failed"), 1.0);
    // Every scheduled run the store holds, counted once.
    let ticks = count(&runs, "tick", Trigger::Schedule, RunStatus::Succeeded);
    assert_eq!(ran("tick", "schedule", "succeeded"), ticks as f64);
    for job in ["echo", "bad", "tick"] {
        assert_eq!(scrape.value("wasmcron_runs_in_progress", &[("job", job)]), 0.0, "{job}");
    }
    assert_eq!(scrape.value("wasmcron_run_duration_seconds_count", &[("job", "echo")]), 2.0);
    let lateness = scrape.value("wasmcron_schedule_lateness_seconds_count", &[]);
    assert_eq!(lateness, (ticks + 3) as f64, "each run started, catch-up runs aside");

    // The view's gauges: the pause, no next fire while paused (nor ever
    // for echo), the last success as the store recorded it, the queue.
    assert_eq!(scrape.value("wasmcron_job_paused", &[("job", "tick")]), 1.0);
    assert_eq!(scrape.value("wasmcron_job_paused", &[("job", "echo")]), 0.0);
    assert_eq!(scrape.get("wasmcron_job_next_fire_timestamp_seconds", &[("job", "tick")]), None);
    assert_eq!(scrape.get("wasmcron_job_next_fire_timestamp_seconds", &[("job", "echo")]), None);
    let new_year = chrono::Datelike::year(&chrono::Utc::now()) + 1;
    let new_year = chrono::NaiveDate::from_ymd_opt(new_year, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let next = scrape.value("wasmcron_job_next_fire_timestamp_seconds", &[("job", "yearly")]);
    assert_eq!(next, new_year.timestamp() as f64);
    let last_echo = runs.iter().filter(|r| r.job == "echo").filter_map(|r| r.ended_at).max().unwrap();
    let success = scrape.value("wasmcron_job_last_success_timestamp_seconds", &[("job", "echo")]);
    assert!((success - last_echo.timestamp_millis() as f64 / 1e3).abs() < 0.002, "{success} vs {last_echo}");
    assert_eq!(scrape.get("wasmcron_job_last_success_timestamp_seconds", &[("job", "bad")]), None);
    assert_eq!(scrape.value("wasmcron_queue_depth", &[]), 0.0);
    assert_eq!(scrape.value("wasmcron_queue_capacity", &[]), 50.0);

    // Refusals by reason; HTTP answers by route template, never by raw path.
    assert_eq!(scrape.value("wasmcron_trigger_rejected_total", &[("reason", "payload_too_large")]), 1.0);
    assert_eq!(scrape.value("wasmcron_trigger_rejected_total", &[("reason", "unknown_job")]), 1.0);
    assert_eq!(scrape.value("wasmcron_trigger_rejected_total", &[("reason", "queue_full")]), 0.0);
    let http = |route, status| scrape.get("wasmcron_http_requests_total", &[("route", route), ("status", status)]);
    assert_eq!(http("/api/v1/jobs/{job}/trigger", "202"), Some(3.0));
    assert_eq!(http("/api/v1/jobs/{job}/trigger", "413"), Some(1.0));
    assert_eq!(http("/api/v1/runs/{id}", "200"), Some(3.0));
    assert_eq!(http("/metrics", "401"), Some(1.0));
    assert_eq!(http("unmatched", "404"), Some(1.0));
    let templates: Vec<&str> = wasmcron::api::routes().iter().map(|(_, path, _)| *path).collect();
    for sample in scrape.samples.iter().filter(|s| s.name == "wasmcron_http_requests_total") {
        let route = sample.labels["route"].as_str();
        assert!(route == "unmatched" || templates.contains(&route), "route label {route:?}");
    }

    assert_eq!(scrape.value("wasmcron_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert_eq!(scrape.value("wasmcron_store_errors_total", &[]), 0.0);
    assert_eq!(scrape.value("wasmcron_reloads_total", &[("result", "ok")]), 0.0);
    // No label holds a run id or a payload (`le` and `status` are numbers of their own).
    for id in echoes.iter().chain([&bad]).map(i64::to_string) {
        let labels = scrape.samples.iter().flat_map(|s| s.labels.iter()).filter(|(k, _)| *k != "le" && *k != "status");
        assert!(labels.clone().all(|(_, v)| *v != id), "run {id} as a label");
    }
    assert!(!scrape.text.contains("secret-payload"), "a payload in the scrape");
    let kinds: BTreeMap<&str, &str> = [
        ("wasmcron_runs_total", "counter"),
        ("wasmcron_run_duration_seconds_bucket", "histogram"),
        ("wasmcron_job_paused", "gauge"),
    ]
    .into();
    for (name, kind) in kinds {
        assert!(scrape.samples.iter().any(|s| s.name == name && s.kind == kind), "{name} as a {kind}");
    }
    host.stop();
}

#[test]
fn a_restart_counts_the_runs_it_abandoned_the_fires_it_missed_and_reloads() {
    toolchains();
    let sandbox = Sandbox::new();
    std::fs::copy(fixture("exit0.wat"), sandbox.jobs().join("nightly.wat")).unwrap();
    sandbox.declare("nightly", "schedule = \"@every 1s\"\ncatch_up = \"none\"");
    std::fs::write(sandbox.jobs().join("long.wat"), sleeper(3600)).unwrap();
    sandbox.declare("long", "schedule = \"@every 1s\"\ncatch_up = \"none\"");

    let first = Host::start(&sandbox, &[]);
    wait_for("long running, a fire of it skipped, nightly run", Duration::from_secs(30), || {
        let runs = all_runs(&sandbox);
        count(&runs, "long", Trigger::Schedule, RunStatus::Running) == 1
            && count(&runs, "long", Trigger::Schedule, RunStatus::Skipped) >= 1
            && count(&runs, "nightly", Trigger::Schedule, RunStatus::Succeeded) >= 1
    });
    first.kill();
    let before = all_runs(&sandbox);
    std::thread::sleep(Duration::from_millis(2500));

    let second = Host::start(&sandbox, &["--grace", "1s"]);
    let api = Api::ready(&sandbox, &second);
    wait_for("long running again, skipping fires", Duration::from_secs(30), || {
        let runs = all_runs(&sandbox);
        let skipped = |runs: &[RunRecord]| count(runs, "long", Trigger::Schedule, RunStatus::Skipped);
        count(&runs, "long", Trigger::Schedule, RunStatus::Running) == 1 && skipped(&runs) > skipped(&before)
    });
    // A declaration that does not load, then a new job that does.
    sandbox.declare("broken", "nonsense = 1");
    wait_for("the broken declaration reported", Duration::from_secs(20), || {
        api.get("/api/v1/jobs/broken").body["load_error"].is_string()
    });
    std::fs::copy(fixture("exit0.wat"), sandbox.jobs().join("fresh.wat")).unwrap();
    wait_for("the new job loaded", Duration::from_secs(20), || {
        api.get("/api/v1/jobs/fresh").body["module_sha256"].is_string()
    });
    // No fires from here on: the store's counts are final.
    api.pause("long");
    api.pause("nightly");
    settled(&sandbox, "nightly");

    let scrape = api.scrape();
    scrape.promtool_check();
    let after = all_runs(&sandbox);
    let new =
        |job, status| count(&after, job, Trigger::Schedule, status) - count(&before, job, Trigger::Schedule, status);
    let abandoned = [("job", "long"), ("trigger", "schedule"), ("outcome", "abandoned")];
    assert_eq!(scrape.value("wasmcron_runs_total", &abandoned), 1.0);
    assert_eq!(new("long", RunStatus::Abandoned), 1);
    for job in ["nightly", "long"] {
        // This host's counters start at its start: only what it recorded.
        let missed = new(job, RunStatus::Missed);
        assert!(missed >= 1, "{job}: the downtime missed fires: {after:?}");
        assert_eq!(scrape.value("wasmcron_missed_fires_total", &[("job", job)]), missed as f64, "{job}");
    }
    let skipped = new("long", RunStatus::Skipped);
    assert_eq!(scrape.value("wasmcron_skipped_fires_total", &[("job", "long")]), skipped as f64);
    assert_eq!(scrape.value("wasmcron_runs_in_progress", &[("job", "long")]), 1.0);
    assert!(scrape.value("wasmcron_reloads_total", &[("result", "failed")]) >= 1.0);
    assert!(scrape.value("wasmcron_reloads_total", &[("result", "ok")]) >= 1.0);
    assert_eq!(scrape.value("wasmcron_job_paused", &[("job", "fresh")]), 0.0, "a job loaded by a reload");
    assert_eq!(scrape.get("wasmcron_job_paused", &[("job", "broken")]), None, "a job that never loaded");
    let log = second.stop();
    assert!(log.contains("run abandoned"), "{log}");
}

#[test]
fn destinations_refused_by_the_grants_are_counted_by_job() {
    toolchains();
    let sandbox = Sandbox::new();
    let probe = toml_path(&guests().probe_p2);
    // Two destinations outside the grant, one run each, and the host warns at start.
    sandbox.declare("nosy", &format!("module = {probe}\nargs = [\"http\", \"http://10.255.255.1:81/\"]\n"));
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    let first = api.trigger("nosy", b"");
    let second = api.trigger("nosy", b"");
    settled(&sandbox, "nosy");
    for id in [first, second] {
        let run = api.get(&format!("/api/v1/runs/{id}")).body;
        assert_eq!(run["status"], "failed", "{run}");
        assert!(run["error"].as_str().unwrap().contains("network: denied http://10.255.255.1:81"), "{run}");
    }
    let scrape = api.scrape();
    scrape.promtool_check();
    assert_eq!(scrape.value("wasmcron_network_denied_total", &[("job", "nosy")]), 2.0);
    let log = host.stop();
    assert!(log.contains("imports wasi:http, but") && log.contains("grants no http:// or https://"), "{log}");
}
