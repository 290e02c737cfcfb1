//! File events → debounced batches of changed paths.
//!
//! `notify` watches the jobs folder and the folder of every module the jobs
//! name (a folder, not the file: builds replace files by renaming, which
//! would end a watch on the file itself). Events are gathered until the
//! folders have been quiet for the debounce interval — so the several
//! writes of one `cargo build` make one batch — but never for longer than
//! `MAX_BATCH_WAIT`, so a file written without pause still gets reloaded.
//!
//! A file renamed into place (or away) is complete by construction: the
//! writer finished it before the rename. A batch holding only such events
//! goes out after `SETTLED_GRACE`, which gathers the rest of one deploy
//! (a module and its declaration renamed together), instead of the whole
//! debounce interval.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use notify::event::ModifyKind;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The longest a batch is held back by a stream of events.
const MAX_BATCH_WAIT: Duration = Duration::from_secs(1);

/// How long a batch of renames and removals waits for companions.
const SETTLED_GRACE: Duration = Duration::from_millis(5);

/// A changed path, and whether the change left it complete (a rename or a
/// removal) rather than possibly mid-write.
type Change = (PathBuf, bool);

pub struct Watcher {
    inner: RecommendedWatcher,
    watched: BTreeSet<PathBuf>,
}

impl Watcher {
    /// Starts watching (nothing yet; see [`watch`](Self::watch)). Batches of
    /// changed paths, canonical, arrive on the returned channel. Must be
    /// called inside a tokio runtime.
    pub fn start(debounce: Duration) -> anyhow::Result<(Watcher, mpsc::UnboundedReceiver<BTreeSet<PathBuf>>)> {
        let (raw_tx, raw_rx) = mpsc::unbounded_channel::<Change>();
        let inner = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if !event.kind.is_access() => {
                let settled = matches!(event.kind, EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_));
                for path in event.paths {
                    let _ = raw_tx.send((path, settled));
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
    mut raw: mpsc::UnboundedReceiver<Change>,
    batches: mpsc::UnboundedSender<BTreeSet<PathBuf>>,
    debounce: Duration,
) {
    while let Some(first) = raw.recv().await {
        let give_up = Instant::now() + MAX_BATCH_WAIT;
        // Each path's latest change: whether it settled the path, and when.
        let mut batch = BTreeMap::new();
        let mut change = Some(first);
        loop {
            if let Some((path, settled)) = change.take() {
                batch.insert(path, (settled, Instant::now()));
            }
            // A temporary file written and then renamed into place ends
            // settled: the rename is its latest change.
            let due = match batch.values().filter(|(settled, _)| !settled).map(|(_, at)| *at).max() {
                Some(last_unsettled) => last_unsettled + debounce,
                None => batch.values().map(|(_, at)| *at).max().expect("a batch is never empty") + SETTLED_GRACE,
            };
            tokio::select! {
                more = raw.recv() => match more {
                    Some(more) => change = Some(more),
                    None => break,
                },
                () = tokio::time::sleep_until(due.min(give_up)) => break,
            }
        }
        if batches.send(batch.into_keys().collect()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `changes` to the debouncer on a paused clock; returns the
    /// first batch and how long after the first change it came out.
    async fn first_batch(changes: Vec<(&str, bool)>) -> (Vec<PathBuf>, Duration) {
        let (raw, events) = mpsc::unbounded_channel();
        let (batches, mut out) = mpsc::unbounded_channel();
        tokio::spawn(debounce_events(events, batches, Duration::from_millis(75)));
        let started = Instant::now();
        for (path, settled) in changes {
            raw.send((PathBuf::from(path), settled)).unwrap();
        }
        let batch = out.recv().await.unwrap();
        (batch.into_iter().collect(), started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_in_place_waits_out_the_debounce() {
        let (batch, after) = first_batch(vec![("jobs/a.wasm", false)]).await;
        assert_eq!(batch, [PathBuf::from("jobs/a.wasm")]);
        assert!(after >= Duration::from_millis(75), "{after:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_renamed_into_place_goes_out_at_once() {
        // Written as a temporary file, then renamed over the module.
        let changes = vec![("jobs/a.tmp", false), ("jobs/a.tmp", true), ("jobs/a.wasm", true)];
        let (batch, after) = first_batch(changes).await;
        assert_eq!(batch, [PathBuf::from("jobs/a.tmp"), PathBuf::from("jobs/a.wasm")]);
        assert!(after < Duration::from_millis(75), "{after:?}");
        assert!(after >= SETTLED_GRACE, "companions get a moment to arrive: {after:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn one_unsettled_file_holds_the_batch() {
        let changes = vec![("jobs/a.wasm", true), ("jobs/a.toml", false)];
        let (batch, after) = first_batch(changes).await;
        assert_eq!(batch.len(), 2);
        assert!(after >= Duration::from_millis(75), "{after:?}");
    }
}
