//! Riding out a failing store (a full disk, an I/O error, a database
//! locked by another process): the host stays up, holds what it could not
//! write, and retries with backoff.
//!
//! What is held, and how it is written once the store takes writes again:
//! - outcomes of runs that ended: written as they ended (their real
//!   outcome, never `abandoned`). Held in memory up to `MAX_HELD_BYTES`,
//!   captured output dropped first (and said so in the record); a write
//!   refused for want of room is tried again without its output. Past
//!   `MAX_HELD_OUTCOMES` the host stops starting runs until the store
//!   recovers: a run it could not record would be a run it forgets.
//! - retries to record, and runs that could not be marked `running` (their
//!   rows are still `pending`; they start once the store recovers);
//! - scheduled fires that could not be recorded: the job's watermark did
//!   not move, so once the store recovers its catch-up policy deals with
//!   every fire since, exactly as after a restart.
//!
//! Each episode is logged once when it begins and once when it ends, and
//! shown in the jobs view (`StoreHealth`).

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Scheduler;
use super::timer::TimerKind;
use super::view::StoreHealth;
use crate::events::HostEvent;
use crate::store::{Finished, NewRun, PendingRun, StoreError};

/// Memory for held outcomes; past it, their captured output goes first.
const MAX_HELD_BYTES: usize = 64 << 20;
/// Held outcomes at most; past it, no new run starts until the store recovers.
const MAX_HELD_OUTCOMES: usize = 50_000;
/// The first wait before writing again, doubled after each failed try.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Backlog {
    outcomes: VecDeque<(i64, Finished)>,
    held_bytes: usize,
    rows: Vec<NewRun>,
    unstarted: Vec<PendingRun>,
    owed_catch_up: BTreeSet<String>,
    episode: Option<Episode>,
    armed: bool,
    delay: Duration,
    /// Whether the host has said it stopped starting runs, this episode.
    said_full: bool,
}

struct Episode {
    since: DateTime<Utc>,
    error: String,
}

impl Backlog {
    /// Notes a failed write; the first of an episode is logged.
    pub fn failed(&mut self, error: &StoreError, now: DateTime<Utc>) {
        match &mut self.episode {
            Some(episode) => episode.error = error.to_string(),
            None => {
                tracing::error!(
                    %error,
                    "the store is failing: the host keeps running, holds what it cannot write, and retries"
                );
                self.episode = Some(Episode { since: now, error: error.to_string() });
            }
        }
    }

    pub fn hold_outcome(&mut self, run_id: i64, finished: Finished) {
        self.held_bytes += finished.weight();
        self.outcomes.push_back((run_id, finished));
        // Oldest first: the output of runs long over matters least.
        for (_, held) in self.outcomes.iter_mut() {
            if self.held_bytes <= MAX_HELD_BYTES {
                break;
            }
            let before = held.weight();
            held.drop_output("the store could not take it, and the host held too much waiting for it");
            self.held_bytes -= before - held.weight();
        }
        if !self.may_start_runs() && !self.said_full {
            self.said_full = true;
            tracing::error!(
                held = self.outcomes.len(),
                "the store takes no outcomes and the host holds as many as it can: no run starts until it recovers"
            );
        }
    }

    pub fn hold_row(&mut self, run: NewRun) {
        self.rows.push(run);
    }

    pub fn hold_unstarted(&mut self, run: PendingRun) {
        self.unstarted.push(run);
    }

    pub fn owe_catch_up(&mut self, job: &str) {
        self.owed_catch_up.insert(job.to_owned());
    }

    /// The job's fires wait for a catch-up once the store recovers.
    pub fn owes_catch_up(&self, job: &str) -> bool {
        self.owed_catch_up.contains(job)
    }

    pub fn may_start_runs(&self) -> bool {
        self.outcomes.len() < MAX_HELD_OUTCOMES
    }

    pub fn health(&self) -> StoreHealth {
        StoreHealth {
            failing: self.episode.as_ref().map(|e| e.error.clone()),
            failing_since: self.episode.as_ref().map(|e| e.since),
            held_outcomes: self.outcomes.len(),
            starting_runs: self.may_start_runs(),
        }
    }

    fn is_empty(&self) -> bool {
        self.outcomes.is_empty() && self.rows.is_empty() && self.unstarted.is_empty() && self.owed_catch_up.is_empty()
    }

    /// At shutdown: says what could not be written, if anything.
    pub fn report_loss(&self) {
        if !self.outcomes.is_empty() || !self.rows.is_empty() {
            tracing::error!(
                outcomes = self.outcomes.len(),
                retries = self.rows.len(),
                "stopping with writes the store never took: those runs are found `abandoned` at the next start, and retried per their [retry]"
            );
        }
    }
}

impl Scheduler {
    /// Notes a failed store operation: held and retried (see `Backlog`),
    /// and counted by observers.
    pub(super) fn store_failed(&mut self, error: &StoreError, now: DateTime<Utc>) {
        self.events.note(HostEvent::StoreFailed);
        self.backlog.failed(error, now);
    }

    /// Times the next try of the held writes, unless one is timed already.
    pub(super) fn arm_store_retry(&mut self) {
        self.view_changed = true;
        if self.backlog.armed {
            return;
        }
        self.backlog.armed = true;
        self.backlog.delay = (self.backlog.delay * 2).clamp(FIRST_RETRY, MAX_RETRY);
        let at = self.clock.now() + chrono::Duration::from_std(self.backlog.delay).unwrap_or_default();
        self.add_timer(at, TimerKind::StoreRetry);
    }

    /// Writes what the store refused, in order; stops at the first refusal
    /// and tries again later. Ends the episode once everything is written.
    pub(super) async fn retry_store(&mut self) {
        self.backlog.armed = false;
        self.view_changed = true;
        if self.backlog.is_empty() {
            return self.end_episode();
        }
        let now = self.clock.now();
        if let Err(error) = self.write_backlog(now).await {
            self.store_failed(&error, now);
            return self.arm_store_retry();
        }
        self.end_episode();
    }

    async fn write_backlog(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        while let Some((run_id, finished)) = self.backlog.outcomes.front().cloned() {
            match self.store.finish_run(run_id, finished.clone()).await {
                Ok(()) => {}
                Err(StoreError::Superseded { id }) => {
                    tracing::warn!(run_id = id, "a held outcome is discarded: another host took the run over");
                }
                Err(error) if error.is_full() && !(finished.stdout.is_empty() && finished.stderr.is_empty()) => {
                    let (_, held) = self.backlog.outcomes.front_mut().expect("just read");
                    let before = held.weight();
                    held.drop_output(&format!("the store had no room for it ({error})"));
                    self.backlog.held_bytes -= before - held.weight();
                    continue;
                }
                Err(error) => return Err(error),
            }
            let (_, written) = self.backlog.outcomes.pop_front().expect("just read");
            self.backlog.held_bytes -= written.weight();
        }
        if !self.backlog.rows.is_empty() {
            let rows = self.backlog.rows.clone();
            let ids = self.store.insert_runs(rows.clone()).await?;
            self.backlog.rows.clear();
            for (row, id) in rows.into_iter().zip(ids) {
                let pending = row.into_pending(id);
                self.add_timer(pending.scheduled_for.max(now), TimerKind::Start(pending));
            }
        }
        if !self.backlog.owed_catch_up.is_empty() {
            let owed = self.backlog.owed_catch_up.clone();
            self.catch_up(now, Some(&owed), super::recover::Why::StoreFailed).await?;
            self.backlog.owed_catch_up.clear();
        }
        for run in std::mem::take(&mut self.backlog.unstarted) {
            if run.trigger == crate::record::Trigger::Manual {
                self.triggered_waiting += 1; // it left the count when first dispatched
            }
            self.ready_or_timed(run, now);
        }
        Ok(())
    }

    pub(super) fn end_episode(&mut self) {
        self.backlog.delay = Duration::ZERO;
        self.backlog.said_full = false;
        if let Some(episode) = self.backlog.episode.take() {
            let failing_ms = (self.clock.now() - episode.since).num_milliseconds();
            tracing::info!(failing_ms, "the store takes writes again: everything held is written");
        }
    }
}
