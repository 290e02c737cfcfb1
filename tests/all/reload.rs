//! Hot reload with the real binary: modules and declarations change under
//! a running host, which follows without a restart, keeps runs in flight
//! on the version they started with, and keeps the old version when a new
//! one is broken. Also: a restart with a warm compile cache compiles nothing.

use std::time::{Duration, Instant};

use wasmcron::record::RunStatus;
use wasmcron::store::JobState;

use crate::daemon::Host;
use crate::support::{Sandbox, all_runs, describe, text, versioned, wait_for, with_store};

fn state(sandbox: &Sandbox, job: &str) -> JobState {
    if !sandbox.state().join("wasmcron.db").exists() {
        return JobState::default();
    }
    let mut states = with_store(sandbox, async |store| store.job_states().await.unwrap());
    states.remove(job).unwrap_or_default()
}

/// Replaces a file the way a build does: write a temporary file, rename it over.
fn replace(path: &std::path::Path, contents: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn sha_of(contents: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(contents.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_new_module_takes_over_while_the_run_in_flight_ends_on_the_old_one() {
    let sandbox = Sandbox::new();
    // The module lives outside jobs.d, as a build's output under target/ does.
    std::fs::create_dir_all(sandbox.path("target/release")).unwrap();
    let module = sandbox.path("target/release/ver.wat");
    let (v1, v2) = (versioned("v1", 1500), versioned("v2", 0));
    std::fs::write(&module, &v1).unwrap();
    sandbox.declare("ver", "module = \"../target/release/ver.wat\"\nschedule = \"@every 1s\"\noverlap = \"allow\"");
    let host = Host::start(&sandbox, &[]);
    wait_for("a v1 run in flight", Duration::from_secs(20), || {
        all_runs(&sandbox).iter().any(|r| r.status == RunStatus::Running)
    });
    let in_flight = all_runs(&sandbox).into_iter().find(|r| r.status == RunStatus::Running).unwrap().id;
    replace(&module, &v2);
    let swapped = Instant::now();
    wait_for("v2 in service", Duration::from_secs(10), || state(&sandbox, "ver").module_sha256 == Some(sha_of(&v2)));
    let ready_after = swapped.elapsed();
    wait_for("a v2 run", Duration::from_secs(10), || {
        all_runs(&sandbox).iter().any(|r| r.stdout == b"v2 start\nv2 end\n")
    });
    wait_for("the v1 run to end", Duration::from_secs(10), || {
        all_runs(&sandbox).iter().any(|r| r.id == in_flight && r.status == RunStatus::Succeeded)
    });
    host.stop();

    let all = all_runs(&sandbox);
    let old = all.iter().find(|r| r.id == in_flight).unwrap();
    assert_eq!(text(&old.stdout), "v1 start\nv1 end\n", "the run in flight finished on v1");
    assert_eq!(old.module_sha256.as_deref(), Some(sha_of(&v1).as_str()));
    let first_v2 = all.iter().position(|r| r.stdout.starts_with(b"v2")).unwrap();
    assert!(
        all[first_v2..].iter().filter(|r| r.status == RunStatus::Succeeded).all(|r| r.stdout.starts_with(b"v2")),
        "every run after the swap is v2"
    );
    assert!(ready_after < Duration::from_secs(5), "reload took {ready_after:?}");
}

#[test]
fn a_broken_module_keeps_the_old_version_and_a_fixed_one_recovers() {
    let sandbox = Sandbox::new();
    let module = sandbox.jobs().join("ver.wat");
    std::fs::write(&module, versioned("good", 0)).unwrap();
    sandbox.declare("ver", "schedule = \"@every 1s\"");
    let host = Host::start(&sandbox, &[]);
    wait_for("a good run", Duration::from_secs(20), || {
        all_runs(&sandbox).iter().any(|r| r.status == RunStatus::Succeeded)
    });

    replace(&module, "(module (func $broken");
    wait_for("the load error in the job state", Duration::from_secs(10), || {
        state(&sandbox, "ver").load_error.is_some()
    });
    let error = state(&sandbox, "ver").load_error.unwrap();
    assert!(error.contains("ver.toml: module") && error.contains("is not WebAssembly"), "{error}");
    let output = sandbox.wasmcron(&["jobs"]).output().unwrap();
    assert!(text(&output.stdout).contains("LOAD ERROR"), "{}", describe(&output));
    assert!(text(&output.stdout).contains("keeps the version it has in service"), "{}", describe(&output));
    let before = all_runs(&sandbox).len();
    wait_for("more runs on the old version", Duration::from_secs(10), || all_runs(&sandbox).len() >= before + 2);
    assert!(
        all_runs(&sandbox).iter().all(|r| r.status != RunStatus::Succeeded || r.stdout == b"good start\ngood end\n")
    );

    replace(&module, &versioned("fixed", 0));
    wait_for("a fixed run", Duration::from_secs(10), || {
        all_runs(&sandbox).iter().any(|r| r.stdout.starts_with(b"fixed"))
    });
    assert_eq!(state(&sandbox, "ver").load_error, None, "a good load clears the error");
    let log = host.stop();
    assert!(log.contains("keeping_previous_version=true"), "{log}");
}

#[test]
fn editing_a_schedule_fires_nothing_extra_and_never_into_the_past() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("edit.wat"), versioned("x", 0)).unwrap();
    sandbox.declare("edit", "schedule = \"0 0 1 1 *\"");
    let host = Host::start(&sandbox, &[]);
    wait_for("the host to load the job", Duration::from_secs(20), || state(&sandbox, "edit").loaded_at.is_some());
    let first_load = state(&sandbox, "edit").loaded_at;

    sandbox.declare("edit", "schedule = \"0 0 2 1 *\"\ntimezone = \"Europe/London\"");
    wait_for("the edit to load", Duration::from_secs(10), || state(&sandbox, "edit").loaded_at != first_load);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(all_runs(&sandbox).is_empty(), "editing a yearly schedule fired the job");

    let edited_at = chrono::Utc::now();
    sandbox.declare("edit", "schedule = \"@every 2s\"");
    wait_for("two runs on the new schedule", Duration::from_secs(15), || all_runs(&sandbox).len() >= 2);
    host.stop();
    for run in all_runs(&sandbox) {
        assert!(
            run.scheduled_for > edited_at - chrono::Duration::milliseconds(100),
            "fire {} is before the edit",
            run.scheduled_for
        );
        assert_eq!(run.scheduled_for.timestamp() % 2, 0, "on the new schedule");
    }
}

#[test]
fn deleting_a_declaration_stops_its_fires_and_a_rename_moves_them() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("gone.wat"), versioned("x", 0)).unwrap();
    sandbox.declare("gone", "schedule = \"@every 1s\"");
    sandbox.add_fixture("hello.wat");
    sandbox.declare("hello", "schedule = \"@every 1s\"");
    let host = Host::start(&sandbox, &[]);
    let count = |job: &str| all_runs(&sandbox).iter().filter(|r| r.job == job).count();
    wait_for("runs of both", Duration::from_secs(20), || count("gone") >= 2 && count("hello") >= 1);
    std::fs::remove_file(sandbox.jobs().join("gone.toml")).unwrap();
    std::fs::remove_file(sandbox.jobs().join("gone.wat")).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let after_removal = count("gone");
    let hello_before = count("hello");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(count("gone"), after_removal, "the removed job fired again");
    assert!(count("hello") >= hello_before + 2, "the other job kept firing");

    // A rename is a removal plus an addition.
    std::fs::rename(sandbox.jobs().join("hello.toml"), sandbox.jobs().join("greet.toml")).unwrap();
    sandbox.declare("greet", "module = \"hello.wat\"\nschedule = \"@every 1s\"");
    wait_for("runs under the new name", Duration::from_secs(10), || count("greet") >= 2);
    let hello_after = count("hello");
    std::thread::sleep(Duration::from_millis(1500));
    let log = host.stop();
    assert_eq!(count("hello"), hello_after, "the old name fired after the rename:\n{log}");
    assert!(log.contains("job removed"), "{log}");
}

#[test]
fn two_hundred_rapid_writes_leave_the_host_healthy_on_the_last_version() {
    let sandbox = Sandbox::new();
    let module = sandbox.jobs().join("churn.wat");
    std::fs::write(&module, versioned("v000", 0)).unwrap();
    sandbox.declare("churn", "schedule = \"@every 1s\"");
    let host = Host::start(&sandbox, &[]);
    wait_for("the host to load the job", Duration::from_secs(20), || state(&sandbox, "churn").loaded_at.is_some());
    // In place, truncating each time, as an editor or a careless build would.
    for version in 1..=200 {
        std::fs::write(&module, versioned(&format!("v{version:03}"), 0)).unwrap();
    }
    let last = versioned("v200", 0);
    wait_for("the last version in service", Duration::from_secs(15), || {
        state(&sandbox, "churn").module_sha256 == Some(sha_of(&last))
    });
    wait_for("a run of the last version", Duration::from_secs(10), || {
        all_runs(&sandbox).iter().any(|r| r.stdout.starts_with(b"v200 start"))
    });
    let log = host.stop();
    let reloads = log.matches("job loaded").count();
    assert!(reloads < 50, "200 writes made {reloads} reloads: bursts should coalesce");
}

#[test]
fn a_restart_with_a_warm_cache_compiles_nothing() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("hello.wat");
    std::fs::write(sandbox.jobs().join("other.wat"), versioned("other", 0)).unwrap();
    let started = |log: &str| -> serde_json::Value {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["message"] == "wasmcron host started")
            .unwrap_or_else(|| panic!("no start line in:\n{log}"))
    };
    let cold = Host::start(&sandbox, &["--log-format", "json"]);
    wait_for("the host to load", Duration::from_secs(20), || state(&sandbox, "other").loaded_at.is_some());
    let cold = started(&cold.stop());
    assert_eq!((cold["compiled"].as_u64(), cold["cached"].as_u64()), (Some(2), Some(0)), "{cold}");

    let warm = Host::start(&sandbox, &["--log-format", "json"]);
    std::thread::sleep(Duration::from_millis(500));
    let warm = started(&warm.stop());
    assert_eq!((warm["compiled"].as_u64(), warm["cached"].as_u64()), (Some(0), Some(2)), "{warm}");

    // A damaged entry is not trusted: it is compiled again.
    for entry in std::fs::read_dir(sandbox.state().join("cache")).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not compiled code").unwrap();
    }
    let damaged = Host::start(&sandbox, &["--log-format", "json"]);
    std::thread::sleep(Duration::from_millis(500));
    let damaged = started(&damaged.stop());
    assert_eq!((damaged["compiled"].as_u64(), damaged["cached"].as_u64()), (Some(2), Some(0)), "{damaged}");
}
