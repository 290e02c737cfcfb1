//! `StoreError`: why a store operation failed, in terms any backend can
//! give, and what kind of failure it was (`kind`, `is_full`).

use std::path::PathBuf;

/// What kind of failure a backend met, as far as the host acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No room: the disk (or the database's size cap) is full.
    Full,
    /// Locked by another process, or otherwise busy, past the wait.
    Busy,
    /// The device failed a read or a write.
    Io,
    /// Anything else: a bug, a damaged file, a refused statement.
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("store {store}: {source}")]
    Backend {
        /// Where the store is: a file path or a URL without its password.
        store: String,
        kind: FailureKind,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "store {store} has schema version {found}, newer than this wasmcron understands ({known}); upgrade wasmcron or point --store elsewhere"
    )]
    TooNew { store: String, found: i64, known: i64 },
    #[error("store {store}: run {id} has a bad {field} value {value:?}")]
    Corrupt { store: String, id: i64, field: &'static str, value: String },
    #[error("--store {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "no state database at {path}; start the host (`wasmcron run`) or run a job (`wasmcron once JOB`) first, or pass --state DIR or --store URL"
    )]
    Missing { path: PathBuf },
    #[error(
        "run {id} is no longer this host's: its lease lapsed and another host took it over, so this attempt's result is discarded"
    )]
    Superseded { id: i64 },
    #[error("the store has stopped")]
    Closed,
}

impl StoreError {
    /// The kind of failure, for the host to decide whether to wait and retry.
    pub fn kind(&self) -> FailureKind {
        match self {
            StoreError::Backend { kind, .. } => *kind,
            StoreError::CreateDir { .. } => FailureKind::Io,
            _ => FailureKind::Other,
        }
    }

    /// The store has no room: writing less (dropping captured output) may
    /// get the write through.
    pub fn is_full(&self) -> bool {
        self.kind() == FailureKind::Full
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;
