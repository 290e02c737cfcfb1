//! Run history and job state in SQLite (`STATE/wasmcron.db`, WAL mode).
//!
//! The schema is versioned by `PRAGMA user_version` and migrated forward at
//! open. [`Store`] calls are blocking; the daemon reaches the store through
//! [`StoreHandle`], which owns a connection on a thread of its own and
//! commits queued writes together. A run is written before its guest starts
//! (`pending`, then `running`), so a host that dies leaves rows the next
//! start can find.
//!
//! This module is a leaf: it stores `record` types and knows nothing of
//! wasm or schedules.

mod jobs;
mod kv;
mod runs;
mod thread;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

pub use jobs::JobState;
pub use kv::MAX_KEYS_PER_JOB;
pub use runs::{Finished, NewRun, PendingRun, Retention, RunFilter};
pub use thread::StoreHandle;

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
        output_dropped INTEGER NOT NULL DEFAULT 0,
        payload       BLOB    NOT NULL DEFAULT x''
    );
    CREATE INDEX runs_by_job ON runs (job, id);
    CREATE INDEX runs_by_status ON runs (status);
    CREATE TABLE job_state (
        job       TEXT PRIMARY KEY,
        last_fire TEXT,
        paused    INTEGER NOT NULL DEFAULT 0
    );",
    // 2: what the host has in service for each job, and why a reload failed.
    "ALTER TABLE job_state ADD COLUMN module_sha256 TEXT;
    ALTER TABLE job_state ADD COLUMN loaded_at TEXT;
    ALTER TABLE job_state ADD COLUMN load_error TEXT;",
    // 3: the job world's key-value store, and runs started by other runs.
    "CREATE TABLE kv (
        job   TEXT NOT NULL,
        key   TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (job, key)
    ) WITHOUT ROWID;
    ALTER TABLE runs ADD COLUMN parent_run INTEGER;",
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
    #[error("the store thread has stopped")]
    Closed,
    #[error("the state database did not commit: {0}")]
    Commit(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

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
        // NORMAL in WAL mode: a commit survives a crash of the process (the
        // case we recover from); only power loss may take the newest commits.
        self.conn.pragma_update(None, "synchronous", "NORMAL")
    }

    /// Brings the schema up to date. The version is read and the migrations
    /// applied inside one write transaction, so a host and a CLI command
    /// opening a new database at the same moment cannot both migrate it.
    fn migrate(&self) -> Result<()> {
        let known = MIGRATIONS.len() as i64;
        if self.schema_version()? == known {
            return Ok(()); // the common case, without taking the write lock
        }
        let migrate = || -> Result<()> {
            let found = self.schema_version()?;
            if found > known {
                return Err(StoreError::TooNew { path: self.path.clone(), found, known });
            }
            for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
                self.conn.execute_batch(sql).map_err(|e| self.sqlite(e))?;
                self.conn.pragma_update(None, "user_version", version as i64 + 1).map_err(|e| self.sqlite(e))?;
            }
            Ok(())
        };
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| self.sqlite(e))?;
        match migrate() {
            Ok(()) => self.conn.execute_batch("COMMIT").map_err(|e| self.sqlite(e)),
            Err(error) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(error)
            }
        }
    }

    pub fn schema_version(&self) -> Result<i64> {
        self.conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|e| self.sqlite(e))
    }

    /// Runs `work` atomically: all of its writes are kept, or none. Nests
    /// (it is a savepoint), so it also works inside the store thread's batch.
    pub fn transaction<T>(&self, work: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("SAVEPOINT work").map_err(|e| self.sqlite(e))?;
        match work(self) {
            Ok(value) => {
                self.conn.execute_batch("RELEASE work").map_err(|e| self.sqlite(e))?;
                Ok(value)
            }
            Err(error) => {
                let _ = self.conn.execute_batch("ROLLBACK TO work; RELEASE work");
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests;
