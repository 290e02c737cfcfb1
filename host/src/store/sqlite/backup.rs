//! An online copy of the SQLite store (`wasmcron backup FILE`), with
//! SQLite's backup API, while the host goes on writing.
//!
//! Strategy: the source is opened read-only and a read transaction is held
//! for the whole copy, so the copy is the database as it stood when the
//! copy began — every run committed before then — and SQLite never has to
//! restart it when the host commits meanwhile. In WAL mode a reader never
//! blocks the writer: the host is not held up at all, only its WAL grows
//! until the copy ends (it cannot checkpoint past the snapshot). Pages are
//! copied a step at a time, and a step the source refuses (busy, locked)
//! is retried after a pause. The copy goes to a temporary file beside
//! FILE, is switched to a rollback journal (one self-contained file),
//! checked, synced, and only then renamed into place: FILE is whole or
//! untouched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

/// Pages copied per step: 4 MiB of 4 KiB pages.
const PAGES_PER_STEP: i32 = 1024;
/// How long to wait before retrying a step the source refused.
const BUSY_PAUSE: Duration = Duration::from_millis(20);
/// How long the source may be locked before the copy gives up (the host
/// waits as long for others: see `Db::configure`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a backup copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupReport {
    pub pages: u64,
    pub bytes: u64,
    /// The newest run in the copy, if it holds any.
    pub newest_run: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no state database at {0}; pass the host's --state DIR (or --store sqlite:PATH) to back up its database")]
    NoSource(PathBuf),
    #[error("{0} exists already; pass --force to replace it, or name a new file")]
    Exists(PathBuf),
    #[error("{0} is the live database itself; name another file for the copy")]
    SameFile(PathBuf),
    #[error("cannot write the copy in {dir}: {source}; does the folder exist, and may you write there?")]
    TargetDir { dir: PathBuf, source: std::io::Error },
    #[error("reading {path}: {source}")]
    Source { path: PathBuf, source: rusqlite::Error },
    #[error("writing the copy {path}: {source}")]
    Target { path: PathBuf, source: rusqlite::Error },
    #[error("the copy {path} failed its integrity check ({found}); it was not kept")]
    Check { path: PathBuf, found: String },
    #[error("putting the copy in place at {path}: {source}")]
    Rename { path: PathBuf, source: std::io::Error },
}

impl BackupError {
    /// The backup was asked for wrongly (no source, a file in the way), as
    /// opposed to failing while it ran.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            BackupError::NoSource(_)
                | BackupError::Exists(_)
                | BackupError::SameFile(_)
                | BackupError::TargetDir { .. }
        )
    }
}

/// Copies the database at `source` to `target`, which must not exist
/// unless `replace`. Blocking.
pub fn backup(source: &Path, target: &Path, replace: bool) -> Result<BackupReport, BackupError> {
    if !source.is_file() {
        return Err(BackupError::NoSource(source.to_owned()));
    }
    if same_file(source, target) {
        return Err(BackupError::SameFile(target.to_owned()));
    }
    if !replace && target.exists() {
        return Err(BackupError::Exists(target.to_owned()));
    }
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temporary = tempfile::Builder::new()
        .prefix(".wasmcron-backup-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|source| BackupError::TargetDir { dir: dir.to_owned(), source })?;
    // Reading a stopped host's database creates its -wal and -shm files;
    // as root, SQLite gives them the database's owner.
    let report = copy(source, temporary.path())?;
    let placed = if replace { temporary.persist(target) } else { temporary.persist_noclobber(target) };
    match placed {
        Ok(_) => {}
        Err(error) if error.error.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(BackupError::Exists(target.to_owned()));
        }
        Err(error) => return Err(BackupError::Rename { path: target.to_owned(), source: error.error }),
    }
    // The rename itself must survive a crash too.
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| BackupError::Rename { path: target.to_owned(), source })?;
    Ok(report)
}

/// Whether `target` names the file at `source` (it need not exist).
fn same_file(source: &Path, target: &Path) -> bool {
    let resolved = |path: &Path| -> Option<PathBuf> {
        let name = path.file_name()?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Some(parent.canonicalize().ok()?.join(name))
    };
    matches!((resolved(source), resolved(target)), (Some(a), Some(b)) if a == b)
}

/// The copy itself, from `source` into the empty file at `path`.
fn copy(source: &Path, path: &Path) -> Result<BackupReport, BackupError> {
    let read = |error| BackupError::Source { path: source.to_owned(), source: error };
    let write = |error| BackupError::Target { path: path.to_owned(), source: error };
    let from = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(read)?;
    from.busy_timeout(BUSY_TIMEOUT).map_err(read)?;
    // The snapshot every step copies from, taken by the first read.
    from.execute_batch("BEGIN").map_err(read)?;
    let newest_run: Option<i64> = from.query_row("SELECT max(id) FROM runs", [], |row| row.get(0)).map_err(read)?;
    let mut to = Connection::open(path).map_err(write)?;
    let pages = {
        let backup = Backup::new(&from, &mut to).map_err(write)?;
        let mut busy_since = None;
        loop {
            match backup.step(PAGES_PER_STEP).map_err(write)? {
                StepResult::Done => break,
                StepResult::More => busy_since = None,
                _ => {
                    let since = *busy_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > BUSY_TIMEOUT {
                        return Err(read(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                            Some(format!("locked for more than {BUSY_TIMEOUT:?}")),
                        )));
                    }
                    std::thread::sleep(BUSY_PAUSE);
                }
            }
        }
        backup.progress().pagecount as u64
    };
    from.execute_batch("COMMIT").map_err(read)?;
    drop(from);
    // One file, like any SQLite database; the host switches a restored
    // copy back to WAL when it opens it.
    to.pragma_update_and_check(None, "journal_mode", "DELETE", |row| row.get::<_, String>(0)).map_err(write)?;
    let found: String = to.query_row("PRAGMA quick_check", [], |row| row.get(0)).map_err(write)?;
    if found != "ok" {
        return Err(BackupError::Check { path: path.to_owned(), found });
    }
    let page_size: u64 = to.query_row("PRAGMA page_size", [], |row| row.get(0)).map_err(write)?;
    to.close().map_err(|(_, error)| write(error))?;
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|source| BackupError::Rename { path: path.to_owned(), source })?;
    Ok(BackupReport { pages, bytes: pages * page_size, newest_run })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_live_file_are_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("wasmcron.db");
        std::fs::write(&live, "").unwrap();
        let roundabout = dir.path().join(".").join("wasmcron.db");
        assert!(same_file(&live, &roundabout));
        assert!(!same_file(&live, &dir.path().join("copy.db")));
    }
}
