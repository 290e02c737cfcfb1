//! The host side of the job world's imports, for real: key-value state in
//! the store, and `enqueue` through the scheduler's handle (or, outside a
//! running host, as a pending run the next host start picks up).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::record::Trigger;
use crate::runtime::{HostFuture, JobHost};
use crate::scheduler::Handle;
use crate::store::{MAX_KEYS_PER_JOB, NewRun, Store, StoreError};

/// Where `enqueue` goes.
pub enum Queue {
    /// To the running scheduler, which starts the run in due course.
    Scheduler(Handle),
    /// Written as a pending run of one of these jobs, for the next host
    /// start (used by `wasmcron once`).
    Pending(BTreeSet<String>),
}

pub struct StoreJobHost {
    pub store: Arc<dyn Store>,
    pub queue: Queue,
}

fn describe(error: StoreError) -> String {
    tracing::error!(%error, "a job world call failed in the store");
    format!("the host's store failed: {error}")
}

impl JobHost for StoreJobHost {
    fn kv_get<'a>(&'a self, job: &'a str, key: &'a str) -> HostFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move { self.store.kv_get(job.to_owned(), key.to_owned()).await.map_err(describe) })
    }

    fn kv_set<'a>(&'a self, job: &'a str, key: &'a str, value: Vec<u8>) -> HostFuture<'a, ()> {
        Box::pin(async move {
            match self.store.kv_set(job.to_owned(), key.to_owned(), value).await.map_err(describe)? {
                true => Ok(()),
                false => Err(format!("the job already holds {MAX_KEYS_PER_JOB} keys; delete some first")),
            }
        })
    }

    fn kv_delete<'a>(&'a self, job: &'a str, key: &'a str) -> HostFuture<'a, ()> {
        Box::pin(async move { self.store.kv_delete(job.to_owned(), key.to_owned()).await.map_err(describe) })
    }

    fn kv_list<'a>(&'a self, job: &'a str, prefix: &'a str) -> HostFuture<'a, Vec<String>> {
        Box::pin(async move { self.store.kv_list(job.to_owned(), prefix.to_owned()).await.map_err(describe) })
    }

    fn enqueue<'a>(&'a self, parent_run: i64, job: &'a str, payload: Vec<u8>, delay: Duration) -> HostFuture<'a, i64> {
        Box::pin(async move {
            match &self.queue {
                Queue::Scheduler(scheduler) => {
                    scheduler.enqueue(parent_run, job, payload, delay).await.map_err(|error| error.to_string())
                }
                Queue::Pending(known) => {
                    if !known.contains(job) {
                        return Err(format!("no job named {job:?} is declared"));
                    }
                    let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                    let run =
                        NewRun { payload, parent_run: Some(parent_run), ..NewRun::pending(job, Trigger::Manual, at) };
                    let ids = self.store.insert_runs(vec![run]).await.map_err(describe)?;
                    Ok(ids[0])
                }
            }
        })
    }
}
