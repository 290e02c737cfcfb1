//! Scheduling semantics in virtual time: the real scheduler, store and
//! sandbox run on a paused tokio clock, so minutes of schedule take
//! milliseconds. Guests sleep in `poll_oneoff`, which waits on tokio's
//! clock, so "a run that takes 90 s" is exact and instant.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use wasmcron::clock::Clock;
use wasmcron::events::Observer;
use wasmcron::record::{RunRecord, RunStatus, Trigger};
use wasmcron::registry::Registry;
use wasmcron::runtime::Runtime;
use wasmcron::scheduler::{Handle, Scheduler, SchedulerConfig};
use wasmcron::store::{NewRun, RunQuery, Store, StoreUrl};

use crate::support::{Sandbox, sleeper};

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// Midnight: `@every 60s` fires at 00:01:00, 00:02:00, …
pub(crate) const ORIGIN: &str = "2026-11-24T00:00:00Z";

pub(crate) const FAIL: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 3))))"#;

/// A host in virtual time: its jobs folder and state, run on demand.
pub(crate) struct World {
    pub sandbox: Sandbox,
    pub config: SchedulerConfig,
}

impl World {
    pub fn new() -> Self {
        World {
            sandbox: Sandbox::new(),
            config: SchedulerConfig { grace: Duration::from_secs(15), ..Default::default() },
        }
    }

    pub fn job(&self, name: &str, wat: &str, toml: &str) -> &Self {
        std::fs::write(self.sandbox.jobs().join(format!("{name}.wat")), wat).unwrap();
        self.sandbox.declare(name, toml);
        self
    }

    /// The store, opened as the host opens it (on the test's runtime).
    pub async fn store(&self) -> Arc<dyn Store> {
        StoreUrl::resolve(None, &self.sandbox.state()).unwrap().open().await.unwrap()
    }

    /// Runs the host from `origin` for `how_long` of virtual time, then shuts it down.
    pub async fn run(&self, origin: &str, how_long: Duration) {
        self.drive(origin, how_long, self.store().await, Vec::new(), async |_| {}).await;
    }

    /// Runs the host on `store` from `origin` for `how_long` of virtual
    /// time, with `observers`, while `driver` uses its handle; returns
    /// what `driver` returned once the host has shut down.
    pub async fn drive<T>(
        &self,
        origin: &str,
        how_long: Duration,
        store: Arc<dyn Store>,
        observers: Vec<Arc<dyn Observer>>,
        driver: impl AsyncFnOnce(Handle) -> T,
    ) -> T {
        // The store's work runs on the blocking pool, which holds the
        // paused clock still meanwhile: the store takes no virtual time.
        self.drive_on(Clock::starting_at(at(origin)), how_long, store, observers, driver).await
    }

    /// As [`World::drive`], on `clock` (which the driver may make jump).
    pub async fn drive_on<T>(
        &self,
        clock: Clock,
        how_long: Duration,
        store: Arc<dyn Store>,
        observers: Vec<Arc<dyn Observer>>,
        driver: impl AsyncFnOnce(Handle) -> T,
    ) -> T {
        let runtime = Arc::new(Runtime::new().unwrap());
        let registry = Registry::load(&runtime, &self.sandbox.jobs(), None).unwrap();
        assert!(registry.errors.is_empty(), "{:?}", registry.errors.first().map(|e| e.to_string()));
        let (scheduler, handle) = Scheduler::new(runtime, store, clock, self.config.clone(), registry.jobs);
        let scheduler = scheduler.with_observers(observers);
        let (ran, driven) = tokio::join!(scheduler.run(tokio::time::sleep(how_long)), driver(handle));
        ran.unwrap();
        driven
    }

    /// All runs of `job`, oldest first.
    pub async fn runs(&self, job: &str) -> Vec<RunRecord> {
        let query = RunQuery { job: Some(job.into()), limit: 10_000, ..RunQuery::default() };
        let mut runs = self.store().await.runs(query).await.unwrap();
        runs.reverse();
        runs
    }
}

/// (minute:second of scheduled_for, status) of each run, oldest first.
fn timeline(runs: &[RunRecord]) -> Vec<(String, RunStatus)> {
    runs.iter().map(|r| (r.scheduled_for.format("%H:%M:%S").to_string(), r.status)).collect()
}

fn line(entries: &[(&str, RunStatus)]) -> Vec<(String, RunStatus)> {
    entries.iter().map(|(t, s)| (t.to_string(), *s)).collect()
}

use RunStatus::*;

#[tokio::test(start_paused = true)]
async fn overlap_skip_records_the_skipped_fire() {
    let world = World::new();
    world.job("slow", &sleeper(90), "schedule = \"@every 60s\"\noverlap = \"skip\"");
    world.run(ORIGIN, Duration::from_secs(290)).await;
    assert_eq!(
        timeline(&world.runs("slow").await),
        line(&[("00:01:00", Succeeded), ("00:02:00", Skipped), ("00:03:00", Succeeded), ("00:04:00", Skipped)])
    );
    let skipped = &world.runs("slow").await[1];
    assert!(skipped.error.as_deref().unwrap().contains("overlap = \"skip\""));
}

#[tokio::test(start_paused = true)]
async fn overlap_queue_holds_one_and_skips_the_rest() {
    let world = World::new();
    world.job("slow", &sleeper(150), "schedule = \"@every 60s\"\noverlap = \"queue\"");
    world.run(ORIGIN, Duration::from_secs(370)).await;
    let runs = world.runs("slow").await;
    assert_eq!(
        timeline(&runs)[..3],
        line(&[("00:01:00", Succeeded), ("00:02:00", Succeeded), ("00:03:00", Skipped)])[..]
    );
    // Each queued run starts when the one before it ends (150 s later), not at its own fire.
    assert_eq!(runs[1].started_at, Some(at("2026-11-24T00:03:30Z")));
    assert!(runs[2].error.as_deref().unwrap().contains("already queued"));
    assert_eq!(
        (runs[3].scheduled_for, runs[3].started_at),
        (at("2026-11-24T00:04:00Z"), Some(at("2026-11-24T00:06:00Z")))
    );
}

#[tokio::test(start_paused = true)]
async fn overlap_allow_runs_side_by_side() {
    let world = World::new();
    world.job("slow", &sleeper(90), "schedule = \"@every 60s\"\noverlap = \"allow\"");
    world.run(ORIGIN, Duration::from_secs(230)).await;
    let runs = world.runs("slow").await;
    assert_eq!(timeline(&runs)[..2], line(&[("00:01:00", Succeeded), ("00:02:00", Succeeded)])[..]);
    assert!(runs[1].started_at.unwrap() < runs[0].ended_at.unwrap(), "the second started while the first ran");
}

#[tokio::test(start_paused = true)]
async fn overlap_replace_cancels_the_running_one() {
    let world = World::new();
    world.job("slow", &sleeper(90), "schedule = \"@every 60s\"\noverlap = \"replace\"");
    world.run(ORIGIN, Duration::from_secs(190)).await;
    let runs = world.runs("slow").await;
    assert_eq!(timeline(&runs)[..2], line(&[("00:01:00", Cancelled), ("00:02:00", Cancelled)])[..]);
    assert_eq!(runs[0].ended_at, Some(at("2026-11-24T00:02:00Z")), "cancelled at the next fire");
    assert_eq!(runs[2].scheduled_for, at("2026-11-24T00:03:00Z"));
}

/// Down from 19:30 to 00:30 with an hourly job: fires at 20:00 … 00:00
/// were missed; the 3-hour window reaches back to 21:30.
async fn catch_up_after_downtime(mode: &str) -> Vec<(String, RunStatus, Trigger)> {
    let world = World::new();
    world.job(
        "hourly",
        &sleeper(1),
        &format!("schedule = \"0 * * * *\"\ncatch_up = \"{mode}\"\ncatch_up_window = \"3h\""),
    );
    world.store().await.set_last_fire("hourly".into(), at("2026-11-23T19:30:00Z")).await.unwrap();
    world.run("2026-11-24T00:30:00Z", Duration::from_secs(60)).await;
    world
        .runs("hourly")
        .await
        .iter()
        .map(|r| (r.scheduled_for.format("%H:%M").to_string(), r.status, r.trigger))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn catch_up_none_records_every_fire_missed() {
    let runs = catch_up_after_downtime("none").await;
    let expected: Vec<_> = ["20:00", "21:00", "22:00", "23:00", "00:00"]
        .iter()
        .map(|t| (t.to_string(), Missed, Trigger::Schedule))
        .collect();
    assert_eq!(runs, expected);
}

#[tokio::test(start_paused = true)]
async fn catch_up_once_runs_the_newest_in_the_window() {
    let runs = catch_up_after_downtime("once").await;
    let mut expected: Vec<_> =
        ["20:00", "21:00", "22:00", "23:00"].iter().map(|t| (t.to_string(), Missed, Trigger::Schedule)).collect();
    expected.push(("00:00".into(), Succeeded, Trigger::CatchUp));
    assert_eq!(runs, expected);
}

#[tokio::test(start_paused = true)]
async fn catch_up_all_runs_each_in_the_window_in_order() {
    let runs = catch_up_after_downtime("all").await;
    let mut expected: Vec<_> = ["20:00", "21:00"].iter().map(|t| (t.to_string(), Missed, Trigger::Schedule)).collect();
    expected.extend(["22:00", "23:00", "00:00"].iter().map(|t| (t.to_string(), Succeeded, Trigger::CatchUp)));
    assert_eq!(runs, expected);
}

#[tokio::test(start_paused = true)]
async fn a_first_start_catches_nothing_up() {
    let world = World::new();
    world.job("hourly", &sleeper(1), "schedule = \"0 * * * *\"\ncatch_up = \"all\"");
    world.run("2026-11-24T00:30:00Z", Duration::from_secs(60)).await;
    assert!(world.runs("hourly").await.is_empty());
    assert_eq!(world.store().await.job_states().await.unwrap()["hourly"].last_fire, Some(at("2026-11-24T00:30:00Z")));
}

/// Start-up catches every job up at once (one transaction): each by its
/// own policy, paused and never-fired jobs left alone but marked.
#[tokio::test(start_paused = true)]
async fn catching_up_many_jobs_applies_each_ones_policy() {
    let world = World::new();
    for (name, mode) in [("all", "all"), ("none", "none"), ("paused", "all"), ("fresh", "all")] {
        world.job(
            name,
            &sleeper(1),
            &format!("schedule = \"0 * * * *\"\ncatch_up = \"{mode}\"\ncatch_up_window = \"3h\""),
        );
    }
    let store = world.store().await;
    for name in ["all", "none", "paused"] {
        store.set_last_fire(name.into(), at("2026-11-23T21:30:00Z")).await.unwrap();
    }
    store.set_paused("paused".into(), true, None).await.unwrap();
    drop(store);
    world.run("2026-11-24T00:30:00Z", Duration::from_secs(60)).await;

    let hours = async |job: &str| -> Vec<(String, RunStatus, Trigger)> {
        world
            .runs(job)
            .await
            .iter()
            .map(|r| (r.scheduled_for.format("%H:%M").to_string(), r.status, r.trigger))
            .collect()
    };
    let each = |times: &[&str], status, trigger| -> Vec<(String, RunStatus, Trigger)> {
        times.iter().map(|t| (t.to_string(), status, trigger)).collect()
    };
    assert_eq!(hours("all").await, each(&["22:00", "23:00", "00:00"], Succeeded, Trigger::CatchUp));
    assert_eq!(hours("none").await, each(&["22:00", "23:00", "00:00"], Missed, Trigger::Schedule));
    assert!(hours("paused").await.is_empty());
    assert!(hours("fresh").await.is_empty());
    // Dealt with up to the newest missed fire, or (paused, never fired) up to the start.
    let states = world.store().await.job_states().await.unwrap();
    for (name, last) in [("all", "00:00"), ("none", "00:00"), ("paused", "00:30"), ("fresh", "00:30")] {
        let expected = at(&format!("2026-11-24T{last}:00Z"));
        assert_eq!(states[name].last_fire, Some(expected), "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_and_count_attempts() {
    let world = World::new();
    world.job(
        "flaky",
        FAIL,
        "schedule = \"0 * * * *\"\n[retry]\nattempts = 3\nbackoff = \"10s\"\nmax_backoff = \"1m\"",
    );
    world.run("2026-11-24T00:59:00Z", Duration::from_secs(300)).await;
    let runs = world.runs("flaky").await;
    let summary: Vec<_> = runs.iter().map(|r| (r.attempt, r.trigger, r.status)).collect();
    assert_eq!(summary, [(1, Trigger::Schedule, Failed), (2, Trigger::Retry, Failed), (3, Trigger::Retry, Failed)]);
    // Equal jitter: the n-th delay is within [b·2^(n-1)/2, b·2^(n-1)].
    for (run, (low, high)) in runs[1..].iter().zip([(5, 10), (10, 20)]) {
        let previous_end = runs[run.attempt as usize - 2].ended_at.unwrap();
        let waited = (run.scheduled_for - previous_end).num_milliseconds();
        assert!((low * 1000..=high * 1000).contains(&waited), "attempt {}: waited {waited} ms", run.attempt);
    }
}

#[tokio::test(start_paused = true)]
async fn no_retry_starts_after_the_next_fire_has_come() {
    let world = World::new();
    // Every minute; the second retry would wait at least 50 s, past the next fire.
    world.job(
        "flaky",
        FAIL,
        "schedule = \"@every 60s\"\n[retry]\nattempts = 5\nbackoff = \"50s\"\nmax_backoff = \"10m\"",
    );
    world.run(ORIGIN, Duration::from_secs(100)).await;
    let attempts: Vec<u32> = world.runs("flaky").await.iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [1, 2], "the third attempt would start after 00:02:00");
}

#[tokio::test(start_paused = true)]
async fn abandoned_runs_are_retried_and_pending_ones_resumed() {
    let world = World::new();
    world.job("work", &sleeper(1), "[retry]\nattempts = 2");
    let store = world.store().await;
    let insert = async |status, attempt| {
        let run = NewRun { status, attempt, ..NewRun::pending("work", Trigger::Manual, at("2026-11-23T23:00:00Z")) };
        store.insert_runs(vec![run]).await.unwrap()[0]
    };
    let crashed = insert(Running, 1).await;
    let crashed_last_try = insert(Running, 2).await;
    let queued = insert(Pending, 1).await;
    world.run(ORIGIN, Duration::from_secs(30)).await;
    let runs = world.runs("work").await;
    let by_id = |id| runs.iter().find(|r| r.id == id).unwrap();
    assert_eq!(by_id(crashed).status, Abandoned);
    assert_eq!(by_id(crashed_last_try).status, Abandoned);
    assert_eq!(by_id(queued).status, Succeeded, "a pending run survives the restart and runs");
    let retries: Vec<_> = runs.iter().filter(|r| r.trigger == Trigger::Retry).collect();
    assert_eq!(retries.len(), 1, "only the run with attempts left is retried");
    assert_eq!((retries[0].attempt, retries[0].status), (2, Succeeded));
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_the_grace_period_then_cancels_and_keeps_pending_runs() {
    let mut world = World::new();
    world.config.max_running = 1;
    world.job("long", &sleeper(3600), "schedule = \"@every 60s\"\noverlap = \"allow\"");
    // Shut down at 00:02:30: the 00:01 run is going, the 00:02 run waits for a slot.
    world.run(ORIGIN, Duration::from_secs(150)).await;
    let runs = world.runs("long").await;
    assert_eq!(timeline(&runs), line(&[("00:01:00", Cancelled), ("00:02:00", Pending)]));
    assert_eq!(runs[0].ended_at, Some(at("2026-11-24T00:02:45Z")), "cancelled when the 15 s grace ran out");
}

#[tokio::test(start_paused = true)]
async fn a_paused_job_does_not_fire() {
    let world = World::new();
    world.job("quiet", &sleeper(1), "schedule = \"@every 60s\"");
    world.job("loud", &sleeper(1), "schedule = \"@every 60s\"");
    world.store().await.set_paused("quiet".into(), true, None).await.unwrap();
    world.run(ORIGIN, Duration::from_secs(130)).await;
    assert!(world.runs("quiet").await.is_empty());
    assert_eq!(world.runs("loud").await.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_each_fire_within_its_bound() {
    let world = World::new();
    world.job("spread", &sleeper(0), "schedule = \"@every 60s\"\njitter = \"30s\"");
    world.run(ORIGIN, Duration::from_secs(20 * 60 + 45)).await;
    let runs = world.runs("spread").await;
    assert_eq!(runs.len(), 20);
    let delays: Vec<i64> = runs.iter().map(|r| (r.started_at.unwrap() - r.scheduled_for).num_milliseconds()).collect();
    assert!(delays.iter().all(|d| (0..30_000).contains(d)), "{delays:?}");
    assert!(delays.iter().any(|d| *d > 1_000), "jitter was applied: {delays:?}");
    assert!(runs.iter().all(|r| r.scheduled_for.timestamp() % 60 == 0), "the record keeps the nominal fire time");
}
