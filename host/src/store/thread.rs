//! `StoreHandle`: the daemon's way to the database. One thread owns the
//! connection; async callers send it closures and await the answer, so
//! SQLite never blocks an async worker.
//!
//! Strategy: the thread takes whatever requests are queued (up to
//! `MAX_BATCH`) and runs them in one transaction, answering each caller only
//! after the commit. Under load many runs share one fsync; an answer always
//! means the write is durable.

use std::sync::mpsc;
use std::thread::JoinHandle;

use super::{Result, Store, StoreError};

/// Requests committed together at most.
const MAX_BATCH: usize = 512;

/// Runs against the store, then returns the answer to deliver once the
/// commit has succeeded (`Ok`) or failed (`Err`, with why).
type Request = Box<dyn FnOnce(&Store) -> Answer + Send>;
type Answer = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

#[derive(Clone)]
pub struct StoreHandle(Route);

#[derive(Clone)]
enum Route {
    Thread(mpsc::Sender<Request>),
    /// Calls run on the caller's thread: for tests on a paused tokio clock,
    /// where waiting on another thread would let virtual time leap ahead.
    Inline(std::sync::Arc<std::sync::Mutex<Store>>),
}

impl StoreHandle {
    /// Moves `store` onto its own thread. The thread ends, after committing
    /// everything sent, once every handle is dropped; join it to be sure.
    pub fn spawn(store: Store) -> (StoreHandle, JoinHandle<()>) {
        let (requests, queue) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("wasmcron-store".into())
            .spawn(move || serve(store, queue))
            .expect("spawning the store thread");
        (StoreHandle(Route::Thread(requests)), thread)
    }

    /// A handle that runs each call synchronously on the calling thread
    /// (each call its own transaction). Meant for virtual-time tests.
    pub fn inline(store: Store) -> StoreHandle {
        StoreHandle(Route::Inline(std::sync::Arc::new(std::sync::Mutex::new(store))))
    }

    /// Runs `work` on the store thread; resolves once its writes are committed.
    pub async fn call<T: Send + 'static>(&self, work: impl FnOnce(&Store) -> Result<T> + Send + 'static) -> Result<T> {
        let requests = match &self.0 {
            Route::Thread(requests) => requests,
            Route::Inline(store) => {
                let store = store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                return store.transaction(work);
            }
        };
        let (answer, answered) = tokio::sync::oneshot::channel();
        let request: Request = Box::new(move |store| {
            let result = work(store);
            Box::new(move |committed| {
                let _ = answer.send(committed.map_err(StoreError::Commit).and(result));
            })
        });
        requests.send(request).map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Closed)?
    }
}

fn serve(store: Store, queue: mpsc::Receiver<Request>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        // If BEGIN fails, each request runs (and commits) on its own.
        let in_transaction = store.conn.execute_batch("BEGIN IMMEDIATE").is_ok();
        let answers: Vec<Answer> = batch.into_iter().map(|request| request(&store)).collect();
        let committed = if in_transaction {
            store.conn.execute_batch("COMMIT").map_err(|error| {
                let _ = store.conn.execute_batch("ROLLBACK");
                tracing::error!(%error, path = %store.path.display(), "a batch of store writes was not committed");
                error.to_string()
            })
        } else {
            Ok(())
        };
        for answer in answers {
            answer(committed.clone());
        }
    }
}
