//! `wasmcron run` under systemd: the notify protocol of a `Type=notify`
//! service (with the `sd-notify` crate) and logging to the journal.
//!
//! [`Notifier`] sends `READY=1` once the scheduler publishes a ready jobs
//! view — by then jobs are loaded, the store is open, the API's listener
//! is bound and the scheduler has recovered from the last stop — then a
//! `STATUS=` line as the view changes, `WATCHDOG=1` from the scheduler's
//! own loop (it is the scheduler's [`Liveness`]), and `STOPPING=1` when
//! shutdown begins. Without `NOTIFY_SOCKET` there is no notifier and none
//! of it happens. [`logs_to_journal`] tells `main` that stderr is the
//! journal, which stamps each line itself.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;

use crate::scheduler::{JobsView, Liveness};

/// How often a `STATUS=` line is sent at most: the view changes with every
/// run, and `systemctl status` needs no more.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Talks to the service manager over `NOTIFY_SOCKET`.
#[derive(Debug, Default)]
pub struct Notifier {
    /// A failed send was logged: the next ones are not, until one succeeds.
    failing: AtomicBool,
}

impl Notifier {
    /// A notifier if the service manager asked for notifications (`NOTIFY_SOCKET`).
    pub fn from_env() -> Option<Notifier> {
        std::env::var_os("NOTIFY_SOCKET").map(|_| Notifier::default())
    }

    /// How often to send `WATCHDOG=1`: half the `WatchdogSec` the service
    /// manager set for this process (`WATCHDOG_USEC`, `WATCHDOG_PID`), as
    /// `sd_watchdog_enabled(3)` advises; none without a watchdog.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        let mut usec = 0;
        let enabled = sd_notify::watchdog_enabled(false, &mut usec) && usec > 0;
        enabled.then(|| Duration::from_micros(usec) / 2)
    }

    /// Shutdown has begun.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Follows the jobs view until the scheduler is gone: `READY=1` with
    /// the first ready view, then its `STATUS=` line whenever it changes,
    /// at most every [`STATUS_EVERY`].
    pub async fn follow(&self, mut view: watch::Receiver<JobsView>) {
        if view.wait_for(|view| view.ready).await.is_err() {
            return; // stopped before it was ready
        }
        let line = status_line(&view.borrow_and_update());
        self.send(&[NotifyState::Ready, NotifyState::Status(&line)]);
        tracing::debug!("told systemd the host is ready");
        loop {
            tokio::time::sleep(STATUS_EVERY).await;
            if view.changed().await.is_err() {
                return;
            }
            let line = status_line(&view.borrow_and_update());
            self.send(&[NotifyState::Status(&line)]);
        }
    }

    fn send(&self, states: &[NotifyState]) {
        match sd_notify::notify(false, states) {
            Ok(()) => self.failing.store(false, Ordering::Relaxed),
            Err(error) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    let socket = std::env::var("NOTIFY_SOCKET").unwrap_or_default();
                    tracing::warn!(%error, socket, "cannot notify systemd (NOTIFY_SOCKET)");
                }
            }
        }
    }
}

impl Liveness for Notifier {
    fn alive(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

/// What `systemctl status` shows: "3 jobs, 1 running, 0 queued", and
/// what is wrong, if anything.
pub fn status_line(view: &JobsView) -> String {
    let loaded = view.jobs.iter().filter(|job| job.module_sha256.is_some()).count();
    let unloaded = view.jobs.len() - loaded;
    let running: usize = view.jobs.iter().map(|job| job.in_flight.len()).sum();
    let queued: usize = view.jobs.iter().map(|job| job.queued).sum();
    if !view.ready {
        return format!("stopping: {running} running");
    }
    let plural = if loaded == 1 { "" } else { "s" };
    let mut line = format!("{loaded} job{plural}, {running} running, {queued} queued");
    if unloaded > 0 {
        line.push_str(&format!(", {unloaded} failed to load"));
    }
    if let Some(why) = &view.store.failing {
        line.push_str(&format!("; the store is failing ({why}), {} outcomes held", view.store.held_outcomes));
    }
    line
}

/// Whether stderr is the journal: `JOURNAL_STREAM` names its device and
/// inode (`systemd.exec(5)`), so a stderr redirected elsewhere by a
/// wrapper does not count.
pub fn logs_to_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Some((device, inode)) = stream.to_str().and_then(|text| text.split_once(':')) else { return false };
    let stderr = std::io::stderr().as_fd().try_clone_to_owned().map(std::fs::File::from);
    let Ok(metadata) = stderr.and_then(|file| file.metadata()) else { return false };
    device.parse() == Ok(metadata.dev()) && inode.parse() == Ok(metadata.ino())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{JobView, StoreHealth};

    fn job(name: &str, loaded: bool, in_flight: usize, queued: usize) -> JobView {
        JobView {
            name: name.into(),
            module_sha256: loaded.then(|| "ab".into()),
            in_flight: (0..in_flight as i64).collect(),
            queued,
            ..JobView::default()
        }
    }

    #[test]
    fn the_status_line_counts_jobs_runs_and_what_waits() {
        let mut view = JobsView {
            ready: true,
            jobs: vec![job("a", true, 1, 0), job("b", true, 0, 2), job("c", true, 0, 0)],
            store: StoreHealth::healthy(),
            queue: None,
        };
        assert_eq!(status_line(&view), "3 jobs, 1 running, 2 queued");
        view.jobs.truncate(1);
        assert_eq!(status_line(&view), "1 job, 1 running, 0 queued");
        view.jobs.push(job("broken", false, 0, 0));
        view.store.failing = Some("disk full".into());
        view.store.held_outcomes = 4;
        assert_eq!(
            status_line(&view),
            "1 job, 1 running, 0 queued, 1 failed to load; the store is failing (disk full), 4 outcomes held"
        );
        view.ready = false;
        assert_eq!(status_line(&view), "stopping: 1 running");
    }
}
