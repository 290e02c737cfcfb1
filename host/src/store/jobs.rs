//! Per-job state: the last scheduled fire (a UTC instant) and whether the
//! operator paused the job.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Result, Store};
use crate::record::format_time;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobState {
    pub last_fire: Option<DateTime<Utc>>,
    pub paused: bool,
}

impl Store {
    pub fn job_state(&self, job: &str) -> Result<JobState> {
        let row: Option<(Option<String>, bool)> = self
            .conn
            .query_row("SELECT last_fire, paused FROM job_state WHERE job = ?1", [job], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
            .map_err(|e| self.sqlite(e))?;
        Ok(row
            .map(|(last, paused)| JobState { last_fire: last.as_deref().and_then(parse_time), paused })
            .unwrap_or_default())
    }

    pub fn job_states(&self) -> Result<BTreeMap<String, JobState>> {
        let mut statement =
            self.conn.prepare("SELECT job, last_fire, paused FROM job_state").map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([], |row| {
                let last: Option<String> = row.get(1)?;
                Ok((row.get(0)?, JobState { last_fire: last.as_deref().and_then(parse_time), paused: row.get(2)? }))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<BTreeMap<_, _>>>())
            .map_err(|e| self.sqlite(e))?;
        Ok(rows)
    }

    /// Records that `job`'s fire at `fire` was dealt with (run, skipped or missed).
    pub fn set_last_fire(&self, job: &str, fire: DateTime<Utc>) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO job_state (job, last_fire) VALUES (?1, ?2)
                 ON CONFLICT (job) DO UPDATE SET last_fire = excluded.last_fire",
                params![job, format_time(fire)],
            )
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
