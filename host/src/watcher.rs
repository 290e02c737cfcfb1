//! File events → debounced batches of changed paths.
//!
//! `notify` watches the jobs folder and the folder of every module the jobs
//! name (a folder, not the file: builds replace files by renaming, which
//! would end a watch on the file itself). Events are gathered until the
//! folders have been quiet for the debounce interval — so the several
//! writes of one `cargo build` make one batch — but never for longer than
//! `MAX_BATCH_WAIT`, so a file written without pause still gets reloaded.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// The longest a batch is held back by a stream of events.
const MAX_BATCH_WAIT: Duration = Duration::from_secs(1);

pub struct Watcher {
    inner: RecommendedWatcher,
    watched: BTreeSet<PathBuf>,
}

impl Watcher {
    /// Starts watching (nothing yet; see [`watch`](Self::watch)). Batches of
    /// changed paths, canonical, arrive on the returned channel. Must be
    /// called inside a tokio runtime.
    pub fn start(debounce: Duration) -> anyhow::Result<(Watcher, mpsc::UnboundedReceiver<BTreeSet<PathBuf>>)> {
        let (raw_tx, raw_rx) = mpsc::unbounded_channel::<PathBuf>();
        let inner = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if !event.kind.is_access() => {
                for path in event.paths {
                    let _ = raw_tx.send(path);
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "file watching reported an error"),
        })
        .context("starting the file watcher")?;
        let (batch_tx, batch_rx) = mpsc::unbounded_channel();
        tokio::spawn(debounce_events(raw_rx, batch_tx, debounce));
        Ok((Watcher { inner, watched: BTreeSet::new() }, batch_rx))
    }

    /// Watches exactly `folders` (each non-recursively) from now on.
    pub fn watch(&mut self, folders: BTreeSet<PathBuf>) {
        for gone in self.watched.difference(&folders) {
            let _ = self.inner.unwatch(gone);
        }
        for folder in folders.difference(&self.watched) {
            if let Err(error) = self.inner.watch(folder, RecursiveMode::NonRecursive) {
                tracing::warn!(folder = %folder.display(), %error, "cannot watch a folder for changes");
            }
        }
        self.watched = folders;
    }
}

async fn debounce_events(
    mut raw: mpsc::UnboundedReceiver<PathBuf>,
    batches: mpsc::UnboundedSender<BTreeSet<PathBuf>>,
    debounce: Duration,
) {
    while let Some(first) = raw.recv().await {
        let mut batch = BTreeSet::from([first]);
        let give_up = tokio::time::Instant::now() + MAX_BATCH_WAIT;
        loop {
            let quiet = tokio::time::sleep(debounce);
            tokio::select! {
                more = raw.recv() => match more {
                    Some(path) => { batch.insert(path); }
                    None => break,
                },
                () = quiet => break,
                () = tokio::time::sleep_until(give_up) => break,
            }
        }
        if batches.send(batch).is_err() {
            return;
        }
    }
}
