//! The store's one connection and how work reaches it.
//!
//! Strategy: an actor task owns the connection. Callers send it work and
//! await the answer; it takes whatever is queued (up to `MAX_BATCH`) and
//! runs it on tokio's blocking pool in one transaction, each piece of work
//! in a savepoint of its own, answering each caller only after the commit.
//! Under load many runs share one commit; an answer always means the write
//! is durable. Production and tests take this same path: a blocking task
//! also holds a paused test clock still while it runs, so virtual-time
//! tests see the store take no time at all.

use tokio::sync::{mpsc, oneshot};

use super::db::Db;
use crate::store::{FailureKind, Result, StoreError};

/// Pieces of work committed together at most.
const MAX_BATCH: usize = 512;

/// Runs against the database, then returns the answer to deliver once the
/// commit has succeeded (`Ok`) or failed (`Err`, with why).
/// With the answer comes the kind of failure, if the work failed.
type Work = Box<dyn FnOnce(&Db) -> (Answer, Option<FailureKind>) + Send>;
type Answer = Box<dyn FnOnce(Result<()>) + Send>;

#[derive(Clone)]
pub(super) struct Actor {
    work: mpsc::UnboundedSender<Work>,
}

impl Actor {
    /// Starts the actor on the current tokio runtime. It ends, after
    /// committing everything sent, once every `Actor` is dropped.
    pub fn start(db: Db) -> Actor {
        let (work, queue) = mpsc::unbounded_channel();
        tokio::spawn(serve(db, queue));
        Actor { work }
    }

    /// Runs `work` atomically; resolves once its writes are committed.
    pub async fn call<T: Send + 'static>(&self, work: impl FnOnce(&Db) -> Result<T> + Send + 'static) -> Result<T> {
        let (answer, answered) = oneshot::channel();
        let work: Work = Box::new(move |db| {
            let result = db.atomically(work);
            let failed = result.as_ref().err().map(StoreError::kind);
            let answer: Answer = Box::new(move |committed: Result<()>| {
                let _ = answer.send(committed.and(result));
            });
            (answer, failed)
        });
        self.work.send(work).map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Closed)?
    }
}

async fn serve(mut db: Db, mut queue: mpsc::UnboundedReceiver<Work>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(work) => batch.push(work),
                Err(_) => break,
            }
        }
        let done = tokio::task::spawn_blocking(move || {
            run_batch(&db, batch);
            db
        });
        match done.await {
            Ok(back) => db = back,
            Err(error) => {
                // Only a panic in a store operation (a bug) gets here; the
                // callers of that batch were answered `Closed` as their
                // answers were dropped, and later calls are refused.
                tracing::error!(%error, "the store's connection was lost");
                return;
            }
        }
    }
}

/// Runs `batch` in one transaction and answers each piece of work.
fn run_batch(db: &Db, batch: Vec<Work>) {
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
