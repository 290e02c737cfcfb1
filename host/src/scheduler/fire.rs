//! A fire, from due timer to written record: the overlap policy decides
//! (start, skip, queue or replace), then all the fires due together are
//! written in one store round trip before any of them takes effect.

use chrono::{DateTime, Utc};

use super::Scheduler;
use crate::config::Overlap;
use crate::events::{RunEvent, Stage};
use crate::record::{RunStatus, Trigger};
use crate::store::{self, FireRecorded, NewRun, SharedOverlap};

/// How far past a fire its successor must be due for the host to have
/// fallen behind (see `fell_behind`): a loaded host firing a second late
/// still runs each fire.
const BEHIND_SLACK: chrono::Duration = chrono::Duration::seconds(1);

impl Scheduler {
    /// The overlap policy's answer to a fire of `job`.
    pub(super) fn decide(&mut self, job: &str, nominal: DateTime<Utc>) -> Option<Fire> {
        let slot = self.jobs.get_mut(job)?;
        if self.member.is_some() {
            // The store decides, seeing every host's runs.
            let shared = super::cluster::shared_overlap(slot.spec.overlap);
            return Some(Fire { job: job.to_owned(), nominal, action: Action::Start, shared });
        }
        let action = match (slot.busy(), slot.spec.overlap) {
            (false, _) | (true, Overlap::Allow) => Action::Start,
            (true, Overlap::Skip) => Action::Skip("the previous run was still going (overlap = \"skip\")"),
            (true, Overlap::Queue) if slot.queued.is_some() => {
                Action::Skip("a run was already queued behind the running one (overlap = \"queue\")")
            }
            (true, Overlap::Queue) => Action::Queue,
            (true, Overlap::Replace) => Action::Replace,
        };
        Some(Fire { job: job.to_owned(), nominal, action, shared: SharedOverlap::Allow })
    }

    /// Whether `job`'s fire due at `nominal`, found due at `now`, is so
    /// late that its successor is due too (by more than `BEHIND_SLACK`):
    /// the wall clock jumped forward past it, or the host was suspended or
    /// stalled. Then the fires in between follow the job's catch-up policy
    /// (run once, each, or recorded `missed`), rather than all running late
    /// in a burst. One host only: a cluster's fires are each host's timers'.
    pub(super) fn fell_behind(&self, job: &str, nominal: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let Some(schedule) = self.jobs.get(job).and_then(|slot| slot.spec.schedule.as_ref()) else { return false };
        self.member.is_none() && schedule.next_after(nominal).is_some_and(|next| next + BEHIND_SLACK <= now)
    }

    /// After the wall clock was set back, an `@every` job's next fire is
    /// more than one interval away: it is timed anew from `now`, so the
    /// job keeps its cadence in elapsed time (as systemd's monotonic
    /// timers do). Cron expressions keep to the wall clock, and wait for it
    /// to come round to their next fire again. One host only, as above.
    pub(super) fn keep_interval_cadence(&mut self, now: DateTime<Utc>) {
        if self.member.is_some() {
            return;
        }
        let set_back: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, slot)| {
                // `schedule.rs` keeps its kinds private; its text names them.
                let Some(schedule) = slot.spec.schedule.as_ref().filter(|s| s.text().trim().starts_with("@every"))
                else {
                    return false;
                };
                slot.next_fire.zip(schedule.next_after(now)).is_some_and(|(next, from_now)| next > from_now)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for job in set_back {
            tracing::warn!(job = %job, "the wall clock was set back: the interval job's next fire is timed from now");
            self.next_generation += 1;
            self.jobs.get_mut(&job).expect("listed").generation = self.next_generation;
            self.schedule_next(&job, now);
        }
    }

    /// Catches up the jobs that fell behind the clock up to `now`, per
    /// their policies; if the store refuses, once it recovers.
    pub(super) async fn catch_up_behind(&mut self, jobs: std::collections::BTreeSet<String>, now: DateTime<Utc>) {
        tracing::warn!(jobs = ?jobs, "fires came due together (the wall clock jumped forward, or the host stalled): caught up per catch_up");
        if let Err(error) = self.catch_up(now, Some(&jobs), super::recover::Why::FellBehind).await {
            self.store_failed(&error, now);
            for job in &jobs {
                self.backlog.owe_catch_up(job);
            }
            self.arm_store_retry();
        }
    }

    /// Writes the fires' rows (one store round trip), then acts on them.
    /// If the store refuses them, their jobs are caught up once it recovers.
    pub(super) async fn record_fires(&mut self, fires: Vec<Fire>) {
        let now = self.clock.now();
        let rows = fires
            .iter()
            .map(|fire| store::Fire {
                job: fire.job.clone(),
                scheduled_for: fire.nominal,
                skipped: match fire.action {
                    Action::Skip(why) => Some(why.to_owned()),
                    _ => None,
                },
                shared: fire.shared,
            })
            .collect();
        let recorded = match self.store.record_fires(rows, now).await {
            Ok(recorded) => recorded,
            Err(error) => {
                self.store_failed(&error, now);
                for fire in &fires {
                    self.backlog.owe_catch_up(&fire.job);
                }
                self.arm_store_retry();
                return;
            }
        };
        let recorded_at = self.clock.now();
        for (fire, id) in fires.into_iter().zip(recorded) {
            let Some(slot) = self.jobs.get_mut(&fire.job) else { continue };
            let id = match id {
                FireRecorded::Run(id) => id,
                FireRecorded::Paused => {
                    slot.paused = true;
                    continue;
                }
                FireRecorded::Taken => continue,
            };
            slot.paused = false;
            let status = match fire.action {
                Action::Skip(_) => RunStatus::Skipped,
                _ => RunStatus::Pending,
            };
            self.events.emit(|| RunEvent {
                stage: Stage::Recorded,
                status: Some(status),
                run_id: Some(id),
                at: recorded_at,
                ..event(&fire.job, fire.nominal, recorded_at)
            });
            let run = NewRun::pending(&fire.job, Trigger::Schedule, fire.nominal).into_pending(id);
            match fire.action {
                Action::Skip(reason) => tracing::info!(job = %fire.job, run_id = id, reason, "fire skipped"),
                Action::Queue => {
                    slot.queued = Some(run);
                    self.view_changed = true;
                }
                Action::Replace => {
                    for (run_id, running) in self.in_flight.iter().filter(|(_, running)| running.job == fire.job) {
                        tracing::info!(job = %fire.job, run_id, "cancelling the running run (overlap = \"replace\")");
                        running.control.cancel();
                    }
                    self.make_ready(run);
                }
                Action::Start => self.make_ready(run),
            }
        }
    }
}

/// The `Fired` event of `job`'s fire due at `nominal`.
pub(super) fn event(job: &str, nominal: DateTime<Utc>, at: DateTime<Utc>) -> RunEvent {
    RunEvent {
        stage: Stage::Fired,
        job: job.to_owned(),
        run_id: None,
        trigger: Trigger::Schedule,
        attempt: 1,
        scheduled_for: nominal,
        at,
        status: None,
    }
}

pub(super) enum Action {
    Start,
    Skip(&'static str),
    Queue,
    Replace,
}

/// One fire and what the overlap policy made of it.
pub(super) struct Fire {
    job: String,
    nominal: DateTime<Utc>,
    action: Action,
    shared: SharedOverlap,
}
