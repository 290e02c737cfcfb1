//! The PostgreSQL schema, versioned in `wasmcron_schema` and migrated
//! forward at open, inside one transaction holding an advisory lock, so
//! hosts starting together against a new database migrate it once. Times
//! are `timestamptz`, bytes `bytea`; statuses and triggers are the text
//! `RunStatus::as_str` and `Trigger::as_str` give, as in SQLite.

use super::PgStore;
use crate::store::{Result, StoreError};

/// The advisory lock migrations are applied under (`pg_advisory_xact_lock`):
/// any number, the same in every wasmcron ("wcrn" in ASCII).
const MIGRATION_LOCK: i64 = 0x7763_726e;

/// Each entry moves the schema one version forward; never edit a shipped one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: runs (with the cluster's claim columns), per-job state, the key-value
    // store and the hosts sharing the database.
    "CREATE TABLE runs (
        id              BIGSERIAL PRIMARY KEY,
        job             TEXT        NOT NULL,
        status          TEXT        NOT NULL,
        trigger         TEXT        NOT NULL,
        attempt         INTEGER     NOT NULL,
        scheduled_for   TIMESTAMPTZ NOT NULL,
        started_at      TIMESTAMPTZ,
        ended_at        TIMESTAMPTZ,
        exit_code       INTEGER,
        error           TEXT,
        fuel_used       BIGINT,
        module_sha256   TEXT,
        stdout          BYTEA       NOT NULL DEFAULT '',
        stderr          BYTEA       NOT NULL DEFAULT '',
        output_dropped  BIGINT      NOT NULL DEFAULT 0,
        payload         BYTEA       NOT NULL DEFAULT '',
        parent_run      BIGINT,
        idempotency_key TEXT,
        triggered_at    TIMESTAMPTZ,
        -- A scheduled fire's own row: trigger schedule or catch_up, attempt 1
        -- (pending, skipped or missed). One per (job, scheduled_for), however
        -- many hosts record the fire.
        fire            BOOLEAN     NOT NULL DEFAULT false,
        -- The host that claimed the run, the attempt's fence, and until when
        -- its lease holds by the database's clock.
        host_id         TEXT,
        fence           BIGINT      NOT NULL DEFAULT 0,
        lease_until     TIMESTAMPTZ
    );
    CREATE UNIQUE INDEX runs_one_per_fire ON runs (job, scheduled_for) WHERE fire;
    CREATE UNIQUE INDEX runs_by_key ON runs (job, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX runs_by_job ON runs (job, id);
    CREATE INDEX runs_by_due ON runs (scheduled_for);
    CREATE INDEX runs_pending ON runs (scheduled_for, id) WHERE status = 'pending';
    CREATE INDEX runs_leased ON runs (lease_until) WHERE status = 'running';
    -- A job's open runs, for the shared overlap verdicts on each fire.
    CREATE INDEX runs_open ON runs (job) WHERE status IN ('pending', 'running');
    CREATE TABLE jobs (
        job           TEXT PRIMARY KEY,
        last_fire     TIMESTAMPTZ,
        paused        BOOLEAN NOT NULL DEFAULT false,
        paused_reason TEXT,
        module_sha256 TEXT,
        loaded_at     TIMESTAMPTZ,
        load_error    TEXT
    );
    CREATE TABLE kv (
        job   TEXT  NOT NULL,
        key   TEXT  NOT NULL,
        value BYTEA NOT NULL,
        PRIMARY KEY (job, key)
    );
    CREATE TABLE hosts (
        id           TEXT PRIMARY KEY,
        name         TEXT        NOT NULL,
        version      TEXT        NOT NULL,
        started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
        heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        modules      JSONB       NOT NULL DEFAULT '{}',
        declarations JSONB       NOT NULL DEFAULT '{}'
    );",
];

impl PgStore {
    /// Whether the database holds a wasmcron schema at all.
    pub(super) async fn has_schema(&self) -> Result<bool> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT to_regclass('wasmcron_schema') IS NOT NULL", &[])
            .await
            .map_err(|e| self.error(e))?;
        Ok(row.get(0))
    }

    /// The schema version of the database (0 before the first migration).
    pub async fn schema_version(&self) -> Result<i64> {
        if !self.has_schema().await? {
            return Ok(0);
        }
        let client = self.client().await?;
        let row = client.query_opt("SELECT version FROM wasmcron_schema", &[]).await.map_err(|e| self.error(e))?;
        Ok(row.map_or(0, |row| i64::from(row.get::<_, i32>(0))))
    }

    /// Brings the schema up to date, or refuses one newer than this
    /// wasmcron knows. One transaction: the lock, the version read, every
    /// migration and the new version, so a failure leaves the old schema.
    pub(super) async fn migrate(&self) -> Result<()> {
        let known = MIGRATIONS.len() as i64;
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.error(e))?;
        let step = async {
            transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
            transaction.batch_execute("CREATE TABLE IF NOT EXISTS wasmcron_schema (version INTEGER NOT NULL)").await?;
            let row = transaction.query_opt("SELECT version FROM wasmcron_schema", &[]).await?;
            Ok::<_, tokio_postgres::Error>(row.map(|row| i64::from(row.get::<_, i32>(0))))
        };
        let found = step.await.map_err(|e| self.error(e))?;
        let version = found.unwrap_or(0);
        if version > known {
            return Err(StoreError::TooNew { store: self.describe.clone(), found: version, known });
        }
        if version == known {
            return Ok(()); // dropping the transaction rolls it back: nothing was changed
        }
        let apply = async {
            for sql in &MIGRATIONS[version as usize..] {
                transaction.batch_execute(sql).await?;
            }
            let known = known as i32;
            match found {
                Some(_) => transaction.execute("UPDATE wasmcron_schema SET version = $1", &[&known]).await?,
                None => transaction.execute("INSERT INTO wasmcron_schema (version) VALUES ($1)", &[&known]).await?,
            };
            transaction.commit().await
        };
        apply.await.map_err(|e| self.error(e))
    }
}
