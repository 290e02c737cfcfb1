//! The job world's key-value store in PostgreSQL: one namespace per job.
//! Size limits on keys and values are checked by the runtime; the number
//! of keys per job is checked here, in the same statement as the write.

use super::PgStore;
use super::runs::get;
use crate::store::{MAX_KEYS_PER_JOB, Result};

impl PgStore {
    pub(super) async fn kv_value(&self, job: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT value FROM kv WHERE job = $1 AND key = $2")
            .await
            .map_err(|e| self.error(e))?;
        let row = client.query_opt(&statement, &[&job, &key]).await.map_err(|e| self.error(e))?;
        row.map(|row| get(self, &row, 0)).transpose()
    }

    /// Writes unless the key is new and the job holds its limit already.
    /// (Two hosts adding keys to one job at the same moment may together
    /// pass the limit by a key or so: each counts before the other commits.)
    pub(super) async fn kv_put(&self, job: &str, key: &str, value: &[u8]) -> Result<bool> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO kv (job, key, value) SELECT $1, $2, $3
                 WHERE EXISTS (SELECT 1 FROM kv WHERE job = $1 AND key = $2)
                    OR (SELECT count(*) FROM kv WHERE job = $1) < $4
                 ON CONFLICT (job, key) DO UPDATE SET value = excluded.value",
            )
            .await
            .map_err(|e| self.error(e))?;
        let limit = i64::from(MAX_KEYS_PER_JOB);
        let written = client.execute(&statement, &[&job, &key, &value, &limit]).await.map_err(|e| self.error(e))?;
        Ok(written == 1)
    }

    pub(super) async fn kv_remove(&self, job: &str, key: &str) -> Result<()> {
        let client = self.client().await?;
        client.execute("DELETE FROM kv WHERE job = $1 AND key = $2", &[&job, &key]).await.map_err(|e| self.error(e))?;
        Ok(())
    }

    /// In byte order (`COLLATE "C"`), as SQLite lists them, whatever the
    /// database's collation.
    pub(super) async fn kv_keys(&self, job: &str, prefix: &str) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key FROM kv WHERE job = $1 AND starts_with(key, $2) ORDER BY key COLLATE \"C\"",
                &[&job, &prefix],
            )
            .await
            .map_err(|e| self.error(e))?;
        rows.iter().map(|row| get(self, row, 0)).collect()
    }
}
