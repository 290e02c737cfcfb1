//! The wall clock jumping while the host runs, in virtual time: the real
//! scheduler, store and sandbox on a paused tokio clock whose wall time
//! the test moves (`Clock::jump`) an hour back or a day forward. No fire
//! runs twice, fires a forward jump skips follow the job's catch-up policy
//! (and are noticed within `clock::RECHECK`, not after the monotonic wait),
//! and `@every` jobs keep their cadence in elapsed time.
//!
//! `faketime.rs` does the same to the real binary under libfaketime.

use std::time::Duration;

use chrono::{DateTime, Utc};
use wasmcron::clock::{Clock, RECHECK};
use wasmcron::record::{RunRecord, RunStatus, Trigger};

use crate::scheduler::{ORIGIN, World, at};

const OK: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

/// (scheduled_for, trigger, status) of each record, oldest first.
fn records(runs: &[RunRecord]) -> Vec<(String, Trigger, RunStatus)> {
    runs.iter().map(|r| (r.scheduled_for.format("%d %H:%M:%S").to_string(), r.trigger, r.status)).collect()
}

fn assert_no_fire_twice(runs: &[RunRecord]) {
    let mut seen = std::collections::BTreeSet::new();
    for run in runs.iter().filter(|r| r.trigger != Trigger::Retry) {
        assert!(
            seen.insert(run.scheduled_for),
            "the fire at {} has two records: {:?}",
            run.scheduled_for,
            records(runs)
        );
    }
}

/// When the host dealt with a record: its start, or for one not run, its end.
fn dealt_with(run: &RunRecord) -> DateTime<Utc> {
    run.started_at.or(run.ended_at).expect("every ended record has a time")
}

#[tokio::test(start_paused = true)]
async fn a_clock_set_back_an_hour_runs_no_fire_twice_nor_after_a_restart() {
    let world = World::new();
    world.job("ten", OK, "schedule = \"*/10 * * * *\"");
    // 00:10 and 00:20 fire; at 00:25 the clock is set back to 23:25; the
    // host waits for the wall clock to reach 00:30 again (65 minutes).
    let clock = Clock::starting_at(at(ORIGIN));
    let jumping = clock.clone();
    world
        .drive_on(clock, minutes(25 + 66), world.store().await, Vec::new(), async |_| {
            tokio::time::sleep(minutes(25)).await;
            jumping.jump(-chrono::Duration::hours(1));
        })
        .await;
    let fired = |times: &[&str]| -> Vec<(String, Trigger, RunStatus)> {
        times.iter().map(|t| (format!("24 {t}"), Trigger::Schedule, RunStatus::Succeeded)).collect()
    };
    assert_eq!(records(&world.runs("ten").await), fired(&["00:10:00", "00:20:00", "00:30:00"]));

    // A restart with the clock still behind the last fire: the fires
    // between the clock and it were dealt with, and are not run again.
    let clock = Clock::starting_at(at("2026-11-23T23:35:00Z"));
    world.drive_on(clock, minutes(70), world.store().await, Vec::new(), async |_| {}).await;
    let runs = world.runs("ten").await;
    assert_no_fire_twice(&runs);
    assert_eq!(records(&runs), fired(&["00:10:00", "00:20:00", "00:30:00", "00:40:00"]));
}

#[tokio::test(start_paused = true)]
async fn a_clock_set_forward_a_day_catches_up_per_policy_at_once() {
    let world = World::new();
    for policy in ["none", "once", "all"] {
        world.job(policy, OK, &format!("schedule = \"0 * * * *\"\ncatch_up = \"{policy}\"\ncatch_up_window = \"2d\""));
    }
    // At 00:30, sleeping toward 01:00, the clock jumps to 00:30 the next
    // day: 24 hourly fires (01:00 … 00:00) were skipped. 35 minutes later
    // the 01:00 fire comes on time.
    let clock = Clock::starting_at(at(ORIGIN));
    let jumping = clock.clone();
    let jumped_at = at("2026-11-25T00:30:00Z");
    world
        .drive_on(clock, minutes(30 + 35), world.store().await, Vec::new(), async |_| {
            tokio::time::sleep(minutes(30)).await;
            jumping.jump(chrono::Duration::days(1));
        })
        .await;
    let skipped: Vec<DateTime<Utc>> = (1..=24).map(|h| at(ORIGIN) + chrono::Duration::hours(h)).collect();
    for policy in ["none", "once", "all"] {
        let runs = world.runs(policy).await;
        assert_no_fire_twice(&runs);
        let (caught, last) = runs.split_at(runs.len() - 1);
        let last = &last[0];
        assert_eq!(
            (last.scheduled_for, last.trigger, last.status),
            (at("2026-11-25T01:00:00Z"), Trigger::Schedule, RunStatus::Succeeded),
            "{policy}: the cadence goes on after the jump: {:?}",
            records(&runs)
        );
        assert_eq!(
            caught.iter().map(|r| r.scheduled_for).collect::<Vec<_>>(),
            skipped,
            "{policy}: {:?}",
            records(&runs)
        );
        let expected = |n: usize| -> (Trigger, RunStatus) {
            match (policy, n) {
                ("all", _) | ("once", 23) => (Trigger::CatchUp, RunStatus::Succeeded),
                _ => (Trigger::Schedule, RunStatus::Missed),
            }
        };
        for (n, run) in caught.iter().enumerate() {
            assert_eq!((run.trigger, run.status), expected(n), "{policy}, fire {n}: {:?}", records(&runs));
            // Noticed within RECHECK of the jump, not when the monotonic
            // sleep toward 01:00 would have ended (30 minutes on).
            let noticed = dealt_with(run) - jumped_at;
            assert!(
                noticed <= chrono::Duration::from_std(RECHECK).unwrap() + chrono::Duration::seconds(5),
                "{policy}: fire {n} dealt with {noticed} after the jump: {run:?}"
            );
            if run.status == RunStatus::Missed {
                assert!(run.error.as_deref().unwrap_or("").contains("clock jumped"), "{run:?}");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_interval_job_keeps_its_cadence_when_the_clock_jumps_back_or_forward() {
    let world = World::new();
    world.job("tick", OK, "schedule = \"@every 60s\"\ncatch_up = \"once\"\ncatch_up_window = \"2d\"");
    // Ticks at 00:01 … 00:10; at 00:10:30 the clock goes back an hour.
    let clock = Clock::starting_at(at(ORIGIN));
    let jumping = clock.clone();
    world
        .drive_on(clock, minutes(20) + Duration::from_secs(30), world.store().await, Vec::new(), async |_| {
            tokio::time::sleep(minutes(10) + Duration::from_secs(30)).await;
            jumping.jump(-chrono::Duration::hours(1));
        })
        .await;
    let runs = world.runs("tick").await;
    let times: Vec<DateTime<Utc>> = runs.iter().map(|r| r.scheduled_for).collect();
    let mut expected: Vec<DateTime<Utc>> = (1..=10).map(|m| at(ORIGIN) + chrono::Duration::minutes(m)).collect();
    // Then a tick each minute of elapsed time, on the set-back clock: 23:11 … 23:20.
    expected.extend((11..=20).map(|m| at("2026-11-23T23:00:00Z") + chrono::Duration::minutes(m)));
    assert_eq!(times, expected, "{:?}", records(&runs));
    assert!(runs.iter().all(|r| (r.trigger, r.status) == (Trigger::Schedule, RunStatus::Succeeded)));

    // Forward a day: the skipped ticks follow catch_up = "once" (the
    // newest runs, the rest are missed), then a tick each minute again.
    let world = World::new();
    world.job("tick", OK, "schedule = \"@every 60s\"\ncatch_up = \"once\"\ncatch_up_window = \"2d\"");
    let clock = Clock::starting_at(at(ORIGIN));
    let jumping = clock.clone();
    world
        .drive_on(clock, minutes(5) + Duration::from_secs(30), world.store().await, Vec::new(), async |_| {
            tokio::time::sleep(Duration::from_secs(150)).await; // 00:02:30: ticks at 00:01 and 00:02
            jumping.jump(chrono::Duration::days(1));
        })
        .await;
    let runs = world.runs("tick").await;
    assert_no_fire_twice(&runs);
    let scheduled: Vec<&RunRecord> = runs.iter().filter(|r| r.status == RunStatus::Succeeded).collect();
    let caught_up: Vec<&RunRecord> = scheduled.iter().copied().filter(|r| r.trigger == Trigger::CatchUp).collect();
    assert_eq!(caught_up.len(), 1, "{:?}", records(&runs));
    assert_eq!(caught_up[0].scheduled_for, at("2026-11-25T00:02:00Z"));
    let after: Vec<DateTime<Utc>> =
        scheduled.iter().filter(|r| r.scheduled_for > caught_up[0].scheduled_for).map(|r| r.scheduled_for).collect();
    let minute = |m| at("2026-11-25T00:00:00Z") + chrono::Duration::minutes(m);
    assert_eq!(after, [minute(3), minute(4), minute(5)], "{:?}", records(&runs));
    let missed: usize = runs
        .iter()
        .filter(|r| r.status == RunStatus::Missed)
        // One fire each, but the summing-up record: "…; and N more fires up to …", N with its own.
        .map(|r| {
            let more = r.error.as_deref().and_then(|e| e.split("; and ").nth(1)).and_then(|e| e.split(' ').next());
            more.map_or(1, |n| n.parse::<usize>().unwrap())
        })
        .sum();
    assert_eq!(missed, 24 * 60 - 1, "every skipped tick but the newest is accounted missed: {:?}", records(&runs));
}
