//! The cluster backend: one PostgreSQL database that several hosts share,
//! through a pool of `tokio-postgres` connections (`deadpool-postgres`).
//! The only module with PostgreSQL's SQL in it.
//!
//! Strategy: each operation is one statement where it can be (a statement
//! is atomic, and a CTE lets one statement write several tables), so the
//! hot path — record a fire, claim it, finish it — costs a round trip
//! each; the few operations that must read before they write (catch-up
//! under the watermark's row lock, the release of an expired idempotency
//! key) take a transaction. Races between hosts are settled by unique
//! indexes (`runs_one_per_fire`, `runs_by_key`) and row locks, never by a
//! host's clock: leases and "due" are the database's `now()`.
//!
//! A dedicated connection `LISTEN`s for `wasmcron_runs`, which triggers
//! and inserted runs notify in their own statement ([`notify`]); the
//! cluster side ([`Cluster`](crate::store::Cluster), in `cluster.rs`)
//! claims, renews and rescues runs with the fences this store remembers.

mod cluster;
#[cfg(test)]
mod cluster_tests;
mod jobs;
mod kv;
mod notify;
mod outcomes;
mod runs;
mod schema;
#[cfg(test)]
mod tests;
mod triggers;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::record::RunRecord;
use crate::store::{
    Cancelled, CatchUp, Cluster, FailureKind, Finished, Fire, FireRecorded, JobState, Load, NewRun, PendingRun,
    Recovered, Result, Retention, RunQuery, Store, StoreError,
};

/// Connections the pool holds at most: the hot path's few concurrent
/// statements, and the CLI's one, without crowding a shared server.
const POOL_SIZE: usize = 8;
/// How long an operation waits for a free connection, or for a new one to
/// be made, before it fails (as `Io`: the scheduler holds and retries).
const WAIT: Duration = Duration::from_secs(10);
/// How long connecting may take, unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A store on one PostgreSQL database. Cheap to clone: clones share the
/// pool, the fences and the `LISTEN` connection, which closes once the last
/// clone is dropped.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

pub struct Inner {
    pub(super) pool: Pool,
    /// This host's id in the `hosts` table: 16 random hex digits per open.
    pub(super) host_id: String,
    /// Run id → fence, for each run this host claimed and has not finished.
    pub(super) fences: Mutex<HashMap<i64, i64>>,
    /// Bumped on each `wasmcron_runs` notification (and on each (re)LISTEN).
    pub(super) wakeups: watch::Sender<u64>,
    /// The URL without its password, for messages.
    pub(super) describe: String,
    /// Dropped with the store, which ends the `LISTEN` task.
    _listening: oneshot::Sender<()>,
    /// Outcomes to write, together with those waiting beside them (see `outcomes`).
    outcomes: mpsc::UnboundedSender<outcomes::Outcome>,
    /// Triggers to insert, together with those waiting beside them (see `triggers`).
    triggers: mpsc::UnboundedSender<triggers::Trigger>,
}

impl std::ops::Deref for PgStore {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` URL) and creates
    /// or migrates its schema. Needs a tokio runtime.
    pub async fn open(url: &str) -> Result<PgStore> {
        let store = PgStore::connect(url)?;
        store.migrate().await?;
        Ok(store)
    }

    /// As [`open`](Self::open), for a database that must hold a wasmcron
    /// schema already (the read-only CLI commands).
    pub async fn open_existing(url: &str) -> Result<PgStore> {
        let store = PgStore::connect(url)?;
        if !store.has_schema().await? {
            let database = url.parse::<tokio_postgres::Config>().ok().and_then(|c| c.get_dbname().map(str::to_owned));
            let reason = format!(
                "no wasmcron schema in database {}; start a host with --store {} first",
                database.as_deref().unwrap_or("(the default)"),
                store.describe
            );
            return Err(StoreError::Backend {
                store: store.describe.clone(),
                kind: FailureKind::Other,
                source: reason.into(),
            });
        }
        store.migrate().await?;
        Ok(store)
    }

    fn connect(url: &str) -> Result<PgStore> {
        let describe = without_password(url);
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error| StoreError::BadUrl { url: describe.clone(), reason: bad_url_reason(&error) })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("wasmcron");
        }
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT))
            .create_timeout(Some(WAIT))
            .recycle_timeout(Some(WAIT))
            .build()
            .map_err(|source| StoreError::Backend {
                store: describe.clone(),
                kind: FailureKind::Other,
                source: Box::new(source),
            })?;
        let (wakeups, _) = watch::channel(0);
        let (listening, stop) = oneshot::channel();
        tokio::spawn(notify::listen(config, wakeups.clone(), stop, describe.clone()));
        let host_id = new_host_id();
        let (outcomes, queue) = mpsc::unbounded_channel();
        let writer = outcomes::Writer {
            pool: pool.clone(),
            host_id: host_id.clone(),
            error: Arc::new({
                let (pool, describe) = (pool.clone(), describe.clone());
                move |source| map_error(&pool, &describe, source)
            }),
            describe: describe.clone(),
        };
        tokio::spawn(outcomes::write(writer, queue));
        let (triggers, queue) = mpsc::unbounded_channel();
        let inner = Inner {
            pool,
            host_id,
            fences: Mutex::default(),
            wakeups,
            describe,
            _listening: listening,
            outcomes,
            triggers,
        };
        let inner = Arc::new(inner);
        tokio::spawn(triggers::write(Arc::downgrade(&inner), queue));
        Ok(PgStore { inner })
    }

    /// Bumped whenever another host (or this one) says runs may be
    /// waiting, and after each (re)connect of the `LISTEN` connection.
    pub fn subscribe_wakeups(&self) -> watch::Receiver<u64> {
        self.wakeups.subscribe()
    }

    /// A connection from the pool.
    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|error| match error {
            PoolError::Backend(error) => self.error(error),
            PoolError::Closed => StoreError::Closed,
            PoolError::Timeout(_) => StoreError::Backend {
                store: self.describe.clone(),
                kind: FailureKind::Io,
                source: format!("no database connection within {WAIT:?}").into(),
            },
            other => {
                StoreError::Backend { store: self.describe.clone(), kind: FailureKind::Other, source: Box::new(other) }
            }
        })
    }

    /// A PostgreSQL error as the host sees it: where, what kind, and the cause.
    ///
    /// A lost connection rarely goes alone (a restarted server, a
    /// `pg_terminate_backend` of every session): the idle ones are dropped
    /// too, so that the next operations connect afresh instead of each
    /// finding out on a dead connection of its own.
    pub(super) fn error(&self, source: tokio_postgres::Error) -> StoreError {
        map_error(&self.pool, &self.describe, source)
    }

    pub(super) fn corrupt(&self, id: i64, field: &'static str, value: impl std::fmt::Debug) -> StoreError {
        StoreError::Corrupt { store: self.describe.clone(), id, field, value: format!("{value:?}") }
    }
}

/// The errors for callers whose writes shared one failed statement (see
/// `outcomes` and `triggers`): the first gets the error as it came, each
/// other one of the same kind and words, to hold and try again.
fn shared_failure(error: StoreError, callers: usize, describe: &str) -> Vec<StoreError> {
    let (kind, message) = (error.kind(), error.to_string());
    let mut errors = vec![error];
    errors.extend((1..callers).map(|_| StoreError::Backend {
        store: describe.to_owned(),
        kind,
        source: message.clone().into(),
    }));
    errors
}

/// A PostgreSQL error as a `StoreError` (see `PgStore::error`).
fn map_error(pool: &Pool, describe: &str, source: tokio_postgres::Error) -> StoreError {
    let kind = kind(&source);
    if kind == FailureKind::Io {
        pool.retain(|_, _| false);
    }
    if source.to_string().starts_with("error connecting to server") {
        // tokio-postgres says "error connecting to server" twice over the
        // cause; say it once, with the cause and what to check.
        let mut cause: &dyn std::error::Error = &source;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        let reason = format!(
            "cannot connect to the database server: {cause}; check the host, port and user in the URL, and that \
             PostgreSQL is running and reachable from here"
        );
        return StoreError::Backend { store: describe.to_owned(), kind, source: reason.into() };
    }
    StoreError::Backend { store: describe.to_owned(), kind, source: Box::new(source) }
}

/// What kind of failure a PostgreSQL error is: the connection (lost,
/// refused, the server shutting down or a backend terminated) is `Io`, so
/// the scheduler holds and retries; no room is `Full`; conflicts and
/// timeouts are `Busy`.
fn kind(error: &tokio_postgres::Error) -> FailureKind {
    let Some(code) = error.code() else {
        if error.is_closed() || std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>()) {
            return FailureKind::Io;
        }
        // Errors with no SQLSTATE are the client's: connecting,
        // communicating and timeouts (Io), or (de)serialising a value (a bug).
        let text = error.to_string();
        let ours = text.starts_with("error serializing") || text.starts_with("error deserializing");
        return if ours { FailureKind::Other } else { FailureKind::Io };
    };
    let class = &code.code()[..2];
    if *code == SqlState::DISK_FULL || *code == SqlState::INSUFFICIENT_RESOURCES {
        FailureKind::Full
    } else if [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::QUERY_CANCELED,
        SqlState::TOO_MANY_CONNECTIONS,
    ]
    .contains(code)
    {
        FailureKind::Busy
    } else if class == "08"
        || [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW].contains(code)
    {
        FailureKind::Io
    } else {
        FailureKind::Other
    }
}

fn bad_url_reason(error: &tokio_postgres::Error) -> String {
    format!("not a PostgreSQL URL ({error}); write postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
}

/// `url` with any password blanked: in the user info and in a `password=` parameter.
pub(crate) fn without_password(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let authority = match authority.rsplit_once('@') {
                Some((user_info, hosts)) => {
                    let user = user_info.split_once(':').map_or(user_info, |(user, _)| user);
                    format!("{user}@{hosts}")
                }
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let kept: Vec<&str> = query.split('&').filter(|pair| !pair.starts_with("password=")).collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    out
}

/// 16 random hex digits: unique per open, for the `hosts` table and claims.
fn new_host_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random numbers");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl Store for PgStore {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn cluster(&self) -> Option<Arc<dyn Cluster>> {
        Some(Arc::new(self.clone()))
    }

    async fn record_fires(&self, fires: Vec<Fire>, now: DateTime<Utc>) -> Result<Vec<FireRecorded>> {
        self.fires(fires, now).await
    }

    async fn insert_runs(&self, runs: Vec<NewRun>) -> Result<Vec<i64>> {
        self.insert(&runs).await
    }

    async fn trigger_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<(i64, bool)> {
        self.trigger(NewRun { triggered_at: Some(now), ..run }, now).await
    }

    async fn miss_pending(&self, runs: Vec<(i64, String)>, now: DateTime<Utc>) -> Result<()> {
        self.miss(runs, now).await
    }

    async fn start_run(&self, id: i64, started_at: DateTime<Utc>, module_sha256: String) -> Result<()> {
        self.start(id, started_at, &module_sha256).await
    }

    async fn finish_run(&self, id: i64, finished: Finished) -> Result<()> {
        self.finish(id, &finished).await
    }

    async fn cancel_pending(&self, id: i64, now: DateTime<Utc>) -> Result<Cancelled> {
        self.cancel(id, now).await
    }

    async fn recover(&self, now: DateTime<Utc>, attempts: BTreeMap<String, u32>) -> Result<Recovered> {
        self.recover_runs(now, &attempts).await
    }

    async fn record_catch_up(&self, jobs: Vec<CatchUp>) -> Result<Vec<PendingRun>> {
        self.catch_up(jobs).await
    }

    async fn run(&self, id: i64) -> Result<Option<RunRecord>> {
        self.one_run(id).await
    }

    async fn keyed_run(&self, job: String, key: String, now: DateTime<Utc>) -> Result<Option<i64>> {
        let held = self.run_with_key(&job, &key).await?;
        Ok(held.filter(|(_, at)| at.is_some_and(|at| at >= now - crate::store::KEY_WINDOW)).map(|(id, _)| id))
    }

    async fn run_payload(&self, id: i64) -> Result<Vec<u8>> {
        self.payload(id).await
    }

    async fn runs(&self, query: RunQuery) -> Result<Vec<RunRecord>> {
        self.list(&query).await
    }

    async fn last_outcomes(&self, jobs: Vec<String>) -> Result<Vec<RunRecord>> {
        self.outcomes(&jobs).await
    }

    async fn prune(&self, retention: Retention, now: DateTime<Utc>) -> Result<usize> {
        self.prune_runs(&retention, now).await
    }

    async fn job_states(&self) -> Result<BTreeMap<String, JobState>> {
        self.states().await
    }

    async fn set_paused(&self, job: String, paused: bool, reason: Option<String>) -> Result<()> {
        self.pause(&job, paused, reason.as_deref()).await
    }

    async fn set_last_fire(&self, job: String, at: DateTime<Utc>) -> Result<()> {
        self.watermark(&job, at).await
    }

    async fn record_loads(&self, loads: Vec<Load>, now: DateTime<Utc>) -> Result<()> {
        self.loads(&loads, now).await
    }

    async fn kv_get(&self, job: String, key: String) -> Result<Option<Vec<u8>>> {
        self.kv_value(&job, &key).await
    }

    async fn kv_set(&self, job: String, key: String, value: Vec<u8>) -> Result<bool> {
        self.kv_put(&job, &key, &value).await
    }

    async fn kv_delete(&self, job: String, key: String) -> Result<()> {
        self.kv_remove(&job, &key).await
    }

    async fn kv_list(&self, job: String, prefix: String) -> Result<Vec<String>> {
        self.kv_keys(&job, &prefix).await
    }
}
