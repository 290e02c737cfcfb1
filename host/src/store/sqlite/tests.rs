//! What only the SQLite backend has — schema versions, migrations from
//! older releases, page caps, file ownership — on a real file in a
//! temporary folder. Everything the `Store` interface promises is tested
//! on both backends by the store suite (`store::suite`).

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::schema::MIGRATIONS;
use super::*;
use crate::record::{RunStatus, Trigger};
use crate::store::DATABASE_FILE;
use crate::store::suite::{at, finished};

async fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("state").join(DATABASE_FILE)).await.unwrap()
}

async fn insert(store: &SqliteStore, run: NewRun) -> i64 {
    store.insert_runs(vec![run]).await.unwrap()[0]
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
async fn a_database_file_replaced_under_the_store_refuses_writes_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let path = dir.path().join("state").join(DATABASE_FILE);
    let now = at("2026-11-24T10:00:00Z");
    let id = insert(&store, NewRun { status: RunStatus::Running, ..NewRun::pending("a", Trigger::Manual, now) }).await;
    // An operator restores "a backup" by moving another file into place.
    let aside = dir.path().join("state").join("moved-aside.db");
    std::fs::rename(&path, &aside).unwrap();
    drop(Connection::open(&path).unwrap());
    let error = store.finish_run(id, finished(RunStatus::Succeeded, now)).await.unwrap_err();
    assert_eq!(error.kind(), FailureKind::Io, "{error}");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "names the file: {message}");
    assert!(message.contains("no longer the one this host opened"), "{message}");
    assert!(message.contains("restart the host"), "says what to do: {message}");
    assert_eq!(
        Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))
            .unwrap(),
        0,
        "the replacement was not written to"
    );
    // Deleted outright: the same.
    std::fs::remove_file(&path).unwrap();
    assert!(store.finish_run(id, finished(RunStatus::Succeeded, now)).await.is_err());
    // The original back: writes go through, and nothing was lost.
    std::fs::rename(&aside, &path).unwrap();
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
