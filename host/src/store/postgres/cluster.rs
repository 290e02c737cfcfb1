//! The cluster side of the PostgreSQL store: hosts and their heartbeats,
//! claims, leases and their rescue. Every time here is the database's
//! `now()`, never a host's clock, so hosts whose clocks disagree still
//! agree on which lease has lapsed. Each operation is one statement (one
//! round trip, atomic on its own).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::PgStore;
use crate::record::{RunRecord, Trigger};
use crate::store::{Claimable, Claimed, Cluster, HostInfo, HostRecord, PendingRun, Rescued, Result, Store, StoreError};

/// A host whose heartbeat is older than this is shown as not alive.
const ALIVE_WITHIN: &str = "5 seconds";
/// A host silent this long is dropped from the hosts table.
const FORGET_AFTER: &str = "10 minutes";

/// Claims due pending runs of the jobs this host serves at the version in
/// service, oldest due first, locking as it goes and skipping rows other
/// hosts are locking (inside a CTE, so the update touches exactly the rows
/// locked). A serial job (overlap other than `allow`) gets at most one run
/// per claim, and none while one of its runs is running anywhere.
const CLAIM: &str = "
WITH wanted AS (
    SELECT w.job, w.sha, w.serial
    FROM unnest($1::text[], $2::text[], $3::bool[]) AS w(job, sha, serial)
    JOIN jobs j ON j.job = w.job AND (j.module_sha256 IS NULL OR j.module_sha256 = w.sha)
), locked AS (
    SELECT r.id, r.job, w.serial
    FROM runs r JOIN wanted w ON w.job = r.job
    WHERE r.status = 'pending' AND r.scheduled_for <= now()
      AND NOT (w.serial AND EXISTS (SELECT 1 FROM runs o WHERE o.job = r.job AND o.status = 'running'))
    ORDER BY r.scheduled_for, r.id
    LIMIT $4
    FOR UPDATE OF r SKIP LOCKED
), picked AS (
    SELECT l.id FROM locked l
    WHERE NOT l.serial OR l.id = (SELECT min(m.id) FROM locked m WHERE m.job = l.job)
)
UPDATE runs r
SET status = 'running', host_id = $5, fence = r.fence + 1, started_at = now(),
    lease_until = now() + $6::float8 * interval '1 millisecond', module_sha256 = w.sha
FROM picked p, wanted w
WHERE r.id = p.id AND w.job = r.job
RETURNING r.id, r.job, r.trigger, r.attempt, r.scheduled_for, r.payload, r.triggered_at, r.fence, r.started_at";

const RENEW: &str = "
UPDATE runs SET lease_until = now() + $3::float8 * interval '1 millisecond'
WHERE id = $1 AND fence = $2 AND host_id = $4 AND status = 'running'";

/// Ends every run whose lease lapsed as `abandoned`, with a retry of each
/// whose job has attempts left (waking the other hosts for it), and counts
/// the triggered runs waiting across the cluster.
const RESCUE: &str = "
WITH lapsed AS (
    UPDATE runs r
    SET status = 'abandoned', ended_at = now(), lease_until = NULL,
        error = 'abandoned: its host (' || coalesce(r.host_id, 'unknown') || ') stopped renewing its lease, so the run was taken over'
    WHERE r.id IN (SELECT id FROM runs WHERE status = 'running' AND lease_until < now() FOR UPDATE SKIP LOCKED)
    RETURNING r.id, r.job, r.attempt, r.payload
), retried AS (
    INSERT INTO runs (job, status, trigger, attempt, scheduled_for, payload, parent_run)
    SELECT l.job, 'pending', 'retry', l.attempt + 1, now(), l.payload, l.id
    FROM lapsed l JOIN unnest($1::text[], $2::int[]) AS a(job, attempts) ON a.job = l.job
    WHERE l.attempt < a.attempts
    RETURNING id
), woken AS (
    SELECT pg_notify('wasmcron_runs', '') FROM retried LIMIT 1
)
SELECT coalesce((SELECT array_agg(id ORDER BY id) FROM lapsed), '{}'),
       (SELECT count(*) FROM woken),
       (SELECT count(*) FROM runs WHERE status = 'pending' AND trigger = 'manual')";

const HEARTBEAT: &str = "
WITH forgotten AS (
    DELETE FROM hosts WHERE heartbeat_at < now() - $6::text::interval AND id <> $1
)
INSERT INTO hosts (id, name, version, modules, declarations) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE
SET name = $2, version = $3, modules = $4, declarations = $5, heartbeat_at = now()";

const HOSTS: &str = "
SELECT id, name, version, modules, declarations, started_at, heartbeat_at,
       heartbeat_at > now() - $1::text::interval
FROM hosts ORDER BY started_at, id";

impl PgStore {
    /// `sql` prepared on this connection once, then reused: one round trip
    /// per operation rather than a prepare and an execute.
    async fn prepared(&self, client: &deadpool_postgres::Object, sql: &str) -> Result<tokio_postgres::Statement> {
        client.prepare_cached(sql).await.map_err(|e| self.error(e))
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn map_of(value: serde_json::Value) -> BTreeMap<String, String> {
    serde_json::from_value(value).unwrap_or_default()
}

#[async_trait]
impl Cluster for PgStore {
    fn host_id(&self) -> &str {
        &self.host_id
    }

    async fn now(&self) -> Result<DateTime<Utc>> {
        let client = self.client().await?;
        let row =
            client.query_one(&self.prepared(&client, "SELECT now()").await?, &[]).await.map_err(|e| self.error(e))?;
        Ok(row.get(0))
    }

    async fn heartbeat(&self, info: HostInfo) -> Result<()> {
        let client = self.client().await?;
        let modules = serde_json::to_value(&info.modules).expect("a map of strings");
        let declarations = serde_json::to_value(&info.declarations).expect("a map of strings");
        client
            .execute(
                &self.prepared(&client, HEARTBEAT).await?,
                &[&self.host_id, &info.name, &info.version, &modules, &declarations, &FORGET_AFTER],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn leave(&self) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(&self.prepared(&client, "DELETE FROM hosts WHERE id = $1").await?, &[&self.host_id])
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn hosts(&self) -> Result<Vec<HostRecord>> {
        let client = self.client().await?;
        let rows =
            client.query(&self.prepared(&client, HOSTS).await?, &[&ALIVE_WITHIN]).await.map_err(|e| self.error(e))?;
        Ok(rows
            .into_iter()
            .map(|row| HostRecord {
                id: row.get(0),
                info: HostInfo {
                    name: row.get(1),
                    version: row.get(2),
                    modules: map_of(row.get(3)),
                    declarations: map_of(row.get(4)),
                },
                started_at: row.get(5),
                heartbeat_at: row.get(6),
                alive: row.get(7),
            })
            .collect())
    }

    async fn claim(&self, jobs: Vec<Claimable>, limit: u32, lease: Duration) -> Result<Vec<Claimed>> {
        if jobs.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = jobs.iter().map(|job| job.job.as_str()).collect();
        let shas: Vec<&str> = jobs.iter().map(|job| job.module_sha256.as_str()).collect();
        let serial: Vec<bool> = jobs.iter().map(|job| job.serial).collect();
        let client = self.client().await?;
        let rows = client
            .query(
                &self.prepared(&client, CLAIM).await?,
                &[&names, &shas, &serial, &i64::from(limit), &self.host_id, &millis(lease)],
            )
            .await
            .map_err(|e| self.error(e))?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.get(0);
            let trigger: String = row.get(2);
            let trigger: Trigger = trigger.parse().map_err(|_| StoreError::Corrupt {
                store: self.describe(),
                id,
                field: "trigger",
                value: trigger.clone(),
            })?;
            let scheduled_for: DateTime<Utc> = row.get(4);
            let triggered_at: Option<DateTime<Utc>> = row.get(6);
            let fence: i64 = row.get(7);
            claimed.push(Claimed {
                run: PendingRun {
                    id,
                    job: row.get(1),
                    trigger,
                    attempt: row.get::<_, i32>(3) as u32,
                    scheduled_for,
                    payload: row.get(5),
                    delayed: triggered_at.is_some_and(|at| scheduled_for > at),
                },
                fence,
                started_at: row.get(8),
            });
        }
        let mut fences = self.fences.lock().expect("fences");
        fences.extend(claimed.iter().map(|claim| (claim.run.id, claim.fence)));
        Ok(claimed)
    }

    async fn renew(&self, id: i64, lease: Duration) -> Result<()> {
        let Some(fence) = self.fences.lock().expect("fences").get(&id).copied() else {
            return Err(StoreError::Superseded { id });
        };
        let client = self.client().await?;
        let renewed = client
            .execute(&self.prepared(&client, RENEW).await?, &[&id, &fence, &millis(lease), &self.host_id])
            .await
            .map_err(|e| self.error(e))?;
        if renewed == 0 {
            self.fences.lock().expect("fences").remove(&id);
            return Err(StoreError::Superseded { id });
        }
        Ok(())
    }

    async fn rescue(&self, attempts: BTreeMap<String, u32>) -> Result<Rescued> {
        let (jobs, tries): (Vec<String>, Vec<i32>) =
            attempts.into_iter().map(|(job, tries)| (job, tries.min(i32::MAX as u32) as i32)).unzip();
        let client = self.client().await?;
        let row = client
            .query_one(&self.prepared(&client, RESCUE).await?, &[&jobs, &tries])
            .await
            .map_err(|e| self.error(e))?;
        drop(client);
        let lapsed: Vec<i64> = row.get(0);
        let waiting: i64 = row.get(2);
        let mut abandoned: Vec<RunRecord> = Vec::with_capacity(lapsed.len());
        for id in lapsed {
            if let Some(run) = self.run(id).await? {
                abandoned.push(run);
            }
        }
        Ok(Rescued { abandoned, triggered_waiting: waiting.max(0) as usize })
    }

    fn wakeups(&self) -> watch::Receiver<u64> {
        self.wakeups.subscribe()
    }
}
