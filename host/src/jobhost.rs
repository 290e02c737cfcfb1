//! The host side of the job world's imports, for real: key-value state in
//! the store, and `enqueue` through the scheduler (or, outside a running
//! host, as a pending run the next host start picks up).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use crate::record::{RunStatus, Trigger};
use crate::runtime::{HostFuture, JobHost};
use crate::store::{MAX_KEYS_PER_JOB, NewRun, StoreHandle};

/// A request from a guest to start another job.
pub struct Enqueue {
    pub parent_run: i64,
    pub job: String,
    pub payload: Vec<u8>,
    pub delay: Duration,
    /// The new run's id, or why there is none.
    pub reply: oneshot::Sender<Result<i64, String>>,
}

/// Where `enqueue` goes.
pub enum Queue {
    /// To the running scheduler, which starts the run in due course.
    Scheduler(mpsc::UnboundedSender<Enqueue>),
    /// Written as a pending run of one of these jobs, for the next host
    /// start (used by `wasmcron once`).
    Pending(BTreeSet<String>),
}

pub struct StoreJobHost {
    pub store: StoreHandle,
    pub queue: Queue,
}

fn describe(error: crate::store::StoreError) -> String {
    tracing::error!(%error, "a job world call failed in the store");
    format!("the host's store failed: {error}")
}

impl JobHost for StoreJobHost {
    fn kv_get<'a>(&'a self, job: &'a str, key: &'a str) -> HostFuture<'a, Option<Vec<u8>>> {
        let (job, key) = (job.to_owned(), key.to_owned());
        Box::pin(async move { self.store.call(move |s| s.kv_get(&job, &key)).await.map_err(describe) })
    }

    fn kv_set<'a>(&'a self, job: &'a str, key: &'a str, value: Vec<u8>) -> HostFuture<'a, ()> {
        let (job, key) = (job.to_owned(), key.to_owned());
        Box::pin(async move {
            match self.store.call(move |s| s.kv_set(&job, &key, &value)).await.map_err(describe)? {
                true => Ok(()),
                false => Err(format!("the job already holds {MAX_KEYS_PER_JOB} keys; delete some first")),
            }
        })
    }

    fn kv_delete<'a>(&'a self, job: &'a str, key: &'a str) -> HostFuture<'a, ()> {
        let (job, key) = (job.to_owned(), key.to_owned());
        Box::pin(async move { self.store.call(move |s| s.kv_delete(&job, &key)).await.map_err(describe) })
    }

    fn kv_list<'a>(&'a self, job: &'a str, prefix: &'a str) -> HostFuture<'a, Vec<String>> {
        let (job, prefix) = (job.to_owned(), prefix.to_owned());
        Box::pin(async move { self.store.call(move |s| s.kv_list(&job, &prefix)).await.map_err(describe) })
    }

    fn enqueue<'a>(&'a self, parent_run: i64, job: &'a str, payload: Vec<u8>, delay: Duration) -> HostFuture<'a, i64> {
        let job = job.to_owned();
        Box::pin(async move {
            match &self.queue {
                Queue::Scheduler(scheduler) => {
                    let (reply, answer) = oneshot::channel();
                    scheduler
                        .send(Enqueue { parent_run, job, payload, delay, reply })
                        .map_err(|_| "the host is shutting down".to_owned())?;
                    answer.await.map_err(|_| "the host is shutting down".to_owned())?
                }
                Queue::Pending(known) => {
                    if !known.contains(&job) {
                        return Err(format!("no job named {job:?} is declared"));
                    }
                    let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                    self.store
                        .call(move |s| s.insert_run(&enqueued(&job, &payload, at, parent_run)))
                        .await
                        .map_err(describe)
                }
            }
        })
    }
}

/// The pending row of an enqueued run.
pub fn enqueued<'a>(job: &'a str, payload: &'a [u8], at: chrono::DateTime<Utc>, parent_run: i64) -> NewRun<'a> {
    NewRun { payload, parent_run: Some(parent_run), ..NewRun::new(job, RunStatus::Pending, Trigger::Manual, at) }
}
