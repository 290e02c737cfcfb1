//! What a store shared by several hosts adds to [`Store`](super::Store):
//! the hosts that serve it, claims of due runs under a lease timed by the
//! database's clock, lease renewal, and the rescue of runs whose host went
//! quiet. Only a shared backend (PostgreSQL) has one; a single host on
//! SQLite keeps its runs in memory and needs none of it.
//!
//! Fencing: a claim numbers the attempt (`fence`). The store remembers the
//! fence of each run this host claimed, and renewing the lease and writing
//! the outcome (`Store::finish_run`) both check it: once another host has
//! rescued the run, they fail with [`StoreError::Superseded`] and the
//! stale host stops its guest and discards its result.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::{PendingRun, Result};
use crate::record::RunRecord;

/// What a host tells the others about itself, at each heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// The host's name for people (`--host-name`, default `HOSTNAME-PID`).
    pub name: String,
    pub version: String,
    /// Job name → the module version (sha256) this host serves.
    pub modules: BTreeMap<String, String>,
    /// Job name → the sha256 of the declaration this host loaded.
    pub declarations: BTreeMap<String, String>,
}

/// A host as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    /// Unique per process start (the store makes it at open).
    pub id: String,
    pub info: HostInfo,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Its heartbeat is recent by the database's clock.
    pub alive: bool,
}

/// A job whose due runs this host may claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimable {
    pub job: String,
    /// The version this host serves: it claims only if that is the
    /// version most recently put in service by any host (`record_loads`),
    /// so during a rolling reload the hosts on the old version wait.
    pub module_sha256: String,
    /// At most one run of the job at a time, across hosts (overlap other
    /// than `allow`): no claim while one runs anywhere.
    pub serial: bool,
}

/// A run this host claimed: `running` on it, under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub run: PendingRun,
    pub fence: i64,
    /// When the claim was made, by the database's clock.
    pub started_at: DateTime<Utc>,
}

/// What a rescue did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rescued {
    /// Runs whose lease lapsed, now `abandoned` (a retry recorded for each
    /// whose job has attempts left).
    pub abandoned: Vec<RunRecord>,
    /// Triggered runs waiting across the cluster: the bounded queue's fill.
    pub triggered_waiting: usize,
}

#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// This host's id in the hosts table (made when the store was opened).
    fn host_id(&self) -> &str;

    /// The database's clock, which every host fires and leases by.
    async fn now(&self) -> Result<DateTime<Utc>>;

    /// Registers this host, or renews its heartbeat and what it serves.
    async fn heartbeat(&self, info: HostInfo) -> Result<()>;
    /// Removes this host from the hosts table (a clean shutdown).
    async fn leave(&self) -> Result<()>;
    /// Every host that has not left, alive or not, oldest first.
    async fn hosts(&self) -> Result<Vec<HostRecord>>;

    /// Claims up to `limit` due pending runs of `jobs` (oldest due first),
    /// skipping rows other hosts are claiming, under a lease of `lease`
    /// from the database's `now()`.
    async fn claim(&self, jobs: Vec<Claimable>, limit: u32, lease: Duration) -> Result<Vec<Claimed>>;
    /// Extends the lease of a run this host claimed; `Superseded` if the
    /// run is no longer this host's attempt.
    async fn renew(&self, id: i64, lease: Duration) -> Result<()>;
    /// Ends runs whose lease lapsed as `abandoned`, recording a retry of
    /// each whose job (by name in `attempts`, tries in all) has attempts left.
    async fn rescue(&self, attempts: BTreeMap<String, u32>) -> Result<Rescued>;

    /// Bumped whenever another host says runs may be waiting (`LISTEN`):
    /// a hint only; polling stays the source of truth.
    fn wakeups(&self) -> watch::Receiver<u64>;
}
