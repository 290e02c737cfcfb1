//! Runs in SQLite: written before they start, finished in place, listed,
//! recovered at start and pruned.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

use super::db::{Db, from_micros, micros};
use crate::record::{RunRecord, RunStatus, Trigger};
use crate::store::{Cancelled, Finished, NewRun, PendingRun, Recovered, Result, Retention, RunQuery};

const RUN_COLUMNS: &str = "id, job, status, trigger, attempt, scheduled_for, started_at, ended_at, exit_code, error, \
     fuel_used, module_sha256, stdout, stderr, output_dropped, parent_run";

/// Statuses a run can still leave: never pruned, never counted as history.
const OPEN: &str = "('pending', 'running')";

const ABANDONED: &str = "the host stopped during this run (found at the next start)";

impl Db {
    pub fn insert_run(&self, run: &NewRun) -> Result<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO runs (job, status, trigger, attempt, scheduled_for, started_at, ended_at, error,
                                   module_sha256, payload, parent_run, idempotency_key, triggered_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    run.job,
                    run.status.as_str(),
                    run.trigger.as_str(),
                    run.attempt,
                    micros(run.scheduled_for),
                    run.started_at.map(micros),
                    run.ended_at.map(micros),
                    run.error,
                    run.module_sha256,
                    run.payload,
                    run.parent_run,
                    run.idempotency_key,
                    run.triggered_at.map(micros),
                ])
            })
            .map_err(|e| self.error(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The run of `job` holding idempotency `key`, if any, and when it took it.
    pub fn run_with_key(&self, job: &str, key: &str) -> Result<Option<(i64, Option<i64>)>> {
        self.conn
            .prepare_cached("SELECT id, triggered_at FROM runs WHERE job = ?1 AND idempotency_key = ?2")
            .and_then(|mut select| select.query_row(params![job, key], |row| Ok((row.get(0)?, row.get(1)?))).optional())
            .map_err(|e| self.error(e))
    }

    /// Lets go of run `id`'s idempotency key, once it has expired.
    pub fn release_key(&self, id: i64) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE runs SET idempotency_key = NULL WHERE id = ?1")
            .and_then(|mut update| update.execute([id]))
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Ends pending runs as `missed`, each with why; runs no longer
    /// pending are left alone.
    pub fn miss_pending(&self, runs: &[(i64, String)], now: DateTime<Utc>) -> Result<()> {
        let mut update = self
            .conn
            .prepare_cached(
                "UPDATE runs SET status = 'missed', ended_at = ?2, error = ?3 WHERE id = ?1 AND status = 'pending'",
            )
            .map_err(|e| self.error(e))?;
        for (id, why) in runs {
            update.execute(params![id, micros(now), why]).map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    pub fn start_run(&self, id: i64, started_at: DateTime<Utc>, module_sha256: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE runs SET status = 'running', started_at = ?2, module_sha256 = ?3 WHERE id = ?1")
            .and_then(|mut update| update.execute(params![id, micros(started_at), module_sha256]))
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    pub fn finish_run(&self, id: i64, finished: &Finished) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE runs SET status = ?2, ended_at = ?3, exit_code = ?4, error = ?5, fuel_used = ?6,
                        stdout = ?7, stderr = ?8, output_dropped = ?9
                 WHERE id = ?1",
            )
            .and_then(|mut update| {
                update.execute(params![
                    id,
                    finished.status.as_str(),
                    micros(finished.ended_at),
                    finished.exit_code,
                    finished.error,
                    finished.fuel_used.map(|f| f as i64),
                    finished.stdout,
                    finished.stderr,
                    finished.output_dropped as i64,
                ])
            })
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    pub fn cancel_pending(&self, id: i64, now: DateTime<Utc>) -> Result<Cancelled> {
        let status: Option<String> = self
            .conn
            .query_row("SELECT status FROM runs WHERE id = ?1", [id], |row| row.get(0))
            .optional()
            .map_err(|e| self.error(e))?;
        let Some(status) = status else { return Ok(Cancelled::NoSuchRun) };
        let status: RunStatus = status.parse().map_err(|_| self.corrupt(id, "status", &status))?;
        if status != RunStatus::Pending {
            return Ok(Cancelled::Not(status));
        }
        self.conn
            .execute(
                "UPDATE runs SET status = 'cancelled', ended_at = ?2, error = 'cancelled before it started' WHERE id = ?1",
                params![id, micros(now)],
            )
            .map_err(|e| self.error(e))?;
        Ok(Cancelled::WasPending)
    }

    pub fn run(&self, id: i64) -> Result<Option<RunRecord>> {
        let row = self
            .conn
            .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))
            .and_then(|mut select| select.query_row([id], RawRun::from_row).optional())
            .map_err(|e| self.error(e))?;
        row.map(|raw| raw.into_record(self)).transpose()
    }

    /// The WHERE clause names only the filters given, so that SQLite can
    /// walk `runs_by_job`, `runs_by_status` or `runs_by_due` (a filter
    /// written `?1 IS NULL OR job = ?1` would make it scan every run).
    pub fn runs(&self, query: &RunQuery) -> Result<Vec<RunRecord>> {
        let mut clauses: Vec<&str> = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        // Bare `?` parameters take the values in the order they appear.
        let mut filter = |clause: &'static str, bound: Vec<rusqlite::types::Value>| {
            clauses.push(clause);
            values.extend(bound);
        };
        use rusqlite::types::Value::{Integer, Text};
        if let Some(job) = &query.job {
            filter("job = ?", vec![Text(job.clone())]);
        }
        if let Some(status) = query.status {
            filter("status = ?", vec![Text(status.as_str().into())]);
        }
        if let Some(trigger) = query.trigger {
            filter("trigger = ?", vec![Text(trigger.as_str().into())]);
        }
        if let Some(since) = query.since {
            filter("scheduled_for >= ?", vec![Integer(micros(since))]);
        }
        if let Some(until) = query.until {
            filter("scheduled_for < ?", vec![Integer(micros(until))]);
        }
        if let Some(at) = query.scheduled_for {
            // To the millisecond, as the API shows times.
            filter("scheduled_for >= ? AND scheduled_for < ?", vec![Integer(micros(at)), Integer(micros(at) + 1000)]);
        }
        if let Some(text) = &query.search {
            let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            let pattern = Text(format!("%{escaped}%"));
            let id = text.trim().trim_start_matches('#').parse::<i64>().map_or(rusqlite::types::Value::Null, Integer);
            filter(
                "(job LIKE ? ESCAPE '\\' OR error LIKE ? ESCAPE '\\' OR id = ?)",
                vec![pattern.clone(), pattern, id],
            );
        }
        if let Some(before) = query.before {
            filter("id < ?", vec![Integer(before)]);
        }
        // The page's ids first, from an index alone where one covers the
        // filters, then only those rows: a time window's thousands of runs
        // are sorted as ids, not read whole. One fire's attempts are a
        // seek on `runs_by_due`, which SQLite would pass over for
        // `runs_by_job` and then read each of the job's runs.
        let index = if query.scheduled_for.is_some() { " INDEXED BY runs_by_due" } else { "" };
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id IN (SELECT id FROM runs{index}");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        values.push(Integer(i64::from(query.limit)));
        sql.push_str(" ORDER BY id DESC LIMIT ?) ORDER BY id DESC");
        let mut statement = self.conn.prepare_cached(&sql).map_err(|e| self.error(e))?;
        let rows = statement
            .query_map(rusqlite::params_from_iter(values), RawRun::from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.error(e))?;
        rows.into_iter().map(|raw| raw.into_record(self)).collect()
    }

    /// One index seek per job (`runs_by_job`, newest first): a GROUP BY
    /// over all history would scan every run at each start.
    pub fn last_outcomes(&self, jobs: &[String]) -> Result<Vec<RunRecord>> {
        let mut statement = self
            .conn
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs
                 WHERE job = ?1 AND status NOT IN ('pending', 'running', 'skipped', 'missed')
                 ORDER BY id DESC LIMIT 1"
            ))
            .map_err(|e| self.error(e))?;
        let mut found = Vec::new();
        for job in jobs {
            let row = statement.query_row([job], RawRun::from_row).optional().map_err(|e| self.error(e))?;
            found.extend(row.map(|raw| raw.into_record(self)).transpose()?);
        }
        Ok(found)
    }

    /// Accepted runs that have not started, oldest first.
    fn pending_runs(&self) -> Result<Vec<PendingRun>> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, job, trigger, attempt, scheduled_for, payload, triggered_at FROM runs
                 WHERE status = 'pending' ORDER BY scheduled_for, id",
            )
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, u32>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, Vec<u8>>(5)?,
                    row.get::<_, Option<i64>>(6)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.error(e))?;
        rows.into_iter()
            .map(|(id, job, trigger, attempt, scheduled_for, payload, triggered_at)| {
                Ok(PendingRun {
                    delayed: triggered_at.is_some_and(|at| scheduled_for > at),
                    trigger: trigger.parse().map_err(|_| self.corrupt(id, "trigger", &trigger))?,
                    scheduled_for: from_micros(scheduled_for)
                        .ok_or_else(|| self.corrupt(id, "scheduled_for", scheduled_for))?,
                    id,
                    job,
                    attempt,
                    payload,
                })
            })
            .collect()
    }

    pub fn recover(&self, now: DateTime<Utc>, attempts: &BTreeMap<String, u32>) -> Result<Recovered> {
        let running: Vec<i64> = {
            let mut statement =
                self.conn.prepare("SELECT id FROM runs WHERE status = 'running'").map_err(|e| self.error(e))?;
            statement
                .query_map([], |row| row.get(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| self.error(e))?
        };
        let mut abandoned = Vec::with_capacity(running.len());
        for id in running {
            self.conn
                .execute(
                    "UPDATE runs SET status = 'abandoned', ended_at = ?2, error = ?3 WHERE id = ?1",
                    params![id, micros(now), ABANDONED],
                )
                .map_err(|e| self.error(e))?;
            let Some(run) = self.run(id)? else { continue };
            if run.attempt < attempts.get(&run.job).copied().unwrap_or(0) {
                let payload = self.payload(id)?;
                let retry =
                    NewRun { attempt: run.attempt + 1, payload, ..NewRun::pending(&run.job, Trigger::Retry, now) };
                self.insert_run(&retry)?;
            }
            abandoned.push(run);
        }
        Ok(Recovered { abandoned, pending: self.pending_runs()? })
    }

    /// The payload a run was given (kept for its retries).
    pub fn payload(&self, id: i64) -> Result<Vec<u8>> {
        self.conn
            .query_row("SELECT payload FROM runs WHERE id = ?1", [id], |row| row.get(0))
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(|e| self.error(e))
    }

    pub fn prune(&self, retention: &Retention, now: DateTime<Utc>) -> Result<usize> {
        let cutoff =
            |age: std::time::Duration| micros(now - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX));
        let aged = self
            .conn
            .execute(
                &format!(
                    "DELETE FROM runs WHERE status NOT IN {OPEN} AND (
                        (status IN ('succeeded', 'skipped', 'missed') AND scheduled_for < ?1)
                        OR scheduled_for < ?2)"
                ),
                params![cutoff(retention.max_age), cutoff(retention.failed_max_age)],
            )
            .map_err(|e| self.error(e))?;
        let counted = self
            .conn
            .execute(
                &format!(
                    "DELETE FROM runs WHERE status NOT IN {OPEN} AND id IN (
                        SELECT id FROM (
                            SELECT id, row_number() OVER (PARTITION BY job ORDER BY id DESC) AS newer
                            FROM runs WHERE status NOT IN {OPEN})
                        WHERE newer > ?1)"
                ),
                [retention.max_count],
            )
            .map_err(|e| self.error(e))?;
        Ok(aged + counted)
    }
}

/// A row as SQLite gives it, before its text and time columns are parsed.
struct RawRun {
    id: i64,
    job: String,
    status: String,
    trigger: String,
    attempt: u32,
    scheduled_for: i64,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    exit_code: Option<i32>,
    error: Option<String>,
    fuel_used: Option<i64>,
    module_sha256: Option<String>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    output_dropped: i64,
    parent_run: Option<i64>,
}

impl RawRun {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawRun {
            id: row.get(0)?,
            job: row.get(1)?,
            status: row.get(2)?,
            trigger: row.get(3)?,
            attempt: row.get(4)?,
            scheduled_for: row.get(5)?,
            started_at: row.get(6)?,
            ended_at: row.get(7)?,
            exit_code: row.get(8)?,
            error: row.get(9)?,
            fuel_used: row.get(10)?,
            module_sha256: row.get(11)?,
            stdout: row.get(12)?,
            stderr: row.get(13)?,
            output_dropped: row.get(14)?,
            parent_run: row.get(15)?,
        })
    }

    fn into_record(self, db: &Db) -> Result<RunRecord> {
        let id = self.id;
        let time = |field: &'static str, value: i64| from_micros(value).ok_or_else(|| db.corrupt(id, field, value));
        Ok(RunRecord {
            id,
            status: self.status.parse().map_err(|_| db.corrupt(id, "status", &self.status))?,
            trigger: self.trigger.parse().map_err(|_| db.corrupt(id, "trigger", &self.trigger))?,
            attempt: self.attempt,
            scheduled_for: time("scheduled_for", self.scheduled_for)?,
            started_at: self.started_at.map(|t| time("started_at", t)).transpose()?,
            ended_at: self.ended_at.map(|t| time("ended_at", t)).transpose()?,
            exit_code: self.exit_code,
            error: self.error,
            fuel_used: self.fuel_used.map(|f| f as u64),
            module_sha256: self.module_sha256,
            stdout: self.stdout,
            stderr: self.stderr,
            output_dropped: self.output_dropped as u64,
            parent_run: self.parent_run,
            job: self.job,
        })
    }
}
