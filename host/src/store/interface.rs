//! The store's one interface: every operation the host and the CLI need,
//! by name. Each operation is atomic (all of its writes are kept, or none)
//! and resolves only once its writes are durable, so an answer always
//! means the record survives a crash of the process.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Cancelled, CatchUp, Finished, Fire, FireRecorded, JobState, Load, NewRun, Recovered, Result, Retention};
use super::{Cluster, PendingRun, RunQuery};
use crate::record::RunRecord;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Where this store is, for messages: a path or a URL without secrets.
    fn describe(&self) -> String;

    /// The cluster side of a store several hosts share; `None` for a
    /// store one host owns (SQLite).
    fn cluster(&self) -> Option<Arc<dyn Cluster>> {
        None
    }

    // Recording runs.

    /// Records scheduled fires and moves each job's watermark to its fire.
    /// A fire of a paused job records no run (`None`); a skipped one is
    /// recorded as ended at `now`.
    async fn record_fires(&self, fires: Vec<Fire>, now: DateTime<Utc>) -> Result<Vec<FireRecorded>>;
    /// Records runs as given (retries, enqueued runs, `once`); their ids.
    async fn insert_runs(&self, runs: Vec<NewRun>) -> Result<Vec<i64>>;
    /// Records a triggered run, unless a run of the same job already has
    /// its idempotency key: then that run's id, and `false`.
    async fn trigger_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<(i64, bool)>;
    /// Ends pending runs as `missed`, each with why (a delayed run whose
    /// time came while the host was down, outside its catch-up policy).
    async fn miss_pending(&self, runs: Vec<(i64, String)>, now: DateTime<Utc>) -> Result<()>;
    /// Marks a pending run `running`, with the module version it runs on.
    async fn start_run(&self, id: i64, started_at: DateTime<Utc>, module_sha256: String) -> Result<()>;
    /// Writes how a run ended. On a shared store, only while the run is
    /// still this host's attempt: `Superseded` once another host rescued it.
    async fn finish_run(&self, id: i64, finished: Finished) -> Result<()>;
    /// Writes how a run ended and records the retry it calls for, if any,
    /// together: a host that dies between the two must not leave a failed
    /// attempt with no retry. The retry's id. This default takes two
    /// writes; a backend that can, does both in one transaction.
    async fn finish_run_and_retry(&self, id: i64, finished: Finished, retry: Option<NewRun>) -> Result<Option<i64>> {
        self.finish_run(id, finished).await?;
        match retry {
            Some(retry) => Ok(self.insert_runs(vec![retry]).await?.first().copied()),
            None => Ok(None),
        }
    }
    /// Cancels a run that has not started.
    async fn cancel_pending(&self, id: i64, now: DateTime<Utc>) -> Result<Cancelled>;

    // Start-up.

    /// Marks every run left `running` `abandoned`, records a retry of each
    /// whose job (by name in `attempts`, tries in all) has attempts left,
    /// and lists every pending run.
    async fn recover(&self, now: DateTime<Utc>, attempts: BTreeMap<String, u32>) -> Result<Recovered>;
    /// Records each job's catch-up rows and watermark; the ids of the rows
    /// still to run (`pending` ones) as pending runs.
    async fn record_catch_up(&self, jobs: Vec<CatchUp>) -> Result<Vec<PendingRun>>;

    // Reading history.

    async fn run(&self, id: i64) -> Result<Option<RunRecord>>;
    /// The run of `job` holding idempotency `key` taken within `KEY_WINDOW` of `now`.
    async fn keyed_run(&self, job: String, key: String, now: DateTime<Utc>) -> Result<Option<i64>>;
    /// The payload run `id` was given (empty if there is no such run).
    async fn run_payload(&self, id: i64) -> Result<Vec<u8>>;
    /// Runs matching `query`, newest first.
    async fn runs(&self, query: RunQuery) -> Result<Vec<RunRecord>>;
    /// The newest finished run (not pending, running, skipped or missed)
    /// of each of `jobs` that has one.
    async fn last_outcomes(&self, jobs: Vec<String>) -> Result<Vec<RunRecord>>;
    /// Deletes finished history beyond `retention`; how many runs went.
    async fn prune(&self, retention: Retention, now: DateTime<Utc>) -> Result<usize>;

    // Job state.

    async fn job_states(&self) -> Result<BTreeMap<String, JobState>>;
    /// Pauses or resumes `job`; a pause keeps its `reason`, a resume drops it.
    async fn set_paused(&self, job: String, paused: bool, reason: Option<String>) -> Result<()>;
    /// Moves `job`'s watermark: every fire up to `at` is dealt with.
    async fn set_last_fire(&self, job: String, at: DateTime<Utc>) -> Result<()>;
    /// Records what the host loaded (or failed to) at `now`.
    async fn record_loads(&self, loads: Vec<Load>, now: DateTime<Utc>) -> Result<()>;

    // The job world's key-value store, one namespace per job.

    async fn kv_get(&self, job: String, key: String) -> Result<Option<Vec<u8>>>;
    /// Sets `key`; `false` if that would take the job past
    /// `MAX_KEYS_PER_JOB` keys (nothing is written then).
    async fn kv_set(&self, job: String, key: String, value: Vec<u8>) -> Result<bool>;
    async fn kv_delete(&self, job: String, key: String) -> Result<()>;
    /// Keys of `job` starting with `prefix`, in order.
    async fn kv_list(&self, job: String, prefix: String) -> Result<Vec<String>>;
}
