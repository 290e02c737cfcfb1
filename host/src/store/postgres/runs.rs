//! Runs in PostgreSQL: inserted (in one statement however many, with a
//! notification for idle hosts), triggered under an idempotency key that
//! the unique index `runs_by_key` keeps to one run across hosts, started,
//! finished under this host's fence, listed, recovered and pruned.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::oneshot;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

use super::PgStore;
use super::notify::CHANNEL;
use super::outcomes::Outcome;
use crate::record::{RunRecord, Trigger};
use crate::store::{
    Cancelled, FailureKind, Finished, KEY_WINDOW, NewRun, PendingRun, Recovered, Result, Retention, RunQuery,
    StoreError,
};

pub(super) const RUN_COLUMNS: &str = "id, job, status, trigger, attempt, scheduled_for, started_at, ended_at, \
     exit_code, error, fuel_used, module_sha256, stdout, stderr, output_dropped, parent_run";

pub(super) const PENDING_COLUMNS: &str = "id, job, trigger, attempt, scheduled_for, payload, triggered_at";

/// Statuses a run can still leave: never pruned, never counted as history.
const OPEN: &str = "('pending', 'running')";

const ABANDONED: &str = "the host stopped during this run (found at the next start)";

/// What an inserted row does when it meets one already there.
#[derive(Clone, Copy)]
pub(super) enum OnConflict {
    /// Fails the insert: nothing should be there (retries, enqueued runs).
    Fail,
    /// Is left out: a scheduled fire another host recorded first.
    SameFire,
    /// Is left out: an idempotency key another run holds.
    SameKey,
}

/// Inserts the rows bound by [`Rows::params`], in order, and returns each
/// written row's id, job, time and whether it is a fire, by id. Notifies
/// idle hosts if `$15` and a row was written.
fn insert_sql(conflict: OnConflict) -> String {
    let conflict = match conflict {
        OnConflict::Fail => "",
        OnConflict::SameFire => "ON CONFLICT (job, scheduled_for) WHERE fire DO NOTHING",
        OnConflict::SameKey => "ON CONFLICT (job, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
    };
    format!(
        "WITH inserted AS (
            INSERT INTO runs (job, status, trigger, attempt, scheduled_for, started_at, ended_at, error,
                              module_sha256, payload, parent_run, idempotency_key, triggered_at, fire)
            SELECT job, status, trigger, attempt, scheduled_for, started_at, ended_at, error,
                   module_sha256, payload, parent_run, idempotency_key, triggered_at, fire
            FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::timestamptz[], $6::timestamptz[],
                        $7::timestamptz[], $8::text[], $9::text[], $10::bytea[], $11::int8[], $12::text[],
                        $13::timestamptz[], $14::bool[])
                 WITH ORDINALITY AS r(job, status, trigger, attempt, scheduled_for, started_at, ended_at, error,
                                      module_sha256, payload, parent_run, idempotency_key, triggered_at, fire, n)
            ORDER BY n
            {conflict}
            RETURNING id, job, scheduled_for, fire
         ), announced AS (
            SELECT pg_notify('{CHANNEL}', '') FROM (SELECT 1 FROM inserted LIMIT 1) AS one WHERE $15::bool
         )
         SELECT id, job, scheduled_for, fire, (SELECT count(*) FROM announced) FROM inserted ORDER BY id"
    )
}

static INSERT: LazyLock<String> = LazyLock::new(|| insert_sql(OnConflict::Fail));
static INSERT_FIRES: LazyLock<String> = LazyLock::new(|| insert_sql(OnConflict::SameFire));
static INSERT_KEYED: LazyLock<String> = LazyLock::new(|| insert_sql(OnConflict::SameKey));

/// Runs to insert, column by column, as `unnest` takes them.
#[derive(Default)]
pub(super) struct Rows {
    job: Vec<String>,
    status: Vec<&'static str>,
    trigger: Vec<&'static str>,
    attempt: Vec<i32>,
    scheduled_for: Vec<DateTime<Utc>>,
    started_at: Vec<Option<DateTime<Utc>>>,
    ended_at: Vec<Option<DateTime<Utc>>>,
    error: Vec<Option<String>>,
    module_sha256: Vec<Option<String>>,
    payload: Vec<Vec<u8>>,
    parent_run: Vec<Option<i64>>,
    idempotency_key: Vec<Option<String>>,
    triggered_at: Vec<Option<DateTime<Utc>>>,
    fire: Vec<bool>,
}

impl Rows {
    /// `fire`: the row is a scheduled fire's own (one per job and time).
    pub fn push(&mut self, run: &NewRun, fire: bool) {
        self.job.push(run.job.clone());
        self.status.push(run.status.as_str());
        self.trigger.push(run.trigger.as_str());
        self.attempt.push(run.attempt as i32);
        self.scheduled_for.push(run.scheduled_for);
        self.started_at.push(run.started_at);
        self.ended_at.push(run.ended_at);
        self.error.push(run.error.clone());
        self.module_sha256.push(run.module_sha256.clone());
        self.payload.push(run.payload.clone());
        self.parent_run.push(run.parent_run);
        self.idempotency_key.push(run.idempotency_key.clone());
        self.triggered_at.push(run.triggered_at);
        self.fire.push(fire);
    }

    pub fn is_empty(&self) -> bool {
        self.job.is_empty()
    }

    fn params<'a>(&'a self, notify: &'a bool) -> [&'a (dyn ToSql + Sync); 15] {
        [
            &self.job,
            &self.status,
            &self.trigger,
            &self.attempt,
            &self.scheduled_for,
            &self.started_at,
            &self.ended_at,
            &self.error,
            &self.module_sha256,
            &self.payload,
            &self.parent_run,
            &self.idempotency_key,
            &self.triggered_at,
            &self.fire,
            notify,
        ]
    }
}

/// A row an insert wrote: its id, job, time and whether it is a fire.
pub(super) type Inserted = (i64, String, DateTime<Utc>, bool);

/// Whether a run is a scheduled fire's own row (see the `fire` column).
pub(super) fn is_fire(run: &NewRun) -> bool {
    matches!(run.trigger, Trigger::Schedule | Trigger::CatchUp) && run.attempt == 1
}

impl PgStore {
    /// Inserts `rows` in one statement; the rows written, in the order given
    /// (ids count up in insertion order), those met by a conflict left out.
    pub(super) async fn insert_rows(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        rows: &Rows,
        conflict: OnConflict,
        notify: bool,
    ) -> Result<Vec<Inserted>> {
        let sql = match conflict {
            OnConflict::Fail => &*INSERT,
            OnConflict::SameFire => &*INSERT_FIRES,
            OnConflict::SameKey => &*INSERT_KEYED,
        };
        let statement = client.prepare_cached(sql).await.map_err(|e| self.error(e))?;
        let found = client.query(&statement, &rows.params(&notify)).await.map_err(|e| self.error(e))?;
        found
            .iter()
            .map(|row| Ok((get(self, row, 0)?, get(self, row, 1)?, get(self, row, 2)?, get(self, row, 3)?)))
            .collect()
    }

    pub(super) async fn insert(&self, runs: &[NewRun]) -> Result<Vec<i64>> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows = Rows::default();
        for run in runs {
            rows.push(run, false);
        }
        let client = self.client().await?;
        let inserted = self.insert_rows(&client, &rows, OnConflict::Fail, true).await?;
        Ok(inserted.into_iter().map(|(id, ..)| id).collect())
    }

    /// A trigger in one statement; with an idempotency key another run
    /// holds, that run (or, once its key has expired, the key released and
    /// the insert tried again). Race-safe across hosts: the unique index
    /// lets one insert through, and the others find its run.
    pub(super) async fn trigger(&self, run: NewRun, now: DateTime<Utc>) -> Result<(i64, bool)> {
        let Some(key) = run.idempotency_key.clone() else {
            // Inserted with the triggers waiting beside it (see `triggers`).
            let (answer, answered) = oneshot::channel();
            self.triggers.send(super::triggers::Trigger { run, answer }).map_err(|_| StoreError::Closed)?;
            return Ok((answered.await.map_err(|_| StoreError::Closed)??, true));
        };
        let key = &key;
        let mut rows = Rows::default();
        rows.push(&run, false);
        let client = self.client().await?;
        // Each round inserts, finds the holder, or releases an expired key
        // (which another host may then take first: the next round finds it).
        for _ in 0..4 {
            if let Some(&(id, ..)) = self.insert_rows(&client, &rows, OnConflict::SameKey, true).await?.first() {
                return Ok((id, true));
            }
            match self.key_holder(&client, &run.job, key).await? {
                Some((id, Some(at))) if at >= now - KEY_WINDOW => return Ok((id, false)),
                Some((id, _)) => {
                    let release = "UPDATE runs SET idempotency_key = NULL WHERE id = $1 AND idempotency_key = $2";
                    client.execute(release, &[&id, key]).await.map_err(|e| self.error(e))?;
                }
                None => {} // released by another host meanwhile: try again
            }
        }
        Err(StoreError::Backend {
            store: self.describe.clone(),
            kind: FailureKind::Busy,
            source: format!("idempotency key {key:?} of job {} changed hands too often to settle", run.job).into(),
        })
    }

    /// The run of `job` holding idempotency `key`, if any, and when it took it.
    pub(super) async fn run_with_key(&self, job: &str, key: &str) -> Result<Option<(i64, Option<DateTime<Utc>>)>> {
        let client = self.client().await?;
        self.key_holder(&client, job, key).await
    }

    /// As [`run_with_key`](Self::run_with_key), on a connection the caller
    /// holds (taking a second from the pool while holding one could wait
    /// forever once every caller holds one).
    async fn key_holder(
        &self,
        client: &deadpool_postgres::Object,
        job: &str,
        key: &str,
    ) -> Result<Option<(i64, Option<DateTime<Utc>>)>> {
        let statement = client
            .prepare_cached("SELECT id, triggered_at FROM runs WHERE job = $1 AND idempotency_key = $2")
            .await
            .map_err(|e| self.error(e))?;
        let row = client.query_opt(&statement, &[&job, &key]).await.map_err(|e| self.error(e))?;
        row.map(|row| Ok((get(self, &row, 0)?, get(self, &row, 1)?))).transpose()
    }

    /// Ends pending runs as `missed`, each with why; runs no longer pending
    /// are left alone.
    pub(super) async fn miss(&self, runs: Vec<(i64, String)>, now: DateTime<Utc>) -> Result<()> {
        let (ids, whys): (Vec<i64>, Vec<String>) = runs.into_iter().unzip();
        let client = self.client().await?;
        client
            .execute(
                "UPDATE runs SET status = 'missed', ended_at = $3, error = u.why
                 FROM unnest($1::int8[], $2::text[]) AS u(id, why)
                 WHERE runs.id = u.id AND runs.status = 'pending'",
                &[&ids, &whys, &now],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    pub(super) async fn start(&self, id: i64, started_at: DateTime<Utc>, module_sha256: &str) -> Result<()> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("UPDATE runs SET status = 'running', started_at = $2, module_sha256 = $3 WHERE id = $1")
            .await
            .map_err(|e| self.error(e))?;
        client.execute(&statement, &[&id, &started_at, &module_sha256]).await.map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Writes a run's outcome, only while it is still this attempt: a run
    /// this host claimed, under its fence; any other (`start_run`, `once`),
    /// only while no host holds it. Otherwise `Superseded`.
    /// Writes a run's outcome, in the next statement of outcomes (see
    /// `outcomes`), while the run is still this host's attempt.
    pub(super) async fn finish(&self, id: i64, finished: &Finished) -> Result<()> {
        let fence = self.fences.lock().expect("the fences lock").get(&id).copied();
        let (answer, answered) = oneshot::channel();
        let outcome = Outcome { id, fence, finished: finished.clone(), answer };
        self.outcomes.send(outcome).map_err(|_| StoreError::Closed)?;
        let written = answered.await.map_err(|_| StoreError::Closed)?;
        // Only a definite answer forgets the fence: a write that failed on
        // the way is retried (the backlog), and must carry it again.
        if fence.is_some() && matches!(written, Ok(()) | Err(StoreError::Superseded { .. })) {
            self.fences.lock().expect("the fences lock").remove(&id);
        }
        written
    }

    pub(super) async fn cancel(&self, id: i64, now: DateTime<Utc>) -> Result<Cancelled> {
        let client = self.client().await?;
        let cancelled = client
            .execute(
                "UPDATE runs SET status = 'cancelled', ended_at = $2, error = 'cancelled before it started'
                 WHERE id = $1 AND status = 'pending'",
                &[&id, &now],
            )
            .await
            .map_err(|e| self.error(e))?;
        if cancelled == 1 {
            return Ok(Cancelled::WasPending);
        }
        let row = client.query_opt("SELECT status FROM runs WHERE id = $1", &[&id]).await.map_err(|e| self.error(e))?;
        let Some(row) = row else { return Ok(Cancelled::NoSuchRun) };
        let status: String = get(self, &row, 0)?;
        Ok(Cancelled::Not(status.parse().map_err(|_| self.corrupt(id, "status", &status))?))
    }

    pub(super) async fn one_run(&self, id: i64) -> Result<Option<RunRecord>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
            .await
            .map_err(|e| self.error(e))?;
        let row = client.query_opt(&statement, &[&id]).await.map_err(|e| self.error(e))?;
        row.map(|row| self.record(&row)).transpose()
    }

    /// The payload a run was given (empty if there is no such run).
    pub(super) async fn payload(&self, id: i64) -> Result<Vec<u8>> {
        let client = self.client().await?;
        let row =
            client.query_opt("SELECT payload FROM runs WHERE id = $1", &[&id]).await.map_err(|e| self.error(e))?;
        row.map(|row| get(self, &row, 0)).transpose().map(Option::unwrap_or_default)
    }

    /// The WHERE clause names only the filters given, so that PostgreSQL can
    /// use `runs_by_job` or `runs_by_due`.
    pub(super) async fn list(&self, query: &RunQuery) -> Result<Vec<RunRecord>> {
        let mut clauses: Vec<String> = Vec::new();
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut bind = |value: Box<dyn ToSql + Sync + Send>| {
            values.push(value);
            format!("${}", values.len())
        };
        if let Some(job) = &query.job {
            clauses.push(format!("job = {}", bind(Box::new(job.clone()))));
        }
        if let Some(status) = query.status {
            clauses.push(format!("status = {}", bind(Box::new(status.as_str()))));
        }
        if let Some(trigger) = query.trigger {
            clauses.push(format!("trigger = {}", bind(Box::new(trigger.as_str()))));
        }
        if let Some(since) = query.since {
            clauses.push(format!("scheduled_for >= {}", bind(Box::new(since))));
        }
        if let Some(until) = query.until {
            clauses.push(format!("scheduled_for < {}", bind(Box::new(until))));
        }
        if let Some(at) = query.scheduled_for {
            // To the millisecond, as the API shows times.
            let (from, to) = (bind(Box::new(at)), bind(Box::new(at + TimeDelta::milliseconds(1))));
            clauses.push(format!("scheduled_for >= {from} AND scheduled_for < {to}"));
        }
        if let Some(text) = &query.search {
            let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            let pattern = bind(Box::new(format!("%{escaped}%")));
            let id = bind(Box::new(text.trim().trim_start_matches('#').parse::<i64>().ok()));
            clauses.push(format!(
                "(job ILIKE {pattern} ESCAPE '\\' OR error ILIKE {pattern} ESCAPE '\\' OR id = {id}::int8)"
            ));
        }
        if let Some(before) = query.before {
            clauses.push(format!("id < {}", bind(Box::new(before))));
        }
        let limit = bind(Box::new(i64::from(query.limit)));
        let filter = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs {filter} ORDER BY id DESC LIMIT {limit}");
        let client = self.client().await?;
        let statement = client.prepare_cached(&sql).await.map_err(|e| self.error(e))?;
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
        let rows = client.query(&statement, &params).await.map_err(|e| self.error(e))?;
        rows.iter().map(|row| self.record(row)).collect()
    }

    /// One index seek per job (`runs_by_job`, newest first), in one statement.
    pub(super) async fn outcomes(&self, jobs: &[String]) -> Result<Vec<RunRecord>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT r.* FROM unnest($1::text[]) WITH ORDINALITY AS j(job, n)
                 CROSS JOIN LATERAL (
                     SELECT {RUN_COLUMNS} FROM runs
                     WHERE runs.job = j.job AND status NOT IN ('pending', 'running', 'skipped', 'missed')
                     ORDER BY id DESC LIMIT 1) AS r
                 ORDER BY j.n"
            ))
            .await
            .map_err(|e| self.error(e))?;
        let rows = client.query(&statement, &[&jobs]).await.map_err(|e| self.error(e))?;
        rows.iter().map(|row| self.record(row)).collect()
    }

    /// Abandons the runs no live host holds — those whose lease lapsed by
    /// the database's clock, and those a `start_run` (`once`) left with no
    /// host — recording retries in the same statement; then lists every
    /// pending run. Runs other hosts hold under a lease are not touched.
    pub(super) async fn recover_runs(&self, now: DateTime<Utc>, attempts: &BTreeMap<String, u32>) -> Result<Recovered> {
        let (jobs, tries): (Vec<&str>, Vec<i32>) = attempts.iter().map(|(job, n)| (job.as_str(), *n as i32)).unzip();
        let client = self.client().await?;
        let abandoned = client
            .query(
                &format!(
                    "WITH gone AS (
                        UPDATE runs SET status = 'abandoned', ended_at = $1, error = $2
                        WHERE status = 'running' AND (lease_until < now() OR (lease_until IS NULL AND host_id IS NULL))
                        RETURNING {RUN_COLUMNS}, payload
                     ), retried AS (
                        INSERT INTO runs (job, status, trigger, attempt, scheduled_for, payload)
                        SELECT g.job, 'pending', 'retry', g.attempt + 1, $1, g.payload
                        FROM gone AS g JOIN unnest($3::text[], $4::int4[]) AS a(job, tries) ON a.job = g.job
                        WHERE g.attempt < a.tries
                        ORDER BY g.id
                     )
                     SELECT {RUN_COLUMNS} FROM gone ORDER BY id"
                ),
                &[&now, &ABANDONED, &jobs, &tries],
            )
            .await
            .map_err(|e| self.error(e))?;
        let abandoned = abandoned.iter().map(|row| self.record(row)).collect::<Result<Vec<_>>>()?;
        let pending = client
            .query(
                &format!("SELECT {PENDING_COLUMNS} FROM runs WHERE status = 'pending' ORDER BY scheduled_for, id"),
                &[],
            )
            .await
            .map_err(|e| self.error(e))?;
        let pending = pending.iter().map(|row| self.pending_run(row)).collect::<Result<Vec<_>>>()?;
        Ok(Recovered { abandoned, pending })
    }

    /// Both deletions in one statement; the count cap ranks only the runs
    /// the age limits keep, as SQLite's two statements in turn do.
    pub(super) async fn prune_runs(&self, retention: &Retention, now: DateTime<Utc>) -> Result<usize> {
        // Year 1: older than anything recorded, and within timestamptz's range.
        let floor = DateTime::<Utc>::from_timestamp(-62_135_596_800, 0).expect("0001-01-01 is a valid instant");
        let cutoff = |age: std::time::Duration| {
            TimeDelta::from_std(age).ok().and_then(|age| now.checked_sub_signed(age)).unwrap_or(floor).max(floor)
        };
        let aged = format!(
            "status NOT IN {OPEN} AND ((status IN ('succeeded', 'skipped', 'missed') AND scheduled_for < $1)
                                       OR scheduled_for < $2)"
        );
        let sql = format!(
            "WITH aged AS (
                DELETE FROM runs WHERE {aged} RETURNING 1
             ), counted AS (
                DELETE FROM runs WHERE id IN (
                    SELECT id FROM (
                        SELECT id, row_number() OVER (PARTITION BY job ORDER BY id DESC) AS newer
                        FROM runs WHERE status NOT IN {OPEN} AND NOT ({aged})) AS ranked
                    WHERE newer > $3)
                RETURNING 1
             )
             SELECT (SELECT count(*) FROM aged) + (SELECT count(*) FROM counted)"
        );
        let client = self.client().await?;
        let max_count = i64::from(retention.max_count);
        let row = client
            .query_one(&sql, &[&cutoff(retention.max_age), &cutoff(retention.failed_max_age), &max_count])
            .await
            .map_err(|e| self.error(e))?;
        let deleted: i64 = get(self, &row, 0)?;
        Ok(deleted as usize)
    }

    /// A row of [`RUN_COLUMNS`] as a record.
    pub(super) fn record(&self, row: &Row) -> Result<RunRecord> {
        let id: i64 = get(self, row, 0)?;
        let status: String = get(self, row, 2)?;
        let trigger: String = get(self, row, 3)?;
        let attempt: i32 = get(self, row, 4)?;
        let fuel_used: Option<i64> = get(self, row, 10)?;
        let output_dropped: i64 = get(self, row, 14)?;
        Ok(RunRecord {
            id,
            job: get(self, row, 1)?,
            status: status.parse().map_err(|_| self.corrupt(id, "status", &status))?,
            trigger: trigger.parse().map_err(|_| self.corrupt(id, "trigger", &trigger))?,
            attempt: u32::try_from(attempt).map_err(|_| self.corrupt(id, "attempt", attempt))?,
            scheduled_for: get(self, row, 5)?,
            started_at: get(self, row, 6)?,
            ended_at: get(self, row, 7)?,
            exit_code: get(self, row, 8)?,
            error: get(self, row, 9)?,
            fuel_used: fuel_used.map(|f| f as u64),
            module_sha256: get(self, row, 11)?,
            stdout: get(self, row, 12)?,
            stderr: get(self, row, 13)?,
            output_dropped: output_dropped as u64,
            parent_run: get(self, row, 15)?,
        })
    }

    /// A row of [`PENDING_COLUMNS`] as a pending run.
    pub(super) fn pending_run(&self, row: &Row) -> Result<PendingRun> {
        let id: i64 = get(self, row, 0)?;
        let trigger: String = get(self, row, 2)?;
        let attempt: i32 = get(self, row, 3)?;
        let scheduled_for: DateTime<Utc> = get(self, row, 4)?;
        let triggered_at: Option<DateTime<Utc>> = get(self, row, 6)?;
        Ok(PendingRun {
            id,
            job: get(self, row, 1)?,
            trigger: trigger.parse().map_err(|_| self.corrupt(id, "trigger", &trigger))?,
            attempt: u32::try_from(attempt).map_err(|_| self.corrupt(id, "attempt", attempt))?,
            scheduled_for,
            payload: get(self, row, 5)?,
            delayed: triggered_at.is_some_and(|at| scheduled_for > at),
        })
    }
}

/// Column `index` of `row`, or why it does not convert.
pub(super) fn get<'a, T: FromSql<'a>>(store: &PgStore, row: &'a Row, index: usize) -> Result<T> {
    row.try_get(index).map_err(|e| store.error(e))
}
