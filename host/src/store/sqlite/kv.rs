//! The job world's key-value store in SQLite: one namespace per job, so one
//! job never sees another's keys. Size limits on keys and values are
//! checked by the runtime; the number of keys per job is checked here.

use rusqlite::{OptionalExtension, params};

use super::db::Db;
use crate::store::{MAX_KEYS_PER_JOB, Result};

impl Db {
    pub fn kv_get(&self, job: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.conn
            .query_row("SELECT value FROM kv WHERE job = ?1 AND key = ?2", params![job, key], |row| row.get(0))
            .optional()
            .map_err(|e| self.error(e))
    }

    pub fn kv_set(&self, job: &str, key: &str, value: &[u8]) -> Result<bool> {
        if self.kv_get(job, key)?.is_none() {
            let count: u32 = self
                .conn
                .query_row("SELECT count(*) FROM kv WHERE job = ?1", [job], |row| row.get(0))
                .map_err(|e| self.error(e))?;
            if count >= MAX_KEYS_PER_JOB {
                return Ok(false);
            }
        }
        self.conn
            .execute(
                "INSERT INTO kv (job, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (job, key) DO UPDATE SET value = excluded.value",
                params![job, key, value],
            )
            .map_err(|e| self.error(e))?;
        Ok(true)
    }

    pub fn kv_delete(&self, job: &str, key: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM kv WHERE job = ?1 AND key = ?2", params![job, key])
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    pub fn kv_list(&self, job: &str, prefix: &str) -> Result<Vec<String>> {
        let mut statement = self
            .conn
            .prepare("SELECT key FROM kv WHERE job = ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key")
            .map_err(|e| self.error(e))?;
        let keys = statement
            .query_map(params![job, prefix], |row| row.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(|e| self.error(e))?;
        Ok(keys)
    }
}
