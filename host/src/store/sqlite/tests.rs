//! The SQLite backend on a real file in a temporary folder, through the
//! `Store` interface (as the host uses it) and, for what only SQLite has
//! (schema versions, migrations, page caps), through its own methods.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use rusqlite::Connection;

use super::schema::MIGRATIONS;
use super::*;
use crate::record::{RunStatus, Trigger};
use crate::store::{DATABASE_FILE, SharedOverlap};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
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

async fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("state").join(DATABASE_FILE)).await.unwrap()
}

async fn insert(store: &SqliteStore, run: NewRun) -> i64 {
    store.insert_runs(vec![run]).await.unwrap()[0]
}

#[tokio::test]
async fn a_run_goes_pending_running_finished_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    assert_eq!(store.schema_version().await.unwrap(), MIGRATIONS.len() as i64);
    let now = at("2026-11-24T10:00:00.123456Z");
    let run = NewRun { payload: b"{\"n\":1}".to_vec(), ..NewRun::pending("report", Trigger::Schedule, now) };
    let id = insert(&store, run.clone()).await;
    let recovered = store.recover(now, BTreeMap::new()).await.unwrap();
    assert_eq!(recovered.pending, [run.into_pending(id)], "times keep their microseconds");
    store.start_run(id, now, "abc".into()).await.unwrap();
    assert_eq!(store.run(id).await.unwrap().unwrap().status, RunStatus::Running);
    store.finish_run(id, finished(RunStatus::Failed, now)).await.unwrap();
    drop(store);

    let store = open(&dir).await;
    let run = store.run(id).await.unwrap().unwrap();
    assert_eq!((run.status, run.exit_code, run.fuel_used), (RunStatus::Failed, Some(3), Some(42)));
    assert_eq!((run.stdout.as_slice(), run.module_sha256.as_deref()), (b"out".as_slice(), Some("abc")));
    let query = |job: &str, status| RunQuery { job: Some(job.into()), status, limit: 10, ..RunQuery::default() };
    assert_eq!(store.runs(query("report", None)).await.unwrap().len(), 1);
    assert!(store.runs(query("report", Some(RunStatus::Succeeded))).await.unwrap().is_empty());
    assert!(store.runs(query("other", None)).await.unwrap().is_empty());
    assert_eq!(store.last_outcomes(vec!["report".into(), "other".into()]).await.unwrap()[0].id, id);
}

#[tokio::test]
async fn queries_filter_by_time_and_trigger_and_page_by_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let base = at("2026-11-24T10:00:00Z");
    let mut ids = Vec::new();
    for minute in 0..10 {
        let trigger = if minute % 2 == 0 { Trigger::Schedule } else { Trigger::Manual };
        ids.push(insert(&store, NewRun::pending("a", trigger, base + ChronoDuration::minutes(minute))).await);
    }
    let page = |before| RunQuery { limit: 4, before, ..RunQuery::default() };
    let first = store.runs(page(None)).await.unwrap();
    assert_eq!(first.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[9], ids[8], ids[7], ids[6]]);
    let second = store.runs(page(Some(first.last().unwrap().id))).await.unwrap();
    assert_eq!(second[0].id, ids[5], "the next page starts just below the cursor");
    let window = RunQuery {
        since: Some(base + ChronoDuration::minutes(2)),
        until: Some(base + ChronoDuration::minutes(6)),
        trigger: Some(Trigger::Manual),
        limit: 100,
        ..RunQuery::default()
    };
    let found: Vec<i64> = store.runs(window).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(found, [ids[5], ids[3]], "minutes 3 and 5: since is inclusive, until exclusive");
}

#[tokio::test]
async fn recovery_abandons_running_runs_and_retries_those_with_attempts_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let now = at("2026-11-24T10:00:00Z");
    let running = |job: &str, attempt| NewRun {
        status: RunStatus::Running,
        attempt,
        started_at: Some(now),
        payload: b"p".to_vec(),
        ..NewRun::pending(job, Trigger::Manual, now)
    };
    let retried = insert(&store, running("a", 1)).await;
    let last_try = insert(&store, running("a", 2)).await;
    let pending = insert(&store, NewRun::pending("b", Trigger::Manual, now)).await;
    let recovered = store.recover(now, BTreeMap::from([("a".to_owned(), 2)])).await.unwrap();
    let abandoned: Vec<(i64, RunStatus)> = recovered.abandoned.iter().map(|r| (r.id, r.status)).collect();
    assert_eq!(abandoned, [(retried, RunStatus::Abandoned), (last_try, RunStatus::Abandoned)]);
    assert_eq!(recovered.pending.len(), 2, "{:?}", recovered.pending);
    assert_eq!(recovered.pending[0].id, pending, "pending runs stay pending");
    let retry = &recovered.pending[1];
    assert_eq!((retry.job.as_str(), retry.attempt, retry.trigger), ("a", 2, Trigger::Retry));
    assert_eq!(retry.payload, b"p", "a retry gets the payload of the run it retries");
}

#[tokio::test]
async fn fires_of_a_paused_job_move_its_watermark_and_record_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let (t1, t2) = (at("2026-11-24T10:00:00Z"), at("2026-11-24T10:01:00Z"));
    store.set_paused("quiet".into(), true, None).await.unwrap();
    let fire = |job: &str, at, skipped: Option<&str>| Fire {
        job: job.into(),
        scheduled_for: at,
        skipped: skipped.map(str::to_owned),
        shared: SharedOverlap::Allow,
    };
    let fires = vec![fire("quiet", t1, None), fire("loud", t1, None), fire("loud", t2, Some("busy"))];
    let recorded = store.record_fires(fires, t2).await.unwrap();
    let [FireRecorded::Paused, FireRecorded::Run(_), FireRecorded::Run(skipped)] = recorded[..] else {
        panic!("{recorded:?}")
    };
    let skipped = store.run(skipped).await.unwrap().unwrap();
    assert_eq!(
        (skipped.status, skipped.ended_at, skipped.error.as_deref()),
        (RunStatus::Skipped, Some(t2), Some("busy"))
    );
    let states = store.job_states().await.unwrap();
    assert_eq!((states["quiet"].last_fire, states["loud"].last_fire), (Some(t1), Some(t2)));
}

#[tokio::test]
async fn a_trigger_with_a_known_key_returns_the_first_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let now = at("2026-11-24T10:00:00Z");
    let keyed = |job: &str, key: &str| NewRun {
        idempotency_key: Some(key.into()),
        ..NewRun::pending(job, Trigger::Manual, now)
    };
    let (first, new) = store.trigger_run(keyed("a", "k1"), now).await.unwrap();
    assert!(new);
    let within = now + KEY_WINDOW - chrono::TimeDelta::seconds(1);
    assert_eq!(store.trigger_run(keyed("a", "k1"), within).await.unwrap(), (first, false));
    let (other_job, new) = store.trigger_run(keyed("b", "k1"), now).await.unwrap();
    assert!(new && other_job != first, "keys are per job");

    assert_eq!(store.keyed_run("a".into(), "k1".into(), within).await.unwrap(), Some(first));
    assert_eq!(store.keyed_run("a".into(), "k2".into(), within).await.unwrap(), None);

    // Past the window the key is free: a new run, which holds it from then.
    let later = now + KEY_WINDOW + chrono::TimeDelta::seconds(1);
    let (second, new) = store.trigger_run(keyed("a", "k1"), later).await.unwrap();
    assert!(new && second != first, "{second} {first}");
    assert_eq!(store.trigger_run(keyed("a", "k1"), later).await.unwrap(), (second, false));
    let much_later = later + KEY_WINDOW + chrono::TimeDelta::seconds(1);
    assert_eq!(store.keyed_run("a".into(), "k1".into(), much_later).await.unwrap(), None);
}

#[tokio::test]
async fn cancelling_says_what_the_run_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let now = at("2026-11-24T10:00:00Z");
    let pending = insert(&store, NewRun::pending("a", Trigger::Manual, now)).await;
    assert_eq!(store.cancel_pending(pending, now).await.unwrap(), Cancelled::WasPending);
    assert_eq!(store.cancel_pending(pending, now).await.unwrap(), Cancelled::Not(RunStatus::Cancelled));
    assert_eq!(store.cancel_pending(pending + 1, now).await.unwrap(), Cancelled::NoSuchRun);
}

#[tokio::test]
async fn job_state_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    assert!(store.job_states().await.unwrap().is_empty());
    let t = at("2026-11-24T10:00:00Z");
    store.set_last_fire("a".into(), t).await.unwrap();
    store.set_paused("a".into(), true, None).await.unwrap();
    store.set_paused("b".into(), true, None).await.unwrap();
    let states = store.job_states().await.unwrap();
    assert_eq!((states["a"].last_fire, states["a"].paused, states.len()), (Some(t), true, 2));

    let failed = Load::Failed { job: "a".into(), error: "a.toml: schedule \"x\": bad".into() };
    store.record_loads(vec![failed], t).await.unwrap();
    assert_eq!(store.job_states().await.unwrap()["a"].load_error.as_deref(), Some("a.toml: schedule \"x\": bad"));
    let later = at("2026-11-24T11:00:00Z");
    let loads = vec![
        Load::Loaded { job: "a".into(), module_sha256: "abc".into(), first: false },
        Load::Loaded { job: "new".into(), module_sha256: "def".into(), first: true },
    ];
    store.record_loads(loads, later).await.unwrap();
    let states = store.job_states().await.unwrap();
    let a = &states["a"];
    assert_eq!((a.module_sha256.as_deref(), &a.load_error), (Some("abc"), &None), "a good load clears the error");
    assert!(a.paused && a.last_fire == Some(t), "and keeps the pause and the watermark");
    assert_eq!(states["new"].last_fire, Some(later), "a new job's history starts at its load");
}

#[tokio::test]
async fn prune_keeps_open_runs_and_failures_longer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let now = at("2026-11-24T10:00:00Z");
    let days_ago = |d: i64| now - ChronoDuration::days(d);
    let add = async |status, when| {
        let id =
            insert(&store, NewRun { status: RunStatus::Running, ..NewRun::pending("a", Trigger::Manual, when) }).await;
        store.finish_run(id, finished(status, when)).await.unwrap();
        id
    };
    let old_success = add(RunStatus::Succeeded, days_ago(40)).await;
    let old_failure = add(RunStatus::Failed, days_ago(40)).await;
    let ancient_failure = add(RunStatus::Failed, days_ago(100)).await;
    let old_pending = insert(&store, NewRun::pending("a", Trigger::Manual, days_ago(100))).await;
    let mut recent = Vec::new();
    for _ in 0..5 {
        recent.push(add(RunStatus::Succeeded, days_ago(1)).await);
    }
    store.prune(Retention { max_count: 4, ..Retention::default() }, now).await.unwrap();
    let mut exists = BTreeMap::new();
    for id in [old_success, old_failure, ancient_failure, old_pending].iter().chain(&recent) {
        exists.insert(*id, store.run(*id).await.unwrap().is_some());
    }
    assert!(!exists[&old_success], "a 40-day-old success is past 30 days");
    assert!(!exists[&ancient_failure], "a 100-day-old failure is past 90 days");
    assert!(exists[&old_pending], "open runs are never pruned");
    // Count: the newest 4 finished runs stay; the 40-day-old failure is the 5th newest.
    assert!(!exists[&old_failure]);
    assert!(recent[1..].iter().all(|id| exists[id]));
    assert!(!exists[&recent[0]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_come_after_the_commit_and_calls_are_batched() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(&dir).await);
    let now = at("2026-11-24T10:00:00Z");
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { insert(&store, NewRun::pending("a", Trigger::Manual, now)).await })
        })
        .collect();
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap());
    }
    // A second connection, as the CLI would open, sees every answered write.
    let reader = open(&dir).await;
    assert_eq!(reader.recover(now, BTreeMap::new()).await.unwrap().pending.len(), 200);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
}

#[tokio::test]
async fn a_full_database_fails_the_write_and_keeps_what_was_there() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let now = at("2026-11-24T10:00:00Z");
    let id = insert(&store, NewRun { status: RunStatus::Running, ..NewRun::pending("a", Trigger::Manual, now) }).await;
    store.cap_pages(Some(store.page_count().await.unwrap())).await.unwrap();
    let big = Finished { stdout: vec![b'x'; 1 << 20], ..finished(RunStatus::Succeeded, now) };
    let error = store.finish_run(id, big).await.unwrap_err();
    assert!(error.is_full(), "{error}");
    assert_eq!(store.run(id).await.unwrap().unwrap().status, RunStatus::Running, "the failed write left no trace");
    store.cap_pages(None).await.unwrap();
    store.finish_run(id, finished(RunStatus::Succeeded, now)).await.unwrap();
    assert_eq!(store.run(id).await.unwrap().unwrap().status, RunStatus::Succeeded);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir).await);
    let conn = Connection::open(dir.path().join("state").join(DATABASE_FILE)).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let error = SqliteStore::open(&dir.path().join("state").join(DATABASE_FILE)).await.err().unwrap().to_string();
    assert!(error.contains("has schema version 99, newer than this wasmcron understands"), "{error}");
}

#[test]
fn concurrent_first_opens_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let openers: Vec<_> = (0..8)
        .map(|_| {
            let (path, barrier) = (dir.path().join(DATABASE_FILE), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                Db::open(&path).and_then(|db| db.schema_version())
            })
        })
        .collect();
    for opener in openers {
        assert_eq!(opener.join().unwrap().unwrap(), MIGRATIONS.len() as i64);
    }
}

/// A database written by the previous release (schema 3, times as RFC 3339
/// text) opens with every time intact as integer microseconds.
#[tokio::test]
async fn a_version_3_database_migrates_forward() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DATABASE_FILE);
    let conn = Connection::open(&path).unwrap();
    for (version, sql) in MIGRATIONS[..3].iter().enumerate() {
        conn.execute_batch(sql).unwrap();
        conn.pragma_update(None, "user_version", version as i64 + 1).unwrap();
    }
    conn.execute_batch(
        "INSERT INTO runs (id, job, status, trigger, attempt, scheduled_for, started_at, ended_at, stdout)
             VALUES (7, 'a', 'succeeded', 'schedule', 1, '2026-11-24T10:00:00.000Z', '2026-11-24T10:00:00.250Z',
                     '2026-11-24T10:00:01.500Z', x'6f6b');
         INSERT INTO runs (id, job, status, trigger, attempt, scheduled_for) VALUES (8, 'a', 'pending', 'retry', 2, '2026-11-24T10:05:00.000Z');
         INSERT INTO job_state (job, last_fire, paused, loaded_at) VALUES ('a', '2026-11-24T10:00:00.000Z', 1, NULL);",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), MIGRATIONS.len() as i64);
    let run = store.run(7).await.unwrap().unwrap();
    assert_eq!(
        (run.scheduled_for, run.started_at, run.ended_at, run.stdout.as_slice()),
        (
            at("2026-11-24T10:00:00Z"),
            Some(at("2026-11-24T10:00:00.250Z")),
            Some(at("2026-11-24T10:00:01.500Z")),
            b"ok".as_slice()
        )
    );
    let state = &store.job_states().await.unwrap()["a"];
    assert_eq!((state.last_fire, state.paused, state.loaded_at), (Some(at("2026-11-24T10:00:00Z")), true, None));
    let pending = store.recover(at("2026-11-24T11:00:00Z"), BTreeMap::new()).await.unwrap().pending;
    assert_eq!((pending[0].id, pending[0].attempt), (8, 2));
    let next = insert(&store, NewRun::pending("a", Trigger::Manual, at("2026-11-24T11:00:00Z"))).await;
    assert!(next > 8, "ids keep counting up after the rebuild: {next}");
}

/// Root opening a database another user owns (`sudo wasmcron runs` on a
/// stopped host's state) leaves its -wal and -shm files to that user:
/// SQLite gives them the database's owner when it runs as root, and
/// docs/operations.md tells operators they may run the CLI so.
#[tokio::test]
async fn root_opening_another_users_database_leaves_its_wal_to_that_user() {
    use std::os::unix::fs::MetadataExt;
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot give a database to another user here; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join(DATABASE_FILE);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // A database at rest: its last connection closed, which removes -wal and -shm.
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
    drop(conn);
    assert!(!std::path::Path::new(&format!("{}-wal", path.display())).exists());
    let nobody = 65534;
    std::os::unix::fs::chown(&path, Some(nobody), Some(nobody)).unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    let _ = store.runs(RunQuery { limit: 1, ..RunQuery::default() }).await.unwrap();
    for suffix in ["-wal", "-shm"] {
        let sidecar = std::fs::metadata(format!("{}{suffix}", path.display())).unwrap();
        assert_eq!((sidecar.uid(), sidecar.gid()), (nobody, nobody), "{suffix}");
    }
}
