//! A failing store, in virtual time: the real SQLite store with its size
//! capped (`PRAGMA max_page_count`, a full disk simulated portably). The
//! host stays up, holds what it cannot write, writes each run's real
//! outcome once the store takes writes again, and catches up the fires it
//! could not record by the job's policy. (`daemon::a_full_filesystem_…`
//! does the same on a real 3 MB filesystem, through the binary.)

use std::sync::Arc;
use std::time::Duration;

use wasmcron::record::{RunStatus::*, Trigger};
use wasmcron::store::sqlite::SqliteStore;
use wasmcron::store::{NewRun, Store};

use tokio::sync::watch;
use wasmcron::metrics::Metrics;
use wasmcron::scheduler::JobsView;

use crate::metrics::Scrape;
use crate::scheduler::{ORIGIN, World, at};
use crate::support::{MEBIBYTE_OUT, sleeper, toolchains};

async fn sqlite(world: &World) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(&world.sandbox.state().join("wasmcron.db")).await.unwrap())
}

/// Fills the capped database until an insert fails for want of room.
async fn fill(store: &SqliteStore) {
    store.cap_pages(Some(store.page_count().await.unwrap())).await.unwrap();
    for payload in [4000, 500, 0] {
        loop {
            let run = NewRun { payload: vec![0; payload], ..NewRun::pending("filler", Trigger::Manual, at(ORIGIN)) };
            match store.insert_runs(vec![run]).await {
                Ok(_) => continue,
                Err(error) if error.is_full() => break,
                Err(error) => panic!("{error}"),
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_outcome_the_store_has_no_room_for_is_written_without_its_output_and_never_abandoned() {
    let world = World::new();
    world.job("big", MEBIBYTE_OUT, "schedule = \"@every 60s\"\n[limits]\noutput = \"2MiB\"");
    let store = sqlite(&world).await;
    let shared: Arc<dyn Store> = store.clone();
    world
        .drive(ORIGIN, Duration::from_secs(250), shared, Vec::new(), async |handle| {
            tokio::time::sleep(Duration::from_secs(1)).await;
            // Room for small rows, none for a mebibyte of output.
            store.cap_pages(Some(store.page_count().await.unwrap() + 8)).await.unwrap();
            tokio::time::sleep(Duration::from_secs(150)).await; // 00:02:31: two runs that did not fit
            store.cap_pages(None).await.unwrap();
            tokio::time::sleep(Duration::from_secs(20)).await;
            assert_eq!(handle.jobs().borrow().store.failing, None, "the episode is over");
        })
        .await;
    let runs = world.runs("big").await;
    let summary: Vec<(String, _, usize)> =
        runs.iter().map(|r| (r.scheduled_for.format("%H:%M").to_string(), r.status, r.stdout.len())).collect();
    assert_eq!(
        summary,
        [
            ("00:01".into(), Succeeded, 0),
            ("00:02".into(), Succeeded, 0),
            ("00:03".into(), Succeeded, 1 << 20),
            ("00:04".into(), Succeeded, 1 << 20)
        ],
        "each run's real outcome; the output of those the store had no room for is dropped"
    );
    for run in &runs[..2] {
        assert_eq!(run.output_dropped, 1 << 20);
        let error = run.error.as_deref().unwrap();
        assert!(error.starts_with("captured output (1048576 bytes) dropped: the store had no room for it"), "{error}");
    }
    // A restart finds nothing left running: nothing is abandoned.
    world.run("2026-11-24T00:05:00Z", Duration::from_secs(1)).await;
    assert!(world.runs("big").await.iter().all(|r| r.status == Succeeded));
}

#[tokio::test(start_paused = true)]
async fn fires_the_store_could_not_record_are_caught_up_by_policy_once_it_recovers() {
    let world = World::new();
    world.job("tick", &sleeper(1), "schedule = \"@every 60s\"\ncatch_up = \"all\"");
    world.job("lossy", &sleeper(1), "schedule = \"@every 60s\"\ncatch_up = \"none\"");
    let store = sqlite(&world).await;
    let shared: Arc<dyn Store> = store.clone();
    // Counted as it happens, by the observer `wasmcron run` attaches.
    let metrics = Arc::new(Metrics::new(watch::channel(JobsView::default()).1));
    world
        .drive(ORIGIN, Duration::from_secs(210), shared, vec![metrics.clone()], async |handle| {
            tokio::time::sleep(Duration::from_secs(1)).await;
            fill(&store).await; // nothing more fits: every fire fails to record
            tokio::time::sleep(Duration::from_secs(150)).await; // 00:02:31
            let health = handle.jobs().borrow().store.clone();
            assert!(health.failing.is_some() && health.starting_runs, "{health:?}");
            store.cap_pages(None).await.unwrap();
        })
        .await;
    let timeline = |runs: Vec<wasmcron::record::RunRecord>| -> Vec<(String, _, _)> {
        runs.iter().map(|r| (r.scheduled_for.format("%H:%M").to_string(), r.trigger, r.status)).collect()
    };
    assert_eq!(
        timeline(world.runs("tick").await),
        [
            ("00:01".into(), Trigger::CatchUp, Succeeded),
            ("00:02".into(), Trigger::CatchUp, Succeeded),
            ("00:03".into(), Trigger::Schedule, Succeeded),
        ],
        "each fire exactly once: caught up (catch_up = \"all\") once the store recovered"
    );
    let lossy = world.runs("lossy").await;
    assert_eq!(
        timeline(lossy.clone()),
        [
            ("00:01".into(), Trigger::Schedule, Missed),
            ("00:02".into(), Trigger::Schedule, Missed),
            ("00:03".into(), Trigger::Schedule, Succeeded)
        ],
    );
    assert!(lossy[0].error.as_deref().unwrap().starts_with("the store was failing at this fire (catch_up = \"none\""));

    toolchains(); // the parser
    let scrape = Scrape::parse(metrics.render());
    assert!(scrape.value("wasmcron_store_errors_total", &[]) >= 2.0, "a fire of each job failed to record");
    assert_eq!(scrape.value("wasmcron_missed_fires_total", &[("job", "lossy")]), 2.0);
    assert_eq!(scrape.get("wasmcron_missed_fires_total", &[("job", "tick")]), None, "tick ran every fire");
    let caught_up = [("job", "tick"), ("trigger", "catch-up"), ("outcome", "succeeded")];
    assert_eq!(scrape.value("wasmcron_runs_total", &caught_up), 2.0);
}
