//! Per-job state in SQLite — the watermark of fires dealt with, pause, the
//! module in service and the last load error — and the operations that
//! move a watermark together with the runs it covers.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::db::{Db, from_micros, micros};
use crate::store::{CatchUp, Fire, FireRecorded, JobState, Load, NewRun, PendingRun, Result};

const STATE_COLUMNS: &str = "last_fire, paused, module_sha256, loaded_at, load_error, paused_reason";

fn state_from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<JobState> {
    let time = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
        Ok(row.get::<_, Option<i64>>(first + i)?.and_then(from_micros))
    };
    Ok(JobState {
        last_fire: time(0)?,
        paused: row.get(first + 1)?,
        module_sha256: row.get(first + 2)?,
        loaded_at: time(3)?,
        load_error: row.get(first + 4)?,
        paused_reason: row.get(first + 5)?,
    })
}

impl Db {
    pub fn job_states(&self) -> Result<BTreeMap<String, JobState>> {
        let mut statement =
            self.conn.prepare(&format!("SELECT job, {STATE_COLUMNS} FROM job_state")).map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, state_from_row(row, 1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<BTreeMap<_, _>>>())
            .map_err(|e| self.error(e))?;
        Ok(rows)
    }

    pub fn set_last_fire(&self, job: &str, fire: DateTime<Utc>) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO job_state (job, last_fire) VALUES (?1, ?2)
                 ON CONFLICT (job) DO UPDATE SET last_fire = excluded.last_fire",
            )
            .and_then(|mut upsert| upsert.execute(params![job, micros(fire)]))
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    pub fn set_paused(&self, job: &str, paused: bool, reason: Option<&str>) -> Result<()> {
        let reason = reason.filter(|_| paused);
        self.conn
            .execute(
                "INSERT INTO job_state (job, paused, paused_reason) VALUES (?1, ?2, ?3)
                 ON CONFLICT (job) DO UPDATE SET paused = excluded.paused, paused_reason = excluded.paused_reason",
                params![job, paused, reason],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Moves the watermark forward to `fire`, never back (as the
    /// PostgreSQL store's `GREATEST`): after the wall clock was set back,
    /// a fire at an earlier instant must not reopen the fires after it.
    fn advance_last_fire(&self, job: &str, fire: DateTime<Utc>) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO job_state (job, last_fire) VALUES (?1, ?2)
                 ON CONFLICT (job) DO UPDATE SET last_fire = max(coalesce(last_fire, excluded.last_fire), excluded.last_fire)",
            )
            .and_then(|mut upsert| upsert.execute(params![job, micros(fire)]))
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    fn paused(&self, job: &str) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT paused FROM job_state WHERE job = ?1")
            .and_then(|mut select| select.query_row([job], |row| row.get(0)).optional())
            .map(Option::unwrap_or_default)
            .map_err(|e| self.error(e))
    }

    pub fn record_fires(&self, fires: &[Fire], now: DateTime<Utc>) -> Result<Vec<FireRecorded>> {
        let mut recorded = Vec::with_capacity(fires.len());
        for fire in fires {
            self.advance_last_fire(&fire.job, fire.scheduled_for)?;
            if self.paused(&fire.job)? {
                recorded.push(FireRecorded::Paused);
                continue;
            }
            let run = match &fire.skipped {
                Some(why) => {
                    NewRun::not_run(&fire.job, crate::record::RunStatus::Skipped, fire.scheduled_for, now, why.clone())
                }
                None => NewRun::pending(&fire.job, crate::record::Trigger::Schedule, fire.scheduled_for),
            };
            recorded.push(FireRecorded::Run(self.insert_run(&run)?));
        }
        Ok(recorded)
    }

    pub fn record_catch_up(&self, jobs: Vec<CatchUp>) -> Result<Vec<PendingRun>> {
        let mut pending = Vec::new();
        for job in jobs {
            for run in job.runs {
                let id = self.insert_run(&run)?;
                if run.status == crate::record::RunStatus::Pending {
                    pending.push(run.into_pending(id));
                }
            }
            self.advance_last_fire(&job.job, job.last_fire)?;
        }
        Ok(pending)
    }

    pub fn record_loads(&self, loads: &[Load], now: DateTime<Utc>) -> Result<()> {
        for load in loads {
            match load {
                Load::Loaded { job, module_sha256, first } => {
                    self.conn
                        .prepare_cached(
                            "INSERT INTO job_state (job, module_sha256, loaded_at) VALUES (?1, ?2, ?3)
                             ON CONFLICT (job) DO UPDATE SET module_sha256 = excluded.module_sha256,
                                 loaded_at = excluded.loaded_at, load_error = NULL",
                        )
                        .and_then(|mut upsert| upsert.execute(params![job, module_sha256, micros(now)]))
                        .map_err(|e| self.error(e))?;
                    if *first {
                        self.set_last_fire(job, now)?;
                    }
                }
                Load::Failed { job, error } => {
                    self.conn
                        .prepare_cached(
                            "INSERT INTO job_state (job, load_error) VALUES (?1, ?2)
                             ON CONFLICT (job) DO UPDATE SET load_error = excluded.load_error",
                        )
                        .and_then(|mut upsert| upsert.execute(params![job, error]))
                        .map_err(|e| self.error(e))?;
                }
            }
        }
        Ok(())
    }
}
