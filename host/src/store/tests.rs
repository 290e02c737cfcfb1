//! Store tests on a real SQLite file in a temporary folder.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use rusqlite::Connection;

use super::*;
use crate::record::{RunStatus, Trigger};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn new_run(job: &str, status: RunStatus, scheduled_for: DateTime<Utc>) -> NewRun<'_> {
    NewRun::new(job, status, Trigger::Schedule, scheduled_for)
}

fn finished(status: RunStatus, ended_at: DateTime<Utc>) -> Finished {
    Finished {
        status,
        ended_at,
        exit_code: Some(3),
        error: Some("exited with code 3".into()),
        fuel_used: Some(42),
        stdout: b"out".to_vec(),
        stderr: b"err".to_vec(),
        output_dropped: 0,
    }
}

#[test]
fn a_run_goes_pending_running_finished_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state")).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    let now = at("2026-11-24T10:00:00Z");
    let id = store.insert_run(&NewRun { payload: b"{\"n\":1}", ..new_run("report", RunStatus::Pending, now) }).unwrap();
    assert_eq!(
        store.pending_runs().unwrap(),
        [PendingRun {
            id,
            job: "report".into(),
            trigger: Trigger::Schedule,
            attempt: 1,
            scheduled_for: now,
            payload: b"{\"n\":1}".to_vec()
        }]
    );
    store.start_run(id, now, "abc").unwrap();
    assert!(store.pending_runs().unwrap().is_empty());
    assert_eq!(store.run(id).unwrap().unwrap().status, RunStatus::Running);
    store.finish_run(id, &finished(RunStatus::Failed, now)).unwrap();
    drop(store);

    let store = Store::open(&dir.path().join("state")).unwrap();
    let run = store.run(id).unwrap().unwrap();
    assert_eq!((run.status, run.exit_code, run.fuel_used), (RunStatus::Failed, Some(3), Some(42)));
    assert_eq!((run.stdout.as_slice(), run.module_sha256.as_deref()), (b"out".as_slice(), Some("abc")));
    let filter = |job: &str, status| RunFilter { job: Some(job.into()), status, limit: 10 };
    assert_eq!(store.runs(&filter("report", None)).unwrap().len(), 1);
    assert_eq!(store.runs(&filter("report", Some(RunStatus::Succeeded))).unwrap().len(), 0);
    assert!(store.runs(&filter("other", None)).unwrap().is_empty());
    assert_eq!(store.last_outcomes().unwrap()[0].id, id);
}

#[test]
fn running_runs_are_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = at("2026-11-24T10:00:00Z");
    let running = store.insert_run(&NewRun { started_at: Some(now), ..new_run("a", RunStatus::Running, now) }).unwrap();
    let pending = store.insert_run(&new_run("a", RunStatus::Pending, now)).unwrap();
    let abandoned = store.abandon_running(now).unwrap();
    assert_eq!(abandoned.len(), 1);
    assert_eq!((abandoned[0].id, abandoned[0].status), (running, RunStatus::Abandoned));
    assert_eq!(store.pending_runs().unwrap()[0].id, pending, "pending runs stay pending");
}

#[test]
fn job_state_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.job_state("a").unwrap(), JobState::default());
    store.set_last_fire("a", at("2026-11-24T10:00:00Z")).unwrap();
    store.set_paused("a", true).unwrap();
    store.set_paused("b", true).unwrap();
    let state = store.job_state("a").unwrap();
    assert_eq!((state.last_fire, state.paused), (Some(at("2026-11-24T10:00:00Z")), true));
    assert_eq!(store.job_states().unwrap().len(), 2);

    store.set_load_error("a", "a.toml: schedule \"x\": bad").unwrap();
    assert_eq!(store.job_state("a").unwrap().load_error.as_deref(), Some("a.toml: schedule \"x\": bad"));
    store.set_loaded("a", "abc", at("2026-11-24T11:00:00Z")).unwrap();
    let state = store.job_state("a").unwrap();
    assert_eq!((state.module_sha256.as_deref(), state.load_error), (Some("abc"), None), "a good load clears the error");
    assert!(state.paused, "and keeps the pause");
}

#[test]
fn prune_keeps_open_runs_and_failures_longer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = at("2026-11-24T10:00:00Z");
    let days_ago = |d: i64| now - ChronoDuration::days(d);
    let add = |status, when| {
        let id = store.insert_run(&new_run("a", RunStatus::Running, when)).unwrap();
        store.finish_run(id, &finished(status, when)).unwrap();
        id
    };
    let old_success = add(RunStatus::Succeeded, days_ago(40));
    let old_failure = add(RunStatus::Failed, days_ago(40));
    let ancient_failure = add(RunStatus::Failed, days_ago(100));
    let old_pending = store.insert_run(&new_run("a", RunStatus::Pending, days_ago(100))).unwrap();
    let recent: Vec<i64> = (0..5).map(|_| add(RunStatus::Succeeded, days_ago(1))).collect();

    let retention = Retention { max_count: 4, ..Retention::default() };
    store.prune(&retention, now).unwrap();
    let exists = |id| store.run(id).unwrap().is_some();
    assert!(!exists(old_success), "a 40-day-old success is past 30 days");
    assert!(!exists(ancient_failure), "a 100-day-old failure is past 90 days");
    assert!(exists(old_pending), "open runs are never pruned");
    // Count: the newest 4 finished runs stay; the 40-day-old failure is the 5th newest.
    assert!(!exists(old_failure));
    assert!(recent[1..].iter().all(|&id| exists(id)));
    assert!(!exists(recent[0]));
}

#[tokio::test]
async fn handle_commits_before_answering_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (handle, thread) = StoreHandle::spawn(Store::open(dir.path()).unwrap());
    let now = at("2026-11-24T10:00:00Z");
    let calls = (0..200).map(|_| {
        let handle = handle.clone();
        tokio::spawn(async move { handle.call(move |s| s.insert_run(&new_run("a", RunStatus::Pending, now))).await })
    });
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap().unwrap());
    }
    // A second connection, as the CLI would open, sees every answered write.
    let reader = Store::open(dir.path()).unwrap();
    assert_eq!(reader.pending_runs().unwrap().len(), 200);
    drop(handle);
    thread.join().unwrap();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let error = Store::open(dir.path()).err().unwrap().to_string();
    assert!(error.contains("has schema version 99, newer than this wasmcron understands"), "{error}");
}

#[test]
fn concurrent_first_opens_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let openers: Vec<_> = (0..8)
        .map(|_| {
            let (path, barrier) = (dir.path().to_owned(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                Store::open(&path).map(|store| store.schema_version().unwrap())
            })
        })
        .collect();
    for opener in openers {
        assert_eq!(opener.join().unwrap().unwrap(), MIGRATIONS.len() as i64);
    }
}
