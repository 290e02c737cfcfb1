//! The store's one connection and how work reaches it.
//!
//! Strategy: one thread (`wasmcron-store`) owns the connection. Callers
//! send it work and await the answer; it takes whatever is queued (up to
//! `MAX_BATCH`) and runs it in one transaction, each piece atomic (a
//! savepoint around work of several statements; a single statement is
//! atomic by itself), answering each caller only after the commit. Under
//! load many runs share one commit; an answer always means the write is
//! durable.
//!
//! Production and tests take this same path. Only how a caller waits
//! differs: a store opened on a current-thread runtime — virtual-time
//! tests on a paused clock, and the CLI — has its callers wait inside a
//! blocking task, which holds a paused clock still meanwhile, so the store
//! takes no virtual time. On the daemon's multi-thread runtime a blocking
//! task per call would cost a thread hand-off per write, so callers await
//! the answer. (Measured: running each batch on the blocking pool instead
//! of this thread halved throughput at `max_running` 4 and 16.)

use std::sync::mpsc;

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::oneshot;

use super::db::Db;
use crate::store::{FailureKind, Result, StoreError};

/// Pieces of work committed together at most.
const MAX_BATCH: usize = 512;

/// Runs against the database, then returns the answer to deliver once the
/// commit has succeeded (`Ok`) or failed (`Err`, with why), and the kind
/// of failure, if the work failed.
type Work = Box<dyn FnOnce(&Db) -> (Answer, Option<FailureKind>) + Send>;
type Answer = Box<dyn FnOnce(Result<()>) + Send>;

#[derive(Clone)]
pub(super) struct Actor {
    work: mpsc::Sender<Work>,
    /// Opened on a current-thread runtime: callers wait on a blocking task.
    current_thread: bool,
}

impl Actor {
    /// Moves `db` onto a thread of its own. The thread ends, after
    /// committing everything sent, once every `Actor` is dropped.
    pub fn start(db: Db) -> std::io::Result<Actor> {
        let (work, queue) = mpsc::channel();
        std::thread::Builder::new().name("wasmcron-store".into()).spawn(move || serve(db, queue))?;
        let current_thread = Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread);
        Ok(Actor { work, current_thread })
    }

    /// Runs `work` atomically, in a savepoint; resolves once its writes
    /// are committed.
    pub async fn call<T: Send + 'static>(&self, work: impl FnOnce(&Db) -> Result<T> + Send + 'static) -> Result<T> {
        self.submit(move |db| db.atomically(work)).await
    }

    /// Runs `work`, which is one SQL statement (atomic by itself, so no
    /// savepoint is needed); resolves once it is committed.
    pub async fn call_one<T: Send + 'static>(&self, work: impl FnOnce(&Db) -> Result<T> + Send + 'static) -> Result<T> {
        self.submit(work).await
    }

    async fn submit<T: Send + 'static>(&self, work: impl FnOnce(&Db) -> Result<T> + Send + 'static) -> Result<T> {
        let (answer, answered) = oneshot::channel();
        let work: Work = Box::new(move |db| {
            let result = work(db);
            let failed = result.as_ref().err().map(StoreError::kind);
            let answer: Answer = Box::new(move |committed: Result<()>| {
                let _ = answer.send(committed.and(result));
            });
            (answer, failed)
        });
        self.work.send(work).map_err(|_| StoreError::Closed)?;
        if self.current_thread {
            let waited = tokio::task::spawn_blocking(move || answered.blocking_recv()).await;
            return waited.map_err(|_| StoreError::Closed)?.map_err(|_| StoreError::Closed)?;
        }
        answered.await.map_err(|_| StoreError::Closed)?
    }
}

fn serve(db: Db, queue: mpsc::Receiver<Work>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(work) => batch.push(work),
                Err(_) => break,
            }
        }
        run_batch(&db, batch);
    }
}

/// Runs `batch` in one transaction and answers each piece of work.
fn run_batch(db: &Db, batch: Vec<Work>) {
    if let Some(reason) = db.replaced() {
        refuse(db, batch, reason);
        return;
    }
    // If BEGIN fails, each piece runs (and commits) on its own savepoint.
    let mut in_batch = db.conn.execute_batch("BEGIN IMMEDIATE").is_ok();
    let mut answers: Vec<(Answer, bool)> = Vec::with_capacity(batch.len());
    for work in batch {
        let (answer, failed) = work(db);
        if in_batch && db.conn.is_autocommit() {
            // SQLite rolled the whole transaction back (it may on a full
            // disk or an I/O error): nothing before this committed, and
            // what follows runs in transactions of its own.
            in_batch = false;
            let kind = failed.unwrap_or(FailureKind::Other);
            for (earlier, _) in answers.drain(..) {
                earlier(Err(rolled_back(db, kind)));
            }
            answer(Ok(())); // its own error is in its result
            continue;
        }
        answers.push((answer, in_batch));
    }
    let committed = if in_batch {
        db.conn.execute_batch("COMMIT").map_err(|error| {
            let _ = db.conn.execute_batch("ROLLBACK");
            tracing::debug!(%error, path = %db.path.display(), "a batch of store writes was not committed");
            error
        })
    } else {
        Ok(())
    };
    for (answer, batched) in answers {
        let result = match (&committed, batched) {
            (Err(error), true) => Err(super::db::backend(&db.path, clone_error(error))),
            _ => Ok(()),
        };
        answer(result);
    }
}

/// Answers every piece of `batch` with `reason`, keeping none of it:
/// each runs (its answer is made by running it) in a transaction rolled
/// back at the end.
fn refuse(db: &Db, batch: Vec<Work>, reason: &'static str) {
    tracing::debug!(reason, path = %db.path.display(), "a batch of store work refused");
    let began = db.conn.execute_batch("BEGIN").is_ok();
    let answers: Vec<Answer> = batch.into_iter().map(|work| work(db).0).collect();
    if began {
        let _ = db.conn.execute_batch("ROLLBACK");
    }
    for answer in answers {
        answer(Err(StoreError::Backend {
            store: db.path.display().to_string(),
            kind: FailureKind::Io,
            source: reason.into(),
        }));
    }
}

/// The error given to work whose transaction SQLite rolled back because
/// of a later piece of work in the same batch.
fn rolled_back(db: &Db, kind: FailureKind) -> StoreError {
    StoreError::Backend {
        store: db.path.display().to_string(),
        kind,
        source: "the write was rolled back with its batch: a later write in it failed".into(),
    }
}

/// rusqlite errors are not `Clone`; the commit's is told to every caller
/// of the batch, so it is rebuilt from its code and message.
fn clone_error(error: &rusqlite::Error) -> rusqlite::Error {
    match error {
        rusqlite::Error::SqliteFailure(code, message) => rusqlite::Error::SqliteFailure(*code, message.clone()),
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}
