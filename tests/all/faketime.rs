//! The wall clock jumping under the real binary: `wasmcron run` under
//! libfaketime (Debian's `faketime`), its fake time read from a file the
//! test rewrites (`FAKETIME_TIMESTAMP_FILE`, `FAKETIME_NO_CACHE`), tokio's
//! monotonic clock left real (`FAKETIME_DONT_FAKE_MONOTONIC`). An hour
//! back, then a day forward: no fire twice, the skipped fires per policy,
//! the interval job ticking on. `clockjump.rs` covers the same in virtual time.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use wasmcron::record::{RunRecord, RunStatus, Trigger};

use crate::daemon::Host;
use crate::support::{Sandbox, all_runs, fixture, text, wait_for};

/// Where Debian put libfaketime (installed by `.ci/install-toolchains`).
fn libfaketime() -> PathBuf {
    crate::support::toolchains();
    let listing = std::process::Command::new("dpkg").args(["-L", "libfaketime"]).output().unwrap();
    let found = text(&listing.stdout).lines().find(|line| line.ends_with("/libfaketime.so.1")).map(PathBuf::from);
    found.expect("libfaketime.so.1 in `dpkg -L libfaketime` (apt-get install faketime)")
}

fn runs_of<'a>(runs: &'a [RunRecord], job: &str) -> Vec<&'a RunRecord> {
    runs.iter().filter(|r| r.job == job).collect()
}

fn assert_no_fire_twice(runs: &[&RunRecord]) {
    let mut seen = std::collections::BTreeSet::new();
    for run in runs {
        assert!(seen.insert(run.scheduled_for), "the fire at {} has two records", run.scheduled_for);
    }
}

/// Fires accounted for by `missed` records: one each, but the summing-up
/// one ("…; and N more fires up to …") counts N.
fn missed_fires(runs: &[&RunRecord]) -> i64 {
    let count = |r: &&&RunRecord| {
        let more = r.error.as_deref().and_then(|e| e.split("; and ").nth(1)).and_then(|e| e.split(' ').next());
        more.map_or(1, |n| n.parse::<i64>().unwrap())
    };
    runs.iter().filter(|r| r.status == RunStatus::Missed).map(|r| count(&r)).sum()
}

#[test]
fn the_real_host_under_a_jumping_clock_runs_no_fire_twice_and_catches_up_per_policy() {
    let library = libfaketime();
    let sandbox = Sandbox::new();
    sandbox.add_fixture("hello.wat");
    sandbox.declare("hello", "schedule = \"* * * * * *\"\ncatch_up = \"once\"\ncatch_up_window = \"2d\"");
    std::fs::copy(fixture("hello.wat"), sandbox.jobs().join("tick.wat")).unwrap();
    sandbox.declare("tick", "module = \"tick.wat\"\nschedule = \"@every 2s\"\ncatch_up = \"none\"");
    let offset = sandbox.path("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let host = Host::start_with(&sandbox, &[], |mut command, _| {
        command
            .env("LD_PRELOAD", &library)
            .env("FAKETIME_TIMESTAMP_FILE", &offset)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        command
    });
    wait_for("three fires on the true clock", Duration::from_secs(30), || {
        runs_of(&all_runs(&sandbox), "hello").len() >= 3
    });

    // An hour back: the cron job waits for the clock to come round again;
    // the interval job ticks on, on the set-back clock.
    std::fs::write(&offset, "-3600\n").unwrap();
    let set_back = Utc::now();
    std::thread::sleep(Duration::from_secs(6));
    let runs = all_runs(&sandbox);
    let before_back = runs_of(&runs, "hello").iter().filter(|r| r.scheduled_for <= set_back).count();
    let after_back: Vec<_> = runs_of(&runs, "hello").into_iter().filter(|r| r.scheduled_for > set_back).collect();
    assert!(after_back.len() <= 1, "the cron job fired while its clock was behind: {after_back:?}");
    let behind = |r: &&&RunRecord| r.scheduled_for < set_back - chrono::Duration::minutes(50);
    let ticks_behind = runs_of(&runs, "tick").iter().filter(behind).count();
    assert!(ticks_behind >= 2, "the interval job kept its cadence on the set-back clock: {:?}", runs_of(&runs, "tick"));

    // A day forward (of the true time): one catch-up run, the rest missed.
    std::fs::write(&offset, "+86400\n").unwrap();
    let ahead = Utc::now() + chrono::Duration::hours(23);
    wait_for("the catch-up, then two fires on the day-ahead clock", Duration::from_secs(60), || {
        let runs = all_runs(&sandbox);
        let hello = runs_of(&runs, "hello");
        hello.iter().any(|r| r.trigger == Trigger::CatchUp && r.status == RunStatus::Succeeded)
            && hello.iter().filter(|r| r.trigger == Trigger::Schedule && r.scheduled_for > ahead).count() >= 2
            && runs_of(&runs, "tick").iter().any(|r| r.status == RunStatus::Succeeded && r.scheduled_for > ahead)
    });
    host.stop();

    let runs = all_runs(&sandbox);
    let hello = runs_of(&runs, "hello");
    assert_no_fire_twice(&hello);
    assert!(before_back >= 3);
    let caught: Vec<_> = hello.iter().filter(|r| r.trigger == Trigger::CatchUp).collect();
    assert_eq!(caught.len(), 1, "catch_up = \"once\": one run for the skipped day");
    // Every whole second from the last fire before the jump forward to
    // the caught-up one is accounted: missed, but for the caught-up one.
    let last_before: DateTime<Utc> = hello
        .iter()
        .filter(|r| r.scheduled_for < ahead && r.status == RunStatus::Succeeded)
        .map(|r| r.scheduled_for)
        .max()
        .unwrap();
    let skipped = (caught[0].scheduled_for - last_before).num_seconds();
    assert!(skipped > 86_000, "{skipped}");
    assert_eq!(missed_fires(&hello) + 1, skipped, "each fire the jump skipped is the catch-up's or missed");
    // The interval job (catch_up = "none"): its skipped ticks are missed, none run late.
    let tick = runs_of(&runs, "tick");
    assert_no_fire_twice(&tick);
    assert!(tick.iter().all(|r| r.trigger == Trigger::Schedule), "{tick:?}");
    assert!(missed_fires(&tick) > 40_000, "the day's ticks are missed: {}", missed_fires(&tick));
    assert!(runs.iter().all(|r| !matches!(r.status, RunStatus::Running | RunStatus::Pending)));
}
