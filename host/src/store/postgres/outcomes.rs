//! Outcomes written together: every `finish_run` waiting while the last
//! write was in flight goes into the next statement, one `UPDATE … FROM
//! unnest(…)` with each run's own fence check. One run alone costs the
//! round trip it always did; a burst of short runs shares them, which is
//! most of what a run costs the database here.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use crate::store::{Finished, Result, StoreError};

/// The most outcomes one statement writes.
const BATCH: usize = 256;

/// Writes each run's outcome while it is still this host's attempt: one
/// claimed by this host (`fence` given, checked with `host_id`), or one
/// started without a claim (`wasmcron once`: no fence, no host). The ids
/// written come back; a run missing from them was taken over.
const FINISH: &str = "
UPDATE runs r
SET status = f.status, ended_at = f.ended_at, exit_code = f.exit_code, error = f.error, fuel_used = f.fuel_used,
    stdout = f.stdout, stderr = f.stderr, output_dropped = f.output_dropped, lease_until = NULL
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamptz[], $5::int[], $6::text[], $7::bigint[],
            $8::bytea[], $9::bytea[], $10::bigint[])
     AS f(id, fence, status, ended_at, exit_code, error, fuel_used, stdout, stderr, output_dropped)
WHERE r.id = f.id AND r.status = 'running'
  AND ((f.fence IS NULL AND r.host_id IS NULL) OR (r.fence = f.fence AND r.host_id = $11))
RETURNING r.id";

/// One outcome to write, and where its answer goes.
pub(super) struct Outcome {
    pub id: i64,
    pub fence: Option<i64>,
    pub finished: Finished,
    pub answer: oneshot::Sender<Result<()>>,
}

/// How the writer reaches the database and words its errors.
pub(super) struct Writer {
    pub pool: Pool,
    pub host_id: String,
    /// Maps a PostgreSQL error as the store does (see `PgStore::error`).
    pub error: Arc<dyn Fn(tokio_postgres::Error) -> StoreError + Send + Sync>,
    pub describe: String,
}

/// Writes outcomes as they come, each batch in one statement, until every
/// sender is gone (the store dropped).
pub(super) async fn write(writer: Writer, mut queue: mpsc::UnboundedReceiver<Outcome>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        match writer.statement(&batch).await {
            Ok(written) => {
                for outcome in batch.drain(..) {
                    let answer = match written.contains(&outcome.id) {
                        true => Ok(()),
                        false => Err(StoreError::Superseded { id: outcome.id }),
                    };
                    let _ = outcome.answer.send(answer);
                }
            }
            Err(error) => {
                // Each caller holds its outcome and tries again (the scheduler's backlog).
                let errors = super::shared_failure(error, batch.len(), &writer.describe);
                for (outcome, error) in batch.drain(..).zip(errors) {
                    let _ = outcome.answer.send(Err(error));
                }
            }
        }
    }
}

impl Writer {
    async fn statement(&self, batch: &[Outcome]) -> Result<Vec<i64>> {
        let ids: Vec<i64> = batch.iter().map(|o| o.id).collect();
        let fences: Vec<Option<i64>> = batch.iter().map(|o| o.fence).collect();
        let statuses: Vec<&str> = batch.iter().map(|o| o.finished.status.as_str()).collect();
        let ended: Vec<DateTime<Utc>> = batch.iter().map(|o| o.finished.ended_at).collect();
        let codes: Vec<Option<i32>> = batch.iter().map(|o| o.finished.exit_code).collect();
        let errors: Vec<Option<&str>> = batch.iter().map(|o| o.finished.error.as_deref()).collect();
        let fuel: Vec<Option<i64>> = batch.iter().map(|o| o.finished.fuel_used.map(|f| f as i64)).collect();
        let stdout: Vec<&[u8]> = batch.iter().map(|o| o.finished.stdout.as_slice()).collect();
        let stderr: Vec<&[u8]> = batch.iter().map(|o| o.finished.stderr.as_slice()).collect();
        let dropped: Vec<i64> = batch.iter().map(|o| o.finished.output_dropped as i64).collect();
        let client = self.pool.get().await.map_err(|error| StoreError::Backend {
            store: self.describe.clone(),
            kind: crate::store::FailureKind::Io,
            source: Box::new(error),
        })?;
        let statement = client.prepare_cached(FINISH).await.map_err(|e| (self.error)(e))?;
        let rows = client
            .query(
                &statement,
                &[&ids, &fences, &statuses, &ended, &codes, &errors, &fuel, &stdout, &stderr, &dropped, &self.host_id],
            )
            .await
            .map_err(|e| (self.error)(e))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}
