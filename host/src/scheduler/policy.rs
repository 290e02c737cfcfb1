//! The scheduling rules that need no I/O, as pure functions of their inputs:
//! which missed fires a start catches up, how long a retry waits, and
//! whether it may still start. Tested from tables.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{CatchUp, Retry};
use crate::schedule::Schedule;

/// Missed fires recorded one by one at most; the rest are summed up in one record.
pub const MAX_MISSED_RECORDS: usize = 100;
/// Fires counted at most when looking back over a long downtime.
const MAX_LOOKBACK: usize = 100_000;

/// What a start does with the fires between the last one dealt with and now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatchUpPlan {
    /// Fires to run now, oldest first, with trigger `catch-up`.
    pub run: Vec<DateTime<Utc>>,
    /// Fires to record as `missed`, oldest first (at most `MAX_MISSED_RECORDS`).
    pub missed: Vec<DateTime<Utc>>,
    /// Further missed fires not recorded one by one, and the last of them.
    pub missed_beyond: Option<(usize, DateTime<Utc>)>,
    /// The newest fire looked at: everything up to it is dealt with.
    pub last: Option<DateTime<Utc>>,
}

/// Plans catch-up for the fires of `schedule` in `(since, now]`: those older
/// than `window` are missed; of the rest, `none` misses all, `once` runs the
/// newest and misses the others, `all` runs each in order.
pub fn plan_catch_up(
    schedule: &Schedule,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: CatchUp,
    window: Duration,
) -> CatchUpPlan {
    let fires: Vec<DateTime<Utc>> = std::iter::successors(schedule.next_after(since), |t| schedule.next_after(*t))
        .take_while(|t| *t <= now)
        .take(MAX_LOOKBACK)
        .collect();
    let window_start = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let (outside, inside): (Vec<_>, Vec<_>) = fires.iter().copied().partition(|t| *t < window_start);
    let (run, mut missed) = match (policy, inside.split_last()) {
        (_, None) => (Vec::new(), outside),
        (CatchUp::None, Some(_)) => (Vec::new(), fires.clone()),
        (CatchUp::Once, Some((newest, older))) => (vec![*newest], [outside, older.to_vec()].concat()),
        (CatchUp::All, Some(_)) => (inside, outside),
    };
    let missed_beyond = (missed.len() > MAX_MISSED_RECORDS).then(|| {
        let beyond = missed.split_off(MAX_MISSED_RECORDS);
        (beyond.len(), *beyond.last().expect("split past the end leaves some"))
    });
    CatchUpPlan { run, missed, missed_beyond, last: fires.last().copied() }
}

/// The wait before retrying after failed attempt number `attempt` (1-based):
/// `backoff × 2^(attempt-1)`, capped at `max_backoff`, then "equal jitter" —
/// somewhere in its upper half, by `unit` in `[0, 1)`.
pub fn retry_delay(retry: &Retry, attempt: u32, unit: f64) -> Duration {
    let doubled = retry.backoff.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
    let capped = doubled.min(retry.max_backoff);
    capped.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
}

/// Whether an outcome is retried (if attempts remain): a failure, a
/// timeout or running out of fuel; not a cancel, nor an abandoned run
/// (recovery retries those itself).
pub fn retryable(outcome: &crate::runtime::RunOutcome) -> bool {
    use crate::runtime::RunOutcome;
    matches!(outcome, RunOutcome::Failed { .. } | RunOutcome::TimedOut | RunOutcome::OutOfFuel)
}

/// A retry may start only before the job's next scheduled fire.
pub fn retry_allowed(retry_at: DateTime<Utc>, next_fire: Option<DateTime<Utc>>) -> bool {
    next_fire.is_none_or(|next| retry_at < next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn hourly() -> Schedule {
        Schedule::parse("0 * * * *", chrono_tz::UTC).unwrap()
    }

    const DAY: Duration = Duration::from_secs(86400);

    #[test]
    fn catch_up_modes_within_the_window() {
        // Down from 09:30 to 12:30: the 10:00, 11:00 and 12:00 fires were missed.
        let (since, now) = (at("2026-11-24T09:30:00Z"), at("2026-11-24T12:30:00Z"));
        let fires = [at("2026-11-24T10:00:00Z"), at("2026-11-24T11:00:00Z"), at("2026-11-24T12:00:00Z")];
        let none = plan_catch_up(&hourly(), since, now, CatchUp::None, DAY);
        assert_eq!((none.run, none.missed), (vec![], fires.to_vec()));
        let once = plan_catch_up(&hourly(), since, now, CatchUp::Once, DAY);
        assert_eq!((once.run, once.missed), (vec![fires[2]], fires[..2].to_vec()));
        let all = plan_catch_up(&hourly(), since, now, CatchUp::All, DAY);
        assert_eq!((all.run, all.missed), (fires.to_vec(), vec![]));
        assert_eq!(all.last, Some(fires[2]));
    }

    #[test]
    fn fires_older_than_the_window_are_missed_whatever_the_mode() {
        let (since, now) = (at("2026-11-24T09:30:00Z"), at("2026-11-24T12:30:00Z"));
        let window = Duration::from_secs(90 * 60); // from 11:00
        for mode in [CatchUp::Once, CatchUp::All] {
            let plan = plan_catch_up(&hourly(), since, now, mode, window);
            assert_eq!(plan.missed[0], at("2026-11-24T10:00:00Z"), "{mode:?}");
            assert!(plan.run.contains(&at("2026-11-24T12:00:00Z")));
        }
        let all = plan_catch_up(&hourly(), since, now, CatchUp::All, window);
        assert_eq!(all.run, [at("2026-11-24T11:00:00Z"), at("2026-11-24T12:00:00Z")]);
        // A window too short for any fire: nothing runs.
        let none_inside = plan_catch_up(&hourly(), since, now, CatchUp::All, Duration::from_secs(60));
        assert!(none_inside.run.is_empty());
        assert_eq!(none_inside.missed.len(), 3);
    }

    #[test]
    fn nothing_missed_means_an_empty_plan() {
        let plan = plan_catch_up(&hourly(), at("2026-11-24T10:00:00Z"), at("2026-11-24T10:59:59Z"), CatchUp::All, DAY);
        assert_eq!(plan, CatchUpPlan::default());
    }

    #[test]
    fn long_downtime_records_a_bounded_number_of_misses() {
        let every_second = Schedule::parse("@every 1s", chrono_tz::UTC).unwrap();
        let since = at("2026-11-24T00:00:00Z");
        let plan = plan_catch_up(&every_second, since, at("2026-11-24T01:00:00Z"), CatchUp::None, DAY);
        assert_eq!(plan.missed.len(), MAX_MISSED_RECORDS);
        assert_eq!(plan.missed_beyond, Some((3600 - MAX_MISSED_RECORDS, at("2026-11-24T01:00:00Z"))));
    }

    #[test]
    fn retry_delays_double_with_jitter_and_are_capped() {
        let retry = Retry { attempts: 10, backoff: Duration::from_secs(10), max_backoff: Duration::from_secs(60) };
        let cases = [(1, 10), (2, 20), (3, 40), (4, 60), (9, 60), (40, 60)];
        for (attempt, full) in cases {
            let full = Duration::from_secs(full);
            assert_eq!(retry_delay(&retry, attempt, 0.0), full / 2, "attempt {attempt}, least jitter");
            assert_eq!(retry_delay(&retry, attempt, 1.0), full, "attempt {attempt}, most jitter");
            let middle = retry_delay(&retry, attempt, 0.5);
            assert!(middle > full / 2 && middle < full);
        }
    }

    #[test]
    fn no_retry_once_the_next_fire_has_come() {
        let next = Some(at("2026-11-24T11:00:00Z"));
        assert!(retry_allowed(at("2026-11-24T10:59:59Z"), next));
        assert!(!retry_allowed(at("2026-11-24T11:00:00Z"), next));
        assert!(retry_allowed(at("2030-01-01T00:00:00Z"), None), "triggered-only jobs always retry");
    }
}
