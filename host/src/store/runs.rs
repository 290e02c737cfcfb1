//! Runs: written before they start, finished in place, listed and pruned.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

use super::{Result, Store, StoreError};
use crate::record::{RunRecord, RunStatus, Trigger, format_time};

/// A run to record. `Pending` and `Running` rows are finished later;
/// `Skipped` and `Missed` rows are final as written.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub job: &'a str,
    pub status: RunStatus,
    pub trigger: Trigger,
    pub attempt: u32,
    pub scheduled_for: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub module_sha256: Option<&'a str>,
    pub payload: &'a [u8],
    /// The run that enqueued this one, if any.
    pub parent_run: Option<i64>,
}

impl<'a> NewRun<'a> {
    /// A first attempt of `job` due at `scheduled_for`, with nothing else
    /// known yet; set the other fields with struct update syntax.
    pub fn new(job: &'a str, status: RunStatus, trigger: Trigger, scheduled_for: DateTime<Utc>) -> Self {
        NewRun {
            job,
            status,
            trigger,
            attempt: 1,
            scheduled_for,
            started_at: None,
            ended_at: None,
            error: None,
            module_sha256: None,
            payload: &[],
            parent_run: None,
        }
    }
}

/// How a run ended, to be written over its row.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: RunStatus,
    pub ended_at: DateTime<Utc>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub fuel_used: Option<u64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub output_dropped: u64,
}

/// A run that was accepted but has not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRun {
    pub id: i64,
    pub job: String,
    pub trigger: Trigger,
    pub attempt: u32,
    pub scheduled_for: DateTime<Utc>,
    pub payload: Vec<u8>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub job: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: u32,
}

/// How much history to keep per job. Runs that did not succeed are kept
/// for `failed_max_age` instead of `max_age`; `max_count` caps each job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_count: u32,
    pub max_age: Duration,
    pub failed_max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_count: 1000,
            max_age: Duration::from_secs(30 * 86400),
            failed_max_age: Duration::from_secs(90 * 86400),
        }
    }
}

const RUN_COLUMNS: &str = "id, job, status, trigger, attempt, scheduled_for, started_at, ended_at, exit_code, error, \
     fuel_used, module_sha256, stdout, stderr, output_dropped, parent_run";

/// Statuses a run can still leave: never pruned, never counted as history.
const OPEN: &str = "('pending', 'running')";

impl Store {
    pub fn insert_run(&self, run: &NewRun<'_>) -> Result<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO runs (job, status, trigger, attempt, scheduled_for, started_at, ended_at, error,
                                   module_sha256, payload, parent_run)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    run.job,
                    run.status.as_str(),
                    run.trigger.as_str(),
                    run.attempt,
                    format_time(run.scheduled_for),
                    run.started_at.map(format_time),
                    run.ended_at.map(format_time),
                    run.error,
                    run.module_sha256,
                    run.payload,
                    run.parent_run,
                ])
            })
            .map_err(|e| self.sqlite(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Marks a pending run `running`, with the module version it runs on.
    pub fn start_run(&self, id: i64, started_at: DateTime<Utc>, module_sha256: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE runs SET status = 'running', started_at = ?2, module_sha256 = ?3 WHERE id = ?1")
            .and_then(|mut update| update.execute(params![id, format_time(started_at), module_sha256]))
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// Writes how run `id` ended.
    pub fn finish_run(&self, id: i64, finished: &Finished) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE runs SET status = ?2, ended_at = ?3, exit_code = ?4, error = ?5, fuel_used = ?6,
                        stdout = ?7, stderr = ?8, output_dropped = ?9, payload = x''
                 WHERE id = ?1",
            )
            .and_then(|mut update| {
                update.execute(params![
                    id,
                    finished.status.as_str(),
                    format_time(finished.ended_at),
                    finished.exit_code,
                    finished.error,
                    finished.fuel_used.map(|f| f as i64),
                    finished.stdout,
                    finished.stderr,
                    finished.output_dropped as i64,
                ])
            })
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// The run with `id`, if there is one.
    pub fn run(&self, id: i64) -> Result<Option<RunRecord>> {
        let row = self
            .conn
            .query_row(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"), [id], RawRun::from_row)
            .optional()
            .map_err(|e| self.sqlite(e))?;
        row.map(|raw| raw.into_record(&self.path)).transpose()
    }

    /// Runs matching `filter`, newest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let mut statement = self
            .conn
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR job = ?1) AND (?2 IS NULL OR status = ?2)
                 ORDER BY id DESC LIMIT ?3"
            ))
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map(params![filter.job, filter.status.map(|s| s.as_str()), filter.limit], RawRun::from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.sqlite(e))?;
        rows.into_iter().map(|raw| raw.into_record(&self.path)).collect()
    }

    /// Each job's newest finished run (not pending, running, skipped or missed).
    pub fn last_outcomes(&self) -> Result<Vec<RunRecord>> {
        let mut statement = self
            .conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE id IN (
                    SELECT max(id) FROM runs WHERE status NOT IN ('pending', 'running', 'skipped', 'missed')
                    GROUP BY job)"
            ))
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([], RawRun::from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.sqlite(e))?;
        rows.into_iter().map(|raw| raw.into_record(&self.path)).collect()
    }

    /// Accepted runs that have not started, oldest first.
    pub fn pending_runs(&self) -> Result<Vec<PendingRun>> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, job, trigger, attempt, scheduled_for, payload FROM runs
                 WHERE status = 'pending' ORDER BY scheduled_for, id",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, u32>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, Vec<u8>>(5)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.sqlite(e))?;
        rows.into_iter()
            .map(|(id, job, trigger, attempt, scheduled_for, payload)| {
                let corrupt = |field, value: &str| StoreError::Corrupt {
                    path: self.path.clone(),
                    id,
                    field,
                    value: value.to_owned(),
                };
                Ok(PendingRun {
                    trigger: trigger.parse().map_err(|_| corrupt("trigger", &trigger))?,
                    scheduled_for: parse_time(&scheduled_for)
                        .ok_or_else(|| corrupt("scheduled_for", &scheduled_for))?,
                    id,
                    job,
                    attempt,
                    payload,
                })
            })
            .collect()
    }

    /// Marks every `running` run `abandoned` (the host died during it) and
    /// returns them as they now stand.
    pub fn abandon_running(&self, now: DateTime<Utc>) -> Result<Vec<RunRecord>> {
        let ids: Vec<i64> = {
            let mut statement =
                self.conn.prepare("SELECT id FROM runs WHERE status = 'running'").map_err(|e| self.sqlite(e))?;
            statement
                .query_map([], |row| row.get(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| self.sqlite(e))?
        };
        let mut abandoned = Vec::with_capacity(ids.len());
        for id in ids {
            self.conn
                .execute(
                    "UPDATE runs SET status = 'abandoned', ended_at = ?2,
                            error = 'the host stopped during this run (found at the next start)'
                     WHERE id = ?1",
                    params![id, format_time(now)],
                )
                .map_err(|e| self.sqlite(e))?;
            abandoned.extend(self.run(id)?);
        }
        Ok(abandoned)
    }

    /// Deletes finished history beyond `retention`; returns how many runs went.
    pub fn prune(&self, retention: &Retention, now: DateTime<Utc>) -> Result<usize> {
        let cutoff =
            |age: Duration| format_time(now - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX));
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
            .map_err(|e| self.sqlite(e))?;
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
            .map_err(|e| self.sqlite(e))?;
        Ok(aged + counted)
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// A row as SQLite gives it, before its text columns are parsed.
struct RawRun {
    id: i64,
    job: String,
    status: String,
    trigger: String,
    attempt: u32,
    scheduled_for: String,
    started_at: Option<String>,
    ended_at: Option<String>,
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

    fn into_record(self, path: &Path) -> Result<RunRecord> {
        let id = self.id;
        let corrupt = |field: &'static str, value: &str| StoreError::Corrupt {
            path: path.to_owned(),
            id,
            field,
            value: value.to_owned(),
        };
        let time = |field: &'static str, text: &str| parse_time(text).ok_or_else(|| corrupt(field, text));
        Ok(RunRecord {
            id,
            status: self.status.parse().map_err(|_| corrupt("status", &self.status))?,
            trigger: self.trigger.parse().map_err(|_| corrupt("trigger", &self.trigger))?,
            attempt: self.attempt,
            scheduled_for: time("scheduled_for", &self.scheduled_for)?,
            started_at: self.started_at.as_deref().map(|t| time("started_at", t)).transpose()?,
            ended_at: self.ended_at.as_deref().map(|t| time("ended_at", t)).transpose()?,
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
