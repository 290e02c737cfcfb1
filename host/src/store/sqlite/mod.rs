//! The embedded backend: one SQLite file in WAL mode. The only module
//! with SQL or `rusqlite` in it. Every operation runs on the store's
//! thread (see `actor`), which commits queued operations together;
//! [`backup`] copies the file online, apart from any store.

mod actor;
mod backup;
mod db;
mod jobs;
mod kv;
mod runs;
mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::record::RunRecord;
use crate::store::{
    Cancelled, CatchUp, FailureKind, Finished, Fire, FireRecorded, JobState, KEY_WINDOW, Load, NewRun, PendingRun,
    Recovered, Result, Retention, RunQuery, Store, StoreError,
};
use actor::Actor;
pub use backup::{BackupError, BackupReport, backup};
use db::{Db, micros};

pub struct SqliteStore {
    actor: Actor,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    /// Needs a tokio runtime.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let owned = path.to_owned();
        let db = tokio::task::spawn_blocking(move || Db::open(&owned)).await.map_err(|_| StoreError::Closed)??;
        let actor = Actor::start(db).map_err(|source| StoreError::Backend {
            store: path.display().to_string(),
            kind: FailureKind::Other,
            source: Box::new(source),
        })?;
        Ok(SqliteStore { actor, path: path.to_owned() })
    }

    /// The schema version of the open database.
    pub async fn schema_version(&self) -> Result<i64> {
        self.actor.call(|db| db.schema_version()).await
    }

    /// Caps the database at `pages` pages (`PRAGMA max_page_count`), or
    /// lifts the cap: a full disk, simulated, for fault-injection tests.
    pub async fn cap_pages(&self, pages: Option<u64>) -> Result<()> {
        self.actor
            .call(move |db| {
                let pages = pages.unwrap_or(u32::MAX as u64 - 1);
                db.conn.pragma_update(None, "max_page_count", pages as i64).map_err(|e| db.error(e))
            })
            .await
    }

    /// Pages the database holds now.
    pub async fn page_count(&self) -> Result<u64> {
        self.actor
            .call(|db| {
                db.conn.pragma_query_value(None, "page_count", |row| row.get::<_, i64>(0)).map_err(|e| db.error(e))
            })
            .await
            .map(|pages| pages as u64)
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    async fn record_fires(&self, fires: Vec<Fire>, now: DateTime<Utc>) -> Result<Vec<FireRecorded>> {
        self.actor.call(move |db| db.record_fires(&fires, now)).await
    }

    async fn insert_runs(&self, runs: Vec<NewRun>) -> Result<Vec<i64>> {
        self.actor.call(move |db| runs.iter().map(|run| db.insert_run(run)).collect()).await
    }

    async fn trigger_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<(i64, bool)> {
        let run = NewRun { triggered_at: Some(now), ..run };
        self.actor
            .call(move |db| {
                if let Some(key) = &run.idempotency_key
                    && let Some((id, keyed_at)) = db.run_with_key(&run.job, key)?
                {
                    if keyed_at.is_some_and(|at| at >= micros(now - KEY_WINDOW)) {
                        return Ok((id, false));
                    }
                    db.release_key(id)?; // expired: the key starts a new run
                }
                Ok((db.insert_run(&run)?, true))
            })
            .await
    }

    async fn miss_pending(&self, runs: Vec<(i64, String)>, now: DateTime<Utc>) -> Result<()> {
        self.actor.call(move |db| db.miss_pending(&runs, now)).await
    }

    async fn start_run(&self, id: i64, started_at: DateTime<Utc>, module_sha256: String) -> Result<()> {
        self.actor.call_one(move |db| db.start_run(id, started_at, &module_sha256)).await
    }

    async fn finish_run(&self, id: i64, finished: Finished) -> Result<()> {
        self.actor.call_one(move |db| db.finish_run(id, &finished)).await
    }

    async fn finish_run_and_retry(&self, id: i64, finished: Finished, retry: Option<NewRun>) -> Result<Option<i64>> {
        self.actor
            .call(move |db| {
                db.finish_run(id, &finished)?;
                retry.map(|retry| db.insert_run(&retry)).transpose()
            })
            .await
    }

    async fn cancel_pending(&self, id: i64, now: DateTime<Utc>) -> Result<Cancelled> {
        self.actor.call(move |db| db.cancel_pending(id, now)).await
    }

    async fn recover(&self, now: DateTime<Utc>, attempts: BTreeMap<String, u32>) -> Result<Recovered> {
        self.actor.call(move |db| db.recover(now, &attempts)).await
    }

    async fn record_catch_up(&self, jobs: Vec<CatchUp>) -> Result<Vec<PendingRun>> {
        self.actor.call(move |db| db.record_catch_up(jobs)).await
    }

    async fn run(&self, id: i64) -> Result<Option<RunRecord>> {
        self.actor.call_one(move |db| db.run(id)).await
    }

    async fn keyed_run(&self, job: String, key: String, now: DateTime<Utc>) -> Result<Option<i64>> {
        self.actor
            .call_one(move |db| {
                let held = db.run_with_key(&job, &key)?;
                Ok(held.filter(|(_, at)| at.is_some_and(|at| at >= micros(now - KEY_WINDOW))).map(|(id, _)| id))
            })
            .await
    }

    async fn run_payload(&self, id: i64) -> Result<Vec<u8>> {
        self.actor.call_one(move |db| db.payload(id)).await
    }

    async fn runs(&self, query: RunQuery) -> Result<Vec<RunRecord>> {
        self.actor.call_one(move |db| db.runs(&query)).await
    }

    async fn last_outcomes(&self, jobs: Vec<String>) -> Result<Vec<RunRecord>> {
        self.actor.call_one(move |db| db.last_outcomes(&jobs)).await
    }

    async fn prune(&self, retention: Retention, now: DateTime<Utc>) -> Result<usize> {
        self.actor.call(move |db| db.prune(&retention, now)).await
    }

    async fn job_states(&self) -> Result<BTreeMap<String, JobState>> {
        self.actor.call_one(|db| db.job_states()).await
    }

    async fn set_paused(&self, job: String, paused: bool, reason: Option<String>) -> Result<()> {
        self.actor.call_one(move |db| db.set_paused(&job, paused, reason.as_deref())).await
    }

    async fn set_last_fire(&self, job: String, at: DateTime<Utc>) -> Result<()> {
        self.actor.call_one(move |db| db.set_last_fire(&job, at)).await
    }

    async fn record_loads(&self, loads: Vec<Load>, now: DateTime<Utc>) -> Result<()> {
        self.actor.call(move |db| db.record_loads(&loads, now)).await
    }

    async fn kv_get(&self, job: String, key: String) -> Result<Option<Vec<u8>>> {
        self.actor.call_one(move |db| db.kv_get(&job, &key)).await
    }

    async fn kv_set(&self, job: String, key: String, value: Vec<u8>) -> Result<bool> {
        self.actor.call(move |db| db.kv_set(&job, &key, &value)).await
    }

    async fn kv_delete(&self, job: String, key: String) -> Result<()> {
        self.actor.call_one(move |db| db.kv_delete(&job, &key)).await
    }

    async fn kv_list(&self, job: String, prefix: String) -> Result<Vec<String>> {
        self.actor.call_one(move |db| db.kv_list(&job, &prefix)).await
    }
}

#[cfg(test)]
mod tests;
