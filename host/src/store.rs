//! Run history and job state in SQLite (`STATE/wasmcron.db`, WAL mode).
//!
//! The schema is versioned by `PRAGMA user_version` and migrated forward at
//! open. Calls are blocking: async callers run them on a blocking thread.
//! A run is written as `running` before its guest starts, so a host that
//! dies mid-run leaves a row that the next start can find.
//!
//! This module is a leaf: it stores `record` types and knows nothing of
//! wasm or schedules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::record::{RunRecord, RunStatus, Trigger, format_time};

pub const DATABASE_FILE: &str = "wasmcron.db";

/// Each entry moves the schema one version forward; never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    // 1: runs and per-job state.
    "CREATE TABLE runs (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        job           TEXT    NOT NULL,
        status        TEXT    NOT NULL,
        trigger       TEXT    NOT NULL,
        attempt       INTEGER NOT NULL,
        scheduled_for TEXT    NOT NULL,
        started_at    TEXT,
        ended_at      TEXT,
        exit_code     INTEGER,
        error         TEXT,
        fuel_used     INTEGER,
        module_sha256 TEXT,
        stdout        BLOB    NOT NULL DEFAULT x'',
        stderr        BLOB    NOT NULL DEFAULT x'',
        output_dropped INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_by_job ON runs (job, id);
    CREATE INDEX runs_by_status ON runs (status);
    CREATE TABLE job_state (
        job       TEXT PRIMARY KEY,
        last_fire TEXT,
        paused    INTEGER NOT NULL DEFAULT 0
    );",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("state database {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error(
        "state database {path} has schema version {found}, newer than this wasmcron understands ({known}); upgrade wasmcron or point --state elsewhere"
    )]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("state database {path}: run {id} has a bad {field} value {value:?}")]
    Corrupt { path: PathBuf, id: i64, field: &'static str, value: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A run about to start.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub job: &'a str,
    pub trigger: Trigger,
    pub attempt: u32,
    pub scheduled_for: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub module_sha256: &'a str,
}

/// How a run ended, to be written over its `running` row.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: RunStatus,
    pub ended_at: DateTime<Utc>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub fuel_used: Option<u64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub output_dropped: u64,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(state_dir)
            .map_err(|source| StoreError::CreateDir { path: state_dir.to_owned(), source })?;
        let path = state_dir.join(DATABASE_FILE);
        let conn = Connection::open(&path).map_err(|source| StoreError::Sqlite { path: path.clone(), source })?;
        let store = Store { conn, path };
        store.configure().map_err(|source| store.sqlite(source))?;
        store.migrate()?;
        Ok(store)
    }

    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), source }
    }

    fn configure(&self) -> rusqlite::Result<()> {
        // Readers (the CLI) and the host share the file: wait out each other's locks.
        self.conn.busy_timeout(Duration::from_secs(10))?;
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.conn.pragma_update(None, "foreign_keys", "ON")
    }

    fn migrate(&self) -> Result<()> {
        let known = MIGRATIONS.len() as i64;
        let found: i64 =
            self.conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|e| self.sqlite(e))?;
        if found > known {
            return Err(StoreError::TooNew { path: self.path.clone(), found, known });
        }
        for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let apply = || -> rusqlite::Result<()> {
                let tx = self.conn.unchecked_transaction()?;
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", version as i64 + 1)?;
                tx.commit()
            };
            apply().map_err(|e| self.sqlite(e))?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> Result<i64> {
        self.conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|e| self.sqlite(e))
    }

    /// Records a run as `running` and returns its id.
    pub fn begin_run(&self, run: &NewRun<'_>) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO runs (job, status, trigger, attempt, scheduled_for, started_at, module_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    run.job,
                    RunStatus::Running.as_str(),
                    run.trigger.as_str(),
                    run.attempt,
                    format_time(run.scheduled_for),
                    format_time(run.started_at),
                    run.module_sha256,
                ],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Writes how run `id` ended.
    pub fn finish_run(&self, id: i64, finished: &Finished) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET status = ?2, ended_at = ?3, exit_code = ?4, error = ?5, fuel_used = ?6,
                        stdout = ?7, stderr = ?8, output_dropped = ?9
                 WHERE id = ?1",
                params![
                    id,
                    finished.status.as_str(),
                    format_time(finished.ended_at),
                    finished.exit_code,
                    finished.error,
                    finished.fuel_used.map(|f| f as i64),
                    finished.stdout,
                    finished.stderr,
                    finished.output_dropped as i64,
                ],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// The run with `id`, if there is one.
    pub fn run(&self, id: i64) -> Result<Option<RunRecord>> {
        let row = self
            .conn
            .query_row(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"), [id], RawRun::from_row)
            .optional()
            .map_err(|e| self.sqlite(e))?;
        row.map(|raw| raw.into_record(&self.path)).transpose()
    }

    /// The newest runs first, at most `limit`, optionally of one job.
    pub fn recent_runs(&self, job: Option<&str>, limit: u32) -> Result<Vec<RunRecord>> {
        let mut statement = self
            .conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR job = ?1) ORDER BY id DESC LIMIT ?2"
            ))
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map(params![job, limit], RawRun::from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.sqlite(e))?;
        rows.into_iter().map(|raw| raw.into_record(&self.path)).collect()
    }
}

const RUN_COLUMNS: &str = "id, job, status, trigger, attempt, scheduled_for, started_at, ended_at, exit_code, error, fuel_used, module_sha256, stdout, stderr, output_dropped";

/// A row as SQLite gives it, before its text columns are parsed.
struct RawRun {
    id: i64,
    job: String,
    status: String,
    trigger: String,
    attempt: u32,
    scheduled_for: String,
    started_at: Option<String>,
    ended_at: Option<String>,
    exit_code: Option<i32>,
    error: Option<String>,
    fuel_used: Option<i64>,
    module_sha256: Option<String>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    output_dropped: i64,
}

impl RawRun {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawRun {
            id: row.get(0)?,
            job: row.get(1)?,
            status: row.get(2)?,
            trigger: row.get(3)?,
            attempt: row.get(4)?,
            scheduled_for: row.get(5)?,
            started_at: row.get(6)?,
            ended_at: row.get(7)?,
            exit_code: row.get(8)?,
            error: row.get(9)?,
            fuel_used: row.get(10)?,
            module_sha256: row.get(11)?,
            stdout: row.get(12)?,
            stderr: row.get(13)?,
            output_dropped: row.get(14)?,
        })
    }

    fn into_record(self, path: &Path) -> Result<RunRecord> {
        let id = self.id;
        let corrupt = |field: &'static str, value: &str| StoreError::Corrupt {
            path: path.to_owned(),
            id,
            field,
            value: value.to_owned(),
        };
        let time = |field: &'static str, text: &str| {
            DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|_| corrupt(field, text))
        };
        Ok(RunRecord {
            id,
            status: self.status.parse().map_err(|_| corrupt("status", &self.status))?,
            trigger: self.trigger.parse().map_err(|_| corrupt("trigger", &self.trigger))?,
            attempt: self.attempt,
            scheduled_for: time("scheduled_for", &self.scheduled_for)?,
            started_at: self.started_at.as_deref().map(|t| time("started_at", t)).transpose()?,
            ended_at: self.ended_at.as_deref().map(|t| time("ended_at", t)).transpose()?,
            exit_code: self.exit_code,
            error: self.error,
            fuel_used: self.fuel_used.map(|f| f as u64),
            module_sha256: self.module_sha256,
            stdout: self.stdout,
            stderr: self.stderr,
            output_dropped: self.output_dropped as u64,
            job: self.job,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_recorded_before_and_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let now = Utc::now();
        let id = store
            .begin_run(&NewRun {
                job: "report",
                trigger: Trigger::Manual,
                attempt: 1,
                scheduled_for: now,
                started_at: now,
                module_sha256: "abc",
            })
            .unwrap();
        let running = store.run(id).unwrap().unwrap();
        assert_eq!((running.status, running.ended_at), (RunStatus::Running, None));

        let finished = Finished {
            status: RunStatus::Failed,
            ended_at: now,
            exit_code: Some(3),
            error: Some("exited with code 3".into()),
            fuel_used: Some(42),
            stdout: b"out".to_vec(),
            stderr: b"err".to_vec(),
            output_dropped: 0,
        };
        store.finish_run(id, &finished).unwrap();
        drop(store);

        // Reopening migrates nothing and finds the run as written.
        let store = Store::open(&dir.path().join("state")).unwrap();
        let run = store.run(id).unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.exit_code, Some(3));
        assert_eq!(run.fuel_used, Some(42));
        assert_eq!(run.stdout, b"out");
        assert_eq!(run.module_sha256.as_deref(), Some("abc"));
        assert_eq!(store.recent_runs(Some("report"), 10).unwrap().len(), 1);
        assert!(store.recent_runs(Some("other"), 10).unwrap().is_empty());
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
}
