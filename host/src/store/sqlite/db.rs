//! `Db`: one SQLite connection and the file it is on, opened, configured
//! and migrated; the helpers the operations share (errors, times,
//! savepoints). Blocking: used only on the store's blocking thread.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode};

use super::schema::MIGRATIONS;
use crate::store::{FailureKind, Result, StoreError};

pub(super) struct Db {
    pub conn: Connection,
    pub path: PathBuf,
    /// The file opened, as (device, inode): a file put in its place
    /// later (a restore copied over it, a move) is not the database this
    /// connection writes to, and is caught before each write.
    identity: Option<(u64, u64)>,
}

impl Db {
    /// Opens (creating if needed, with its folder) the database at `path`.
    pub fn open(path: &Path) -> Result<Db> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
        }
        let conn = Connection::open(path).map_err(|source| backend(path, source))?;
        let identity = file_identity(path);
        let db = Db { conn, path: path.to_owned(), identity };
        db.configure().map_err(|e| db.error(e))?;
        db.migrate()?;
        Ok(db)
    }

    /// Why not to write, if the file at `path` is no longer the one
    /// opened: writes would go to a file nobody will read again. They
    /// wait (the host holds them) until the file is put back, or the host
    /// restarts.
    pub fn replaced(&self) -> Option<&'static str> {
        if self.identity.is_none() || file_identity(&self.path) == self.identity {
            return None;
        }
        Some(
            "the database file is no longer the one this host opened (it was replaced, moved or deleted while \
             the host ran); writes are held until the original is back at that path, or restart the host to use \
             the file there now",
        )
    }

    pub fn error(&self, source: rusqlite::Error) -> StoreError {
        backend(&self.path, source)
    }

    pub fn corrupt(&self, id: i64, field: &'static str, value: impl std::fmt::Debug) -> StoreError {
        StoreError::Corrupt { store: self.path.display().to_string(), id, field, value: format!("{value:?}") }
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
                return Err(StoreError::TooNew { store: self.path.display().to_string(), found, known });
            }
            for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
                self.conn.execute_batch(sql).map_err(|e| self.error(e))?;
                self.conn.pragma_update(None, "user_version", version as i64 + 1).map_err(|e| self.error(e))?;
            }
            Ok(())
        };
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| self.error(e))?;
        match migrate() {
            Ok(()) => self.conn.execute_batch("COMMIT").map_err(|e| self.error(e)),
            Err(error) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(error)
            }
        }
    }

    pub fn schema_version(&self) -> Result<i64> {
        self.conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|e| self.error(e))
    }

    /// Runs `work` atomically: all of its writes are kept, or none. A
    /// savepoint, so it nests inside the batch's transaction (and is a
    /// transaction of its own outside one).
    pub fn atomically<T>(&self, work: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        self.execute_cached("SAVEPOINT work")?;
        match work(self) {
            Ok(value) => {
                self.execute_cached("RELEASE work")?;
                Ok(value)
            }
            Err(error) => {
                let _ = self.execute_cached("ROLLBACK TO work").and_then(|()| self.execute_cached("RELEASE work"));
                Err(error)
            }
        }
    }

    fn execute_cached(&self, sql: &str) -> Result<()> {
        self.conn.prepare_cached(sql).and_then(|mut statement| statement.execute([])).map_err(|e| self.error(e))?;
        Ok(())
    }
}

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|meta| (meta.dev(), meta.ino()))
}

/// A rusqlite error as the host sees it: where, what kind, and the cause.
pub(super) fn backend(path: &Path, source: rusqlite::Error) -> StoreError {
    let kind = match source.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => FailureKind::Full,
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => FailureKind::Busy,
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen | ErrorCode::ReadOnly) => FailureKind::Io,
        _ => FailureKind::Other,
    };
    StoreError::Backend { store: path.display().to_string(), kind, source: Box::new(source) }
}

/// An instant as stored: microseconds since the Unix epoch.
pub(super) fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

pub(super) fn from_micros(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
}
