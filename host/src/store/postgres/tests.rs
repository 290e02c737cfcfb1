//! What only the PostgreSQL backend has, on a fresh database of the test
//! server: its schema under several openers, and several hosts sharing one
//! database — racing the same fires and keys, one host's run rescued from
//! under it, wake-ups across hosts, connections lost under it. (What the
//! `Store` interface promises is the store suite's, run on both backends.)

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use wasmcron_test_pg::{execute, server};

use super::PgStore;
use super::schema::MIGRATIONS;
use crate::record::{RunStatus, Trigger};
use crate::store::suite::{at, finished};
use crate::store::{
    CatchUp, FailureKind, Fire, FireRecorded, NewRun, RunQuery, SharedOverlap, Store, StoreError, StoreUrl,
};

/// Waits for something that must happen; a bound only so that a failure
/// ends the test instead of hanging it, not a claim about speed.
const PATIENCE: Duration = Duration::from_secs(30);

async fn open(url: &str) -> PgStore {
    PgStore::open(url).await.unwrap()
}

fn count(url: &str, sql: &str) -> i64 {
    execute(url, sql).trim().parse().unwrap()
}

fn fire(job: &str, at: chrono::DateTime<Utc>, shared: SharedOverlap) -> Fire {
    Fire { job: job.into(), scheduled_for: at, skipped: None, shared }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_racing_the_same_fires_record_each_once() {
    let url = server().fresh_database();
    let (one, two) = (open(&url).await, open(&url).await);
    let base = at("2026-11-24T10:00:00Z");
    let mut won = [0usize; 2];
    for round in 0..20 {
        let fires: Vec<Fire> = ["b", "a", "c"]
            .iter()
            .flat_map(|job| {
                (0..5).map(move |i| fire(job, base + chrono::TimeDelta::seconds(round * 5 + i), SharedOverlap::Allow))
            })
            .collect();
        let (a, b) = (one.clone(), two.clone());
        let (left, right) = (fires.clone(), fires.clone());
        let first = tokio::spawn(async move { a.record_fires(left, base).await.unwrap() });
        let second = tokio::spawn(async move { b.record_fires(right, base).await.unwrap() });
        let (first, second) = (first.await.unwrap(), second.await.unwrap());
        for (i, (x, y)) in first.iter().zip(&second).enumerate() {
            match (x, y) {
                (FireRecorded::Run(_), FireRecorded::Taken) => won[0] += 1,
                (FireRecorded::Taken, FireRecorded::Run(_)) => won[1] += 1,
                other => panic!("fire {i} of round {round} ({:?}): {other:?}", fires[i]),
            }
        }
    }
    assert_eq!(won[0] + won[1], 300);
    let rows = count(&url, "SELECT count(*) FROM runs");
    let distinct = count(&url, "SELECT count(DISTINCT (job, scheduled_for)) FROM runs WHERE fire");
    assert_eq!((rows, distinct), (300, 300), "one row per fire");
    let states = one.job_states().await.unwrap();
    assert_eq!(states["a"].last_fire, Some(base + chrono::TimeDelta::seconds(99)), "the newest fire");
}

#[tokio::test]
async fn overlap_verdicts_see_the_runs_of_every_host() {
    let url = server().fresh_database();
    let (one, two) = (open(&url).await, open(&url).await);
    let t0 = Utc::now() - chrono::TimeDelta::minutes(5);
    let later = |m| t0 + chrono::TimeDelta::minutes(m);
    // Host one's fire waits (due, pending); host two's next fires meet it.
    let [FireRecorded::Run(waiting)] =
        one.record_fires(vec![fire("j", t0, SharedOverlap::Allow)], t0).await.unwrap()[..]
    else {
        panic!()
    };
    let verdicts = two
        .record_fires(vec![fire("j", later(1), SharedOverlap::Skip), fire("j", later(2), SharedOverlap::Queue)], t0)
        .await
        .unwrap();
    let errors: Vec<Option<String>> = {
        let mut errors = Vec::new();
        for recorded in &verdicts {
            let FireRecorded::Run(id) = recorded else { panic!("{verdicts:?}") };
            let run = two.run(*id).await.unwrap().unwrap();
            assert_eq!(run.status, RunStatus::Skipped);
            errors.push(run.error);
        }
        errors
    };
    assert!(errors[0].as_deref().unwrap().contains("still going on another host (overlap = \"skip\")"), "{errors:?}");
    assert!(errors[1].as_deref().unwrap().contains("already queued"), "{errors:?}");
    // Running (not waiting): `skip` still skips, `queue` lets one wait.
    one.start_run(waiting, t0, "abc".into()).await.unwrap();
    let verdicts = two
        .record_fires(vec![fire("j", later(3), SharedOverlap::Skip), fire("k", later(3), SharedOverlap::Queue)], t0)
        .await
        .unwrap();
    let statuses = {
        let mut statuses = Vec::new();
        for recorded in &verdicts {
            let FireRecorded::Run(id) = recorded else { panic!("{verdicts:?}") };
            statuses.push(two.run(*id).await.unwrap().unwrap().status);
        }
        statuses
    };
    assert_eq!(statuses, [RunStatus::Skipped, RunStatus::Pending]);
    let queued = two.record_fires(vec![fire("j", later(4), SharedOverlap::Queue)], t0).await.unwrap();
    let FireRecorded::Run(queued) = queued[0] else { panic!("{queued:?}") };
    assert_eq!(two.run(queued).await.unwrap().unwrap().status, RunStatus::Pending, "one may wait behind a running one");
}

#[tokio::test]
async fn catch_up_records_only_fires_past_the_watermark_another_host_moved() {
    let url = server().fresh_database();
    let (live, starting) = (open(&url).await, open(&url).await);
    let (t1, t2, t3) = (at("2026-11-24T10:00:00Z"), at("2026-11-24T10:01:00Z"), at("2026-11-24T10:02:00Z"));
    live.set_last_fire("a".into(), at("2026-11-24T09:59:00Z")).await.unwrap();
    // The starting host planned its catch-up from 09:59; meanwhile the live
    // host recorded t1 and t2 itself.
    let recorded = live
        .record_fires(vec![fire("a", t1, SharedOverlap::Allow), fire("a", t2, SharedOverlap::Allow)], t2)
        .await
        .unwrap();
    assert!(recorded.iter().all(|r| matches!(r, FireRecorded::Run(_))), "{recorded:?}");
    let runs = [t1, t2, t3].map(|t| NewRun::pending("a", Trigger::CatchUp, t)).to_vec();
    let pending = starting.record_catch_up(vec![CatchUp { job: "a".into(), runs, last_fire: t3 }]).await.unwrap();
    assert_eq!(pending.iter().map(|p| p.scheduled_for).collect::<Vec<_>>(), [t3]);
    assert_eq!(count(&url, "SELECT count(*) FROM runs WHERE job = 'a'"), 3, "t1, t2 once each, and t3");
    // A second catch-up of the same fires (a host restarting) adds nothing.
    let again = [t3].map(|t| NewRun::pending("a", Trigger::CatchUp, t)).to_vec();
    live.set_last_fire("a".into(), t2).await.unwrap();
    let pending =
        starting.record_catch_up(vec![CatchUp { job: "a".into(), runs: again, last_fire: t3 }]).await.unwrap();
    assert!(pending.is_empty(), "{pending:?}");
    assert_eq!(count(&url, "SELECT count(*) FROM runs WHERE job = 'a'"), 3);
    assert_eq!(live.job_states().await.unwrap()["a"].last_fire, Some(t3));
}

#[tokio::test]
async fn a_run_rescued_from_a_host_is_no_longer_its_to_finish() {
    let url = server().fresh_database();
    let (stale, rescuer) = (open(&url).await, open(&url).await);
    let now = Utc::now();
    let running = |job: &str| NewRun { status: RunStatus::Running, ..NewRun::pending(job, Trigger::Manual, now) };
    let ids = stale.insert_runs(vec![running("lapsed"), running("held"), running("once")]).await.unwrap();
    let (lapsed, held, once) = (ids[0], ids[1], ids[2]);
    // Claimed by `stale` under fence 1: one lease lapsed, one still held.
    let claim = |id: i64, lease: &str| {
        execute(
            &url,
            &format!(
                "UPDATE runs SET host_id = '{}', fence = 1, lease_until = now() + interval '{lease}' WHERE id = {id}",
                stale.host_id
            ),
        );
        stale.fences.lock().unwrap().insert(id, 1);
    };
    claim(lapsed, "-1 second");
    claim(held, "1 hour");
    let recovered = rescuer.recover(now, BTreeMap::from([("lapsed".to_owned(), 2)])).await.unwrap();
    let abandoned: Vec<i64> = recovered.abandoned.iter().map(|r| r.id).collect();
    assert_eq!(abandoned, [lapsed, once], "a lease held by a live host is left alone");
    assert_eq!(recovered.pending.iter().map(|p| (p.job.as_str(), p.attempt)).collect::<Vec<_>>(), [("lapsed", 2)]);

    let outcome = || finished(RunStatus::Succeeded, now);
    for id in [lapsed, once] {
        let error = stale.finish_run(id, outcome()).await.unwrap_err();
        assert!(matches!(error, StoreError::Superseded { id: i } if i == id), "{error}");
        assert_eq!(stale.run(id).await.unwrap().unwrap().status, RunStatus::Abandoned, "the result is discarded");
    }
    stale.finish_run(held, outcome()).await.unwrap();
    assert_eq!(stale.run(held).await.unwrap().unwrap().status, RunStatus::Succeeded);
    assert!(stale.fences.lock().unwrap().is_empty(), "finished runs' fences are forgotten");
    // A newer attempt of the same run (another fence) is not this host's either.
    let retaken = stale.insert_runs(vec![running("retaken")]).await.unwrap()[0];
    claim(retaken, "1 hour");
    execute(&url, &format!("UPDATE runs SET fence = 2 WHERE id = {retaken}"));
    assert!(matches!(stale.finish_run(retaken, outcome()).await, Err(StoreError::Superseded { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_racing_one_idempotency_key_make_one_run() {
    let url = server().fresh_database();
    let stores = [open(&url).await, open(&url).await];
    let now = Utc::now();
    let keyed = NewRun { idempotency_key: Some("k".into()), ..NewRun::pending("a", Trigger::Manual, now) };
    let calls: Vec<_> = (0..24)
        .map(|i| {
            let (store, run) = (stores[i % 2].clone(), keyed.clone());
            tokio::spawn(async move { store.trigger_run(run, now).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    let first = answers.iter().find(|(_, new)| *new).expect("one trigger made the run").0;
    assert_eq!(answers.iter().filter(|(_, new)| *new).count(), 1, "{answers:?}");
    assert!(answers.iter().all(|(id, _)| *id == first), "{answers:?}");
    assert_eq!(count(&url, "SELECT count(*) FROM runs"), 1);
    // Expired, the key is released once and taken by one of the racers.
    let later = now + crate::store::KEY_WINDOW + chrono::TimeDelta::seconds(1);
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let (store, run) = (stores[i % 2].clone(), keyed.clone());
            tokio::spawn(async move { store.trigger_run(run, later).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    assert_eq!(answers.iter().filter(|(_, new)| *new).count(), 1, "{answers:?}");
    assert!(answers.iter().all(|(id, _)| *id != first && *id == answers[0].0), "{answers:?}");
    assert_eq!(count(&url, "SELECT count(*) FROM runs"), 2);
}

#[tokio::test]
async fn another_hosts_trigger_wakes_this_one() {
    let url = server().fresh_database();
    let (idle, busy) = (open(&url).await, open(&url).await);
    let mut wakeups = idle.subscribe_wakeups();
    // The first bump says the LISTEN is in place.
    tokio::time::timeout(PATIENCE, wakeups.wait_for(|n| *n >= 1)).await.unwrap().unwrap();
    let before = *wakeups.borrow_and_update();
    busy.trigger_run(NewRun::pending("a", Trigger::Manual, Utc::now()), Utc::now()).await.unwrap();
    tokio::time::timeout(PATIENCE, wakeups.changed()).await.expect("a wake-up").unwrap();
    assert!(*wakeups.borrow() > before);
    // So do runs inserted by another host (a retry, an enqueued run).
    let before = *wakeups.borrow_and_update();
    busy.insert_runs(vec![NewRun::pending("a", Trigger::Retry, Utc::now())]).await.unwrap();
    tokio::time::timeout(PATIENCE, wakeups.wait_for(|n| *n > before)).await.expect("a wake-up").unwrap();
}

#[tokio::test]
async fn a_terminated_connection_fails_an_operation_at_most_per_pooled_connection_and_the_pool_recovers() {
    let url = server().fresh_database();
    let store = open(&url).await;
    let mut wakeups = store.subscribe_wakeups();
    tokio::time::timeout(PATIENCE, wakeups.wait_for(|n| *n >= 1)).await.unwrap().unwrap();
    let listening = *wakeups.borrow_and_update();
    let job = || "a".to_owned();
    store.kv_set(job(), "k".into(), b"v".to_vec()).await.unwrap();
    let terminated = execute(
        &url,
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t",
    );
    assert!(terminated.trim().parse::<i64>().unwrap() >= 2, "the pool's connection and the LISTEN one: {terminated}");
    // Each dead connection the pool still holds can fail one operation
    // (as `Io`, which the scheduler holds and retries); the first failure
    // drops the idle ones, and then operations go through again.
    let mut failed = 0;
    loop {
        match store.kv_get(job(), "k".into()).await {
            Ok(value) => break assert_eq!(value.as_deref(), Some(b"v".as_slice())),
            Err(error) => assert_eq!(error.kind(), FailureKind::Io, "{error}"),
        }
        failed += 1;
        assert!(failed <= super::POOL_SIZE, "still failing after {failed} operations");
    }
    for _ in 0..3 {
        assert_eq!(
            store.kv_get(job(), "k".into()).await.unwrap().as_deref(),
            Some(b"v".as_slice()),
            "a new connection"
        );
    }
    // The LISTEN connection comes back, and says so (runs may have been missed).
    tokio::time::timeout(PATIENCE, wakeups.wait_for(|n| *n > listening)).await.expect("a re-LISTEN").unwrap();
}

#[tokio::test]
async fn a_server_that_refuses_connections_is_an_io_failure_naming_the_store_without_its_password() {
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://wasmcron:s3cret@127.0.0.1:{port}/wasmcron");
    let error = PgStore::open(&url).await.err().expect("nothing listens there");
    assert_eq!(error.kind(), FailureKind::Io, "{error}");
    let message = error.to_string();
    assert!(message.contains(&format!("postgres://wasmcron@127.0.0.1:{port}/wasmcron")), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
}

#[tokio::test]
async fn reading_a_database_without_the_schema_says_to_start_a_host_first() {
    let url = server().fresh_database();
    let error = StoreUrl::parse(&url).unwrap().open_existing().await.err().expect("no schema there").to_string();
    assert!(error.contains("no wasmcron schema in database wasmcron_test_"), "{error}");
    assert!(error.contains("start a host with --store postgres://"), "{error}");
    drop(open(&url).await);
    let store = StoreUrl::parse(&url).unwrap().open_existing().await.unwrap();
    assert!(store.runs(RunQuery { limit: 1, ..RunQuery::default() }).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let url = server().fresh_database();
    drop(open(&url).await);
    execute(&url, "UPDATE wasmcron_schema SET version = 99");
    let error = PgStore::open(&url).await.err().unwrap().to_string();
    assert!(error.contains("has schema version 99, newer than this wasmcron understands"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_opening_a_new_database_together_migrate_it_once() {
    let url = server().fresh_database();
    let openers: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::open(&url).await.unwrap().schema_version().await.unwrap() })
        })
        .collect();
    for opener in openers {
        assert_eq!(opener.await.unwrap(), MIGRATIONS.len() as i64);
    }
    assert_eq!(count(&url, "SELECT count(*) FROM wasmcron_schema"), 1);
}
