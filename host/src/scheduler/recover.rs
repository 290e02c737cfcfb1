//! Start-up: account for everything that happened while the host was down.
//!
//! In order: runs left `running` by a dead host are marked `abandoned` and
//! retried if attempts remain; runs left `pending` are made ready (or timed,
//! if their time is still to come); each scheduled job's fires since the
//! last one dealt with are caught up, or recorded `missed`, per its policy;
//! then every job's next fire is timed.

use chrono::{DateTime, Utc};

use super::{NewRetry, Scheduler, TimerKind, plan_catch_up};
use crate::config::CatchUp;
use crate::record::{RunStatus, Trigger};
use crate::store::{NewRun, PendingRun, Store};

impl Scheduler {
    pub(super) async fn recover(&mut self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let attempts: Vec<(String, u32)> =
            self.jobs.iter().map(|(name, slot)| (name.clone(), slot.spec.retry.attempts)).collect();
        let (retries, pending) = self
            .store
            .call(move |store| {
                store.transaction(|store| {
                    let mut retries = Vec::new();
                    for run in store.abandon_running(now)? {
                        tracing::warn!(job = %run.job, run_id = run.id, "run abandoned: the host stopped during it");
                        let allowed = attempts.iter().find(|(job, _)| *job == run.job).map_or(0, |(_, n)| *n);
                        if run.attempt < allowed {
                            let retry =
                                NewRetry { job: run.job, attempt: run.attempt + 1, at: now, payload: Vec::new() };
                            retries.push(retry.write(store)?);
                        }
                    }
                    Ok((retries, store.pending_runs()?))
                })
            })
            .await?;
        let retried: Vec<i64> = retries.iter().map(|r| r.id).collect();
        for run in pending {
            if retried.contains(&run.id) {
                continue; // listed among the retries just written
            }
            self.ready_or_timed(run, now);
        }
        for run in retries {
            self.ready_or_timed(run, now);
        }

        self.catch_up(now).await?;
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        for job in names {
            self.schedule_next(&job, now);
        }
        Ok(())
    }

    fn ready_or_timed(&mut self, run: PendingRun, now: DateTime<Utc>) {
        if run.scheduled_for <= now {
            self.make_ready(run);
        } else {
            self.add_timer(run.scheduled_for, TimerKind::Start(run));
        }
    }

    /// Plans and records every scheduled job's catch-up in one transaction
    /// (one commit, not one per job: with many jobs, start-up would otherwise
    /// run into the first fires); makes the catch-up runs ready.
    async fn catch_up(&mut self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let jobs: Vec<CatchUpJob> = self
            .jobs
            .iter()
            .filter(|(_, slot)| slot.spec.enabled)
            .filter_map(|(name, slot)| {
                let schedule = slot.spec.schedule.clone()?;
                Some(CatchUpJob {
                    name: name.clone(),
                    schedule,
                    policy: slot.spec.catch_up,
                    window: slot.spec.catch_up_window,
                })
            })
            .collect();
        let runs = self
            .store
            .call(move |store| {
                store.transaction(|store| {
                    let mut runs = Vec::new();
                    for job in &jobs {
                        runs.extend(job.record(store, now)?);
                    }
                    Ok(runs)
                })
            })
            .await?;
        for run in runs {
            self.make_ready(run);
        }
        Ok(())
    }
}

/// What catching one job up needs, taken off the scheduler for the store thread.
struct CatchUpJob {
    name: String,
    schedule: crate::schedule::Schedule,
    policy: CatchUp,
    window: std::time::Duration,
}

impl CatchUpJob {
    /// Records the job's missed fires and the catch-up runs its policy
    /// calls for; returns the runs.
    fn record(&self, store: &Store, now: DateTime<Utc>) -> crate::store::Result<Vec<PendingRun>> {
        let name = &self.name;
        let state = store.job_state(name)?;
        let Some(since) = state.last_fire.filter(|_| !state.paused) else {
            // Never fired here, or paused: nothing to catch up, but
            // fires from now on are covered if the host dies.
            store.set_last_fire(name, now)?;
            return Ok(Vec::new());
        };
        let plan = plan_catch_up(&self.schedule, since, now, self.policy, self.window);
        let reason = missed_reason(self.policy);
        for fire in &plan.missed {
            insert(store, name, RunStatus::Missed, Trigger::Schedule, *fire, Some(now), Some(reason.clone()))?;
        }
        if let Some((count, last)) = plan.missed_beyond {
            let summary = format!(
                "{reason}; and {count} more fires up to {} not recorded one by one",
                crate::record::format_time(last)
            );
            insert(store, name, RunStatus::Missed, Trigger::Schedule, last, Some(now), Some(summary))?;
        }
        let mut runs = Vec::new();
        for fire in &plan.run {
            let id = insert(store, name, RunStatus::Pending, Trigger::CatchUp, *fire, None, None)?;
            runs.push(PendingRun {
                id,
                job: name.clone(),
                trigger: Trigger::CatchUp,
                attempt: 1,
                scheduled_for: *fire,
                payload: Vec::new(),
            });
        }
        store.set_last_fire(name, plan.last.unwrap_or(since).max(since))?;
        if !plan.missed.is_empty() || !plan.run.is_empty() {
            let missed = plan.missed.len() + plan.missed_beyond.map_or(0, |(n, _)| n);
            tracing::info!(job = %name, missed, catching_up = plan.run.len(), "fires missed while the host was down");
        }
        Ok(runs)
    }
}

fn missed_reason(policy: CatchUp) -> String {
    let policy = match policy {
        CatchUp::None => "none",
        CatchUp::Once => "once",
        CatchUp::All => "all",
    };
    format!("the host was down at this fire (catch_up = \"{policy}\", catch_up_window)")
}

fn insert(
    store: &Store,
    job: &str,
    status: RunStatus,
    trigger: Trigger,
    scheduled_for: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    error: Option<String>,
) -> crate::store::Result<i64> {
    store.insert_run(&NewRun { ended_at, error, ..NewRun::new(job, status, trigger, scheduled_for) })
}
