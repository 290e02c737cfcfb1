//! Per-job state: the last scheduled fire (a UTC instant) and whether the
//! operator paused the job.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Result, Store};
use crate::record::format_time;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobState {
    /// Every fire up to this instant has been dealt with (run, skipped or missed).
    pub last_fire: Option<DateTime<Utc>>,
    pub paused: bool,
    /// The module version the host has in service, and since when.
    pub module_sha256: Option<String>,
    pub loaded_at: Option<DateTime<Utc>>,
    /// Why the newest declaration or module failed to load, while an older
    /// version stays in service; cleared by the next good load.
    pub load_error: Option<String>,
}

const STATE_COLUMNS: &str = "last_fire, paused, module_sha256, loaded_at, load_error";

fn state_from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<JobState> {
    let time = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
        Ok(row.get::<_, Option<String>>(first + i)?.as_deref().and_then(parse_time))
    };
    Ok(JobState {
        last_fire: time(0)?,
        paused: row.get(first + 1)?,
        module_sha256: row.get(first + 2)?,
        loaded_at: time(3)?,
        load_error: row.get(first + 4)?,
    })
}

impl Store {
    pub fn job_state(&self, job: &str) -> Result<JobState> {
        let state = self
            .conn
            .prepare_cached(&format!("SELECT {STATE_COLUMNS} FROM job_state WHERE job = ?1"))
            .and_then(|mut select| select.query_row([job], |row| state_from_row(row, 0)).optional())
            .map_err(|e| self.sqlite(e))?;
        Ok(state.unwrap_or_default())
    }

    pub fn job_states(&self) -> Result<BTreeMap<String, JobState>> {
        let mut statement =
            self.conn.prepare(&format!("SELECT job, {STATE_COLUMNS} FROM job_state")).map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, state_from_row(row, 1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<BTreeMap<_, _>>>())
            .map_err(|e| self.sqlite(e))?;
        Ok(rows)
    }

    /// Records the module version now in service for `job`, clearing any load error.
    pub fn set_loaded(&self, job: &str, module_sha256: &str, at: DateTime<Utc>) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO job_state (job, module_sha256, loaded_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (job) DO UPDATE SET module_sha256 = excluded.module_sha256,
                     loaded_at = excluded.loaded_at, load_error = NULL",
                params![job, module_sha256, format_time(at)],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// Records why `job`'s newest declaration or module failed to load.
    pub fn set_load_error(&self, job: &str, error: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO job_state (job, load_error) VALUES (?1, ?2)
                 ON CONFLICT (job) DO UPDATE SET load_error = excluded.load_error",
                params![job, error],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// Records that `job`'s fire at `fire` was dealt with (run, skipped or missed).
    pub fn set_last_fire(&self, job: &str, fire: DateTime<Utc>) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO job_state (job, last_fire) VALUES (?1, ?2)
                 ON CONFLICT (job) DO UPDATE SET last_fire = excluded.last_fire",
            )
            .and_then(|mut upsert| upsert.execute(params![job, format_time(fire)]))
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    pub fn set_paused(&self, job: &str, paused: bool) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO job_state (job, paused) VALUES (?1, ?2)
                 ON CONFLICT (job) DO UPDATE SET paused = excluded.paused",
                params![job, paused],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}
