//! Start-up: account for everything that happened while the host was down.
//!
//! In order: runs left `running` by a dead host are marked `abandoned` and
//! retried if attempts remain; runs left `pending` are made ready (or timed,
//! if their time is still to come); each scheduled job's fires since the
//! last one dealt with are caught up, or recorded `missed`, per its policy;
//! then every job's next fire is timed. A store that fails meanwhile is
//! retried with backoff until it answers (or the host is stopped).

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{LastRun, Scheduler, plan_catch_up};
use crate::config::CatchUp as Policy;
use crate::events::{HostEvent, RunEvent};
use crate::record::{RunRecord, RunStatus, format_time};
use crate::store::{self, NewRun, StoreError};

/// Why fires were not run when due: the reason recorded with a `missed` one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    HostDown,
    StoreFailed,
    /// The wall clock jumped forward past the fire, or the host stalled.
    FellBehind,
}

impl Scheduler {
    /// Recovers, retrying while the store fails; false if `shutdown`
    /// came first (it is only watched between tries).
    pub(super) async fn recover(&mut self, mut shutdown: Pin<&mut impl Future<Output = ()>>) -> bool {
        let mut wait = Duration::from_millis(100);
        loop {
            match self.try_recover().await {
                Ok(()) => return true,
                Err(error) => {
                    self.store_failed(&error, self.clock.now());
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = &mut shutdown => return false,
                    }
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn try_recover(&mut self) -> Result<(), StoreError> {
        self.sync_clock().await?;
        let now = self.clock.now();
        let attempts = self.attempts();
        let recovered = match &self.member {
            // Other hosts' runs are theirs: only lapsed leases are ended,
            // and pending runs wait in the store to be claimed.
            Some(member) => {
                let rescued = member.cluster.rescue(attempts).await?;
                self.triggered_waiting = rescued.triggered_waiting;
                store::Recovered { abandoned: rescued.abandoned, pending: Vec::new() }
            }
            None => self.store.recover(now, attempts).await?,
        };
        // In a cluster, the latest fires are the timers' (on every host):
        // the catch-up stops short of them (see `cluster::SETTLE`).
        let settled = if self.member.is_some() { now - super::cluster::SETTLE } else { now };
        let why = match self.member {
            Some(_) => "run abandoned: its host's lease lapsed; retried if attempts remain",
            None => "run abandoned: the host stopped during it",
        };
        self.report_abandoned(&recovered.abandoned, why, now);
        let states = self.store.job_states().await?;
        for (name, slot) in &mut self.jobs {
            if let Some(state) = states.get(name) {
                slot.paused = state.paused;
                slot.paused_reason = state.paused_reason.clone();
            }
        }
        let names = self.jobs.keys().cloned().collect();
        self.last_runs =
            self.store.last_outcomes(names).await?.iter().map(|run| (run.job.clone(), LastRun::from(run))).collect();
        self.catch_up_with(settled, None, Why::HostDown, &states).await?;
        self.end_episode();
        let (missed, pending): (Vec<_>, Vec<_>) =
            recovered.pending.into_iter().partition(|run| self.missed_while_down(run, now).is_some());
        if !missed.is_empty() {
            let why: Vec<(i64, String)> =
                missed.iter().map(|run| (run.id, self.missed_while_down(run, now).expect("partitioned"))).collect();
            for (id, why) in &why {
                tracing::info!(run_id = id, why, "delayed run missed");
            }
            self.store.miss_pending(why, now).await?;
            missed.iter().for_each(|run| self.emit_not_run(run, RunStatus::Missed));
        }
        for run in pending {
            if run.trigger == crate::record::Trigger::Manual {
                self.triggered_waiting += 1;
            }
            self.ready_or_timed(run, now);
        }
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        for job in names {
            // Never before the watermark: after the wall clock was set back
            // (while the host ran or was down), the fires up to the last one
            // dealt with were dealt with, and must not run again.
            let watermark = states.get(&job).and_then(|state| state.last_fire).filter(|_| self.member.is_none());
            self.schedule_next(&job, watermark.map_or(settled, |last| last.max(settled)));
        }
        Ok(())
    }

    /// Each job's `[retry] attempts`, by name: what recovery and rescue
    /// retry abandoned runs by.
    pub(super) fn attempts(&self) -> BTreeMap<String, u32> {
        self.jobs.iter().map(|(name, slot)| (name.clone(), slot.spec.retry.attempts)).collect()
    }

    /// Logs and tells observers of runs found abandoned, `why` as said.
    pub(super) fn report_abandoned(&self, runs: &[RunRecord], why: &str, now: DateTime<Utc>) {
        for run in runs {
            tracing::warn!(job = %run.job, run_id = run.id, "{why}");
            self.events.emit(|| {
                let (job, trigger, attempt, due) = (&run.job, run.trigger, run.attempt, run.scheduled_for);
                RunEvent::ended(job, run.id, trigger, attempt, due, now, RunStatus::Abandoned)
            });
        }
    }

    /// Why a delayed run whose time came while the host was down is not
    /// run, if its job's catch-up policy says so: `catch_up = "none"`, or
    /// due before `catch_up_window`. (A run waiting when the host stopped
    /// after its time came counts as due while down too.)
    fn missed_while_down(&self, run: &store::PendingRun, now: DateTime<Utc>) -> Option<String> {
        if !run.delayed || run.scheduled_for > now {
            return None;
        }
        let spec = &self.jobs.get(&run.job)?.spec;
        let due = format_time(run.scheduled_for);
        let window = chrono::Duration::from_std(spec.catch_up_window).unwrap_or(chrono::Duration::MAX);
        if spec.catch_up == Policy::None {
            Some(format!("due at {due} while the host was down; catch_up = \"none\""))
        } else if now.checked_sub_signed(window).is_some_and(|start| run.scheduled_for < start) {
            Some(format!("due at {due} while the host was down, longer ago than catch_up_window"))
        } else {
            None
        }
    }

    /// Plans and records the catch-up of every scheduled job (or of those
    /// in `only`) in one store operation (one commit, not one per job:
    /// with many jobs, start-up would otherwise run into the first fires);
    /// makes the catch-up runs ready.
    pub(super) async fn catch_up(
        &mut self,
        now: DateTime<Utc>,
        only: Option<&BTreeSet<String>>,
        why: Why,
    ) -> Result<(), StoreError> {
        let states = self.store.job_states().await?;
        self.catch_up_with(now, only, why, &states).await
    }

    async fn catch_up_with(
        &mut self,
        now: DateTime<Utc>,
        only: Option<&BTreeSet<String>>,
        why: Why,
        states: &BTreeMap<String, store::JobState>,
    ) -> Result<(), StoreError> {
        let (jobs, missed): (Vec<store::CatchUp>, Vec<(String, u64)>) = self
            .jobs
            .iter()
            .filter(|(name, slot)| slot.spec.enabled && only.is_none_or(|only| only.contains(*name)))
            .filter_map(|(name, slot)| {
                let schedule = slot.spec.schedule.as_ref()?;
                let state = states.get(name).cloned().unwrap_or_default();
                // Fires from the next one timed on are the timer's, not the catch-up's.
                let upto = match slot.next_fire {
                    Some(next) if next <= now => next - chrono::Duration::microseconds(1),
                    _ => now,
                };
                let (plan, missed) =
                    plan_job(name, schedule, slot.spec.catch_up, slot.spec.catch_up_window, &state, upto, why);
                Some((plan, (name.clone(), missed)))
            })
            .unzip();
        for run in self.store.record_catch_up(jobs).await? {
            self.make_ready(run);
        }
        for (job, count) in missed.into_iter().filter(|(_, count)| *count > 0) {
            self.events.note(HostEvent::FiresMissed { job, count });
        }
        Ok(())
    }
}

/// One job's catch-up rows: its missed fires and the catch-up runs its
/// policy calls for, and its new watermark; and how many fires it misses
/// (some may share one summing-up record).
fn plan_job(
    name: &str,
    schedule: &crate::schedule::Schedule,
    policy: Policy,
    window: Duration,
    state: &store::JobState,
    now: DateTime<Utc>,
    why: Why,
) -> (store::CatchUp, u64) {
    let Some(since) = state.last_fire.filter(|_| !state.paused) else {
        // Never fired here, or paused: nothing to catch up, but fires
        // from now on are covered if the host dies.
        return (store::CatchUp { job: name.to_owned(), runs: Vec::new(), last_fire: now }, 0);
    };
    let plan = plan_catch_up(schedule, since, now, policy, window);
    let reason = missed_reason(policy, why);
    let missed = |at, why: String| NewRun::not_run(name, RunStatus::Missed, at, now, why);
    let mut runs: Vec<NewRun> = plan.missed.iter().map(|fire| missed(*fire, reason.clone())).collect();
    if let Some((count, last)) = plan.missed_beyond {
        let summary = format!("{reason}; and {count} more fires up to {} not recorded one by one", format_time(last));
        runs.push(missed(last, summary));
    }
    runs.extend(plan.run.iter().map(|fire| NewRun::pending(name, crate::record::Trigger::CatchUp, *fire)));
    let missed = plan.missed.len() + plan.missed_beyond.map_or(0, |(n, _)| n);
    if missed > 0 || !plan.run.is_empty() {
        let catching_up = plan.run.len();
        tracing::info!(job = %name, missed, catching_up, "fires missed while the host could not run them");
    }
    let last_fire = plan.last.unwrap_or(since).max(since);
    (store::CatchUp { job: name.to_owned(), runs, last_fire }, missed as u64)
}

fn missed_reason(policy: Policy, why: Why) -> String {
    let policy = match policy {
        Policy::None => "none",
        Policy::Once => "once",
        Policy::All => "all",
    };
    let what = match why {
        Why::HostDown => "the host was down at this fire",
        Why::StoreFailed => "the store was failing at this fire",
        Why::FellBehind => "the host's clock jumped past this fire, or the host was stalled",
    };
    format!("{what} (catch_up = \"{policy}\", catch_up_window)")
}
