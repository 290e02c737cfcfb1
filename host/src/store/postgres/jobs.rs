//! Per-job state in PostgreSQL (`jobs`) — the watermark of fires dealt
//! with, pause, the module in service and the last load error — and the
//! operations that move a watermark together with the runs it covers:
//! scheduled fires (one statement, however many hosts record the same
//! fire) and catch-up (under the watermark rows' locks).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::PgStore;
use super::runs::{Inserted, OnConflict, Rows, get, is_fire};
use crate::store::{CatchUp, Fire, FireRecorded, JobState, Load, PendingRun, Result, SharedOverlap};

/// Why a fire was skipped for a run on another host (`SharedOverlap`).
const SKIPPED_RUNNING: &str = "the previous run was still going on another host (overlap = \"skip\")";
const SKIPPED_QUEUED: &str = "a run was already queued, here or on another host (overlap = \"queue\")";

/// Records fires in one statement. Per job, in name order (so that hosts
/// recording the same jobs lock their rows in the same order): the
/// watermark moves (`GREATEST`, upserting the row), which locks it until
/// the statement commits; then each fire of a job that is not paused is
/// inserted unless its row exists (another host recorded it), skipped if
/// its shared overlap verdict says so. `$5` is the host's `now`, for
/// skipped rows' end; whether a run is due is the database's `now()`.
const RECORD_FIRES: &str = "
    WITH input AS (
        SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[])
            WITH ORDINALITY AS f(job, at, skipped, shared, n)
    ), marks AS (
        INSERT INTO jobs AS j (job, last_fire)
        SELECT job, max(at) FROM input GROUP BY job ORDER BY job
        ON CONFLICT (job) DO UPDATE SET last_fire = GREATEST(j.last_fire, excluded.last_fire)
        RETURNING j.job, j.paused
    ), decided AS (
        SELECT i.n, i.job, i.at, m.paused,
            CASE
                WHEN i.skipped IS NOT NULL THEN i.skipped
                WHEN i.shared = 'skip' AND EXISTS (
                    SELECT 1 FROM runs AS r WHERE r.job = i.job AND r.status IN ('pending', 'running')
                        AND (r.status = 'running' OR r.scheduled_for <= now())) THEN $6
                WHEN i.shared = 'queue' AND EXISTS (
                    SELECT 1 FROM runs AS r WHERE r.job = i.job AND r.status = 'pending'
                        AND r.scheduled_for <= now()) THEN $7
            END AS why
        FROM input AS i JOIN marks AS m ON m.job = i.job
    ), inserted AS (
        INSERT INTO runs (job, status, trigger, attempt, scheduled_for, ended_at, error, fire)
        SELECT job, CASE WHEN why IS NULL THEN 'pending' ELSE 'skipped' END, 'schedule', 1, at,
               CASE WHEN why IS NULL THEN NULL ELSE $5::timestamptz END, why, true
        FROM decided WHERE NOT paused ORDER BY n
        ON CONFLICT (job, scheduled_for) WHERE fire DO NOTHING
        RETURNING id, job, scheduled_for
    )
    SELECT d.n, d.paused, i.id FROM decided AS d
    LEFT JOIN inserted AS i ON i.job = d.job AND i.scheduled_for = d.at
    ORDER BY d.n";

impl PgStore {
    pub(super) async fn states(&self) -> Result<BTreeMap<String, JobState>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT job, last_fire, paused, paused_reason, module_sha256, loaded_at, load_error FROM jobs", &[])
            .await
            .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|row| {
                let state = JobState {
                    last_fire: get(self, row, 1)?,
                    paused: get(self, row, 2)?,
                    paused_reason: get(self, row, 3)?,
                    module_sha256: get(self, row, 4)?,
                    loaded_at: get(self, row, 5)?,
                    load_error: get(self, row, 6)?,
                };
                Ok((get(self, row, 0)?, state))
            })
            .collect()
    }

    pub(super) async fn watermark(&self, job: &str, at: DateTime<Utc>) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO jobs (job, last_fire) VALUES ($1, $2)
                 ON CONFLICT (job) DO UPDATE SET last_fire = excluded.last_fire",
                &[&job, &at],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    pub(super) async fn pause(&self, job: &str, paused: bool, reason: Option<&str>) -> Result<()> {
        let reason = reason.filter(|_| paused);
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO jobs (job, paused, paused_reason) VALUES ($1, $2, $3)
                 ON CONFLICT (job) DO UPDATE SET paused = excluded.paused, paused_reason = excluded.paused_reason",
                &[&job, &paused, &reason],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    pub(super) async fn fires(&self, fires: Vec<Fire>, now: DateTime<Utc>) -> Result<Vec<FireRecorded>> {
        if fires.is_empty() {
            return Ok(Vec::new());
        }
        // Sorted by job and time for the statement; answered in the order given.
        let mut order: Vec<usize> = (0..fires.len()).collect();
        order.sort_by(|&a, &b| (&fires[a].job, fires[a].scheduled_for).cmp(&(&fires[b].job, fires[b].scheduled_for)));
        let mut jobs = Vec::with_capacity(fires.len());
        let mut times = Vec::with_capacity(fires.len());
        let mut skipped = Vec::with_capacity(fires.len());
        let mut shared = Vec::with_capacity(fires.len());
        for &i in &order {
            let fire = &fires[i];
            jobs.push(fire.job.as_str());
            times.push(fire.scheduled_for);
            skipped.push(fire.skipped.as_deref());
            shared.push(match fire.shared {
                SharedOverlap::Allow => "allow",
                SharedOverlap::Skip => "skip",
                SharedOverlap::Queue => "queue",
            });
        }
        let client = self.client().await?;
        let statement = client.prepare_cached(RECORD_FIRES).await.map_err(|e| self.error(e))?;
        let rows = client
            .query(&statement, &[&jobs, &times, &skipped, &shared, &now, &SKIPPED_RUNNING, &SKIPPED_QUEUED])
            .await
            .map_err(|e| self.error(e))?;
        let mut recorded = vec![FireRecorded::Taken; fires.len()];
        for row in &rows {
            let n: i64 = get(self, row, 0)?;
            let paused: bool = get(self, row, 1)?;
            let id: Option<i64> = get(self, row, 2)?;
            recorded[order[n as usize - 1]] = match (paused, id) {
                (true, _) => FireRecorded::Paused,
                (false, Some(id)) => FireRecorded::Run(id),
                (false, None) => FireRecorded::Taken,
            };
        }
        Ok(recorded)
    }

    /// One transaction: lock each job's row and read its watermark, insert
    /// only the rows past it (a live host may have recorded the others
    /// meanwhile; fires already recorded are left out by the unique index),
    /// and move the watermark. The pending rows this call inserted are
    /// returned.
    pub(super) async fn catch_up(&self, jobs: Vec<CatchUp>) -> Result<Vec<PendingRun>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = jobs.iter().map(|job| job.job.as_str()).collect();
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.error(e))?;
        let locked = transaction
            .query(
                "INSERT INTO jobs AS j (job) SELECT DISTINCT unnest($1::text[]) ORDER BY 1
                 ON CONFLICT (job) DO UPDATE SET job = j.job
                 RETURNING j.job, j.last_fire",
                &[&names],
            )
            .await
            .map_err(|e| self.error(e))?;
        let mut marks: BTreeMap<String, Option<DateTime<Utc>>> = BTreeMap::new();
        for row in &locked {
            marks.insert(get(self, row, 0)?, get(self, row, 1)?);
        }
        let mut rows = Rows::default();
        let mut written = Vec::new();
        for job in &jobs {
            let mark = marks.get(&job.job).copied().flatten();
            for run in job.runs.iter().filter(|run| mark.is_none_or(|mark| run.scheduled_for > mark)) {
                rows.push(run, is_fire(run));
                written.push(run);
            }
        }
        let mut pending = Vec::new();
        if !rows.is_empty() {
            let inserted = self.insert_rows(&transaction, &rows, OnConflict::SameFire, false).await?;
            // Each written row is found by its job, time and fire flag, in order.
            let mut unmatched: Vec<Option<&Inserted>> = inserted.iter().map(Some).collect();
            for run in written {
                let fire = is_fire(run);
                let found = unmatched.iter_mut().find(|slot| {
                    slot.is_some_and(|(_, job, at, is)| *job == run.job && *at == run.scheduled_for && *is == fire)
                });
                if let Some(slot) = found
                    && let Some((id, ..)) = slot.take()
                    && run.status == crate::record::RunStatus::Pending
                {
                    pending.push(run.clone().into_pending(*id));
                }
            }
        }
        let times: Vec<DateTime<Utc>> = jobs.iter().map(|job| job.last_fire).collect();
        transaction
            .execute(
                "UPDATE jobs SET last_fire = GREATEST(jobs.last_fire, u.at)
                 FROM unnest($1::text[], $2::timestamptz[]) AS u(job, at) WHERE jobs.job = u.job",
                &[&names, &times],
            )
            .await
            .map_err(|e| self.error(e))?;
        transaction.commit().await.map_err(|e| self.error(e))?;
        Ok(pending)
    }

    /// What the host loaded, in one transaction.
    pub(super) async fn loads(&self, loads: &[Load], now: DateTime<Utc>) -> Result<()> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.error(e))?;
        for load in loads {
            match load {
                Load::Loaded { job, module_sha256, first } => {
                    // A job new to this host starts its history now: its watermark
                    // moves to now (never back, should another host be ahead).
                    let mark = first.then_some(now);
                    transaction
                        .execute(
                            "INSERT INTO jobs AS j (job, module_sha256, loaded_at, last_fire) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (job) DO UPDATE SET module_sha256 = excluded.module_sha256,
                                 loaded_at = excluded.loaded_at, load_error = NULL,
                                 last_fire = CASE WHEN $4::timestamptz IS NULL THEN j.last_fire
                                                  ELSE GREATEST(j.last_fire, excluded.last_fire) END",
                            &[job, module_sha256, &now, &mark],
                        )
                        .await
                        .map_err(|e| self.error(e))?;
                }
                Load::Failed { job, error } => {
                    transaction
                        .execute(
                            "INSERT INTO jobs (job, load_error) VALUES ($1, $2)
                             ON CONFLICT (job) DO UPDATE SET load_error = excluded.load_error",
                            &[job, error],
                        )
                        .await
                        .map_err(|e| self.error(e))?;
                }
            }
        }
        transaction.commit().await.map_err(|e| self.error(e))
    }
}
