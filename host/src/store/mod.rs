//! Run history, job state and the job world's key-value store, behind one
//! interface ([`Store`]) with named operations, so the daemon, recovery,
//! reload, the job host and the CLI never hold a connection or write SQL.
//!
//! Backends: [`sqlite`], the embedded default (one file, WAL mode, its SQL
//! and its SQLite driver nowhere else), and [`postgres`], one database
//! several hosts share (its SQL and driver likewise kept to itself). A store is opened from a URL
//! ([`StoreUrl`]). A run is written before its guest starts (`pending`,
//! then `running`), so a host that dies leaves rows the next start can
//! find.
//!
//! This module is a leaf: it stores `record` types and knows nothing of
//! wasm or schedules.

mod cluster;
mod error;
mod interface;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod suite;
mod types;
mod url;

pub use cluster::{Claimable, Claimed, Cluster, HostInfo, HostRecord, Rescued};
pub use error::{FailureKind, Result, StoreError};
pub use interface::Store;
pub use types::{
    Cancelled, CatchUp, Finished, Fire, FireRecorded, JobState, KEY_WINDOW, Load, MAX_KEYS_PER_JOB, NewRun, PendingRun,
    Recovered, Retention, RunQuery, SharedOverlap,
};
pub use url::StoreUrl;

/// The SQLite database's file name in the state folder.
pub const DATABASE_FILE: &str = "wasmcron.db";
