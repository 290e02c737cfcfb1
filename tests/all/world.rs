//! The job world end to end, with the `tidy` example plugin (a Rust
//! component built with the SDK): key-value state private to each job and
//! kept across a host restart, logging into the run record, and `enqueue`
//! starting a follow-up that records its parent — or returning an error,
//! not trapping, for a job the host does not know.

use std::time::Duration;

use wasmcron::record::RunStatus;

use crate::daemon::Host;
use crate::support::{Sandbox, all_runs, guests, text, toml_path, wait_for};

#[test]
fn key_value_state_is_private_and_survives_a_restart_and_enqueue_records_the_parent() {
    let sandbox = Sandbox::new();
    let tidy = toml_path(&guests().tidy);
    sandbox.add_fixture("hello.wat");
    sandbox.declare(
        "tidy-a",
        &format!("module = {tidy}\nschedule = \"@every 1s\"\nenv = {{ BACKLOG = \"30\", BATCH = \"10\", FOLLOW_UP = \"hello\" }}"),
    );
    sandbox.declare("tidy-b", &format!("module = {tidy}\nenv = {{ BACKLOG = \"100\", BATCH = \"7\" }}"));
    let succeeded = |job: &str| -> Vec<String> {
        all_runs(&sandbox)
            .iter()
            .filter(|r| r.job == job && r.status == RunStatus::Succeeded)
            .map(|r| text(&r.stdout))
            .collect()
    };

    let host = Host::start(&sandbox, &[]);
    wait_for("two runs of tidy-a", Duration::from_secs(20), || succeeded("tidy-a").len() >= 2);
    host.stop();
    assert_eq!(succeeded("tidy-a")[..2], ["tidy-a: items 0..10 of 30\n", "tidy-a: items 10..20 of 30\n"]);

    // Another job with the same module has its own keys.
    for expected in ["tidy-b: items 0..7 of 100\n", "tidy-b: items 7..14 of 100\n"] {
        let output = sandbox.wasmcron(&["once", "tidy-b"]).output().unwrap();
        assert_eq!(text(&output.stdout), expected);
    }

    // After a restart tidy-a carries on from its stored cursor, finishes,
    // and enqueues hello, which runs with tidy-a's run as its parent.
    let host = Host::start(&sandbox, &[]);
    wait_for("the follow-up run", Duration::from_secs(20), || !succeeded("hello").is_empty());
    host.stop();
    let runs = all_runs(&sandbox);
    let last =
        runs.iter().find(|r| r.job == "tidy-a" && text(&r.stdout).contains("items 20..30")).expect("a run from 20");
    let follow_up = runs.iter().find(|r| r.job == "hello").unwrap();
    assert_eq!(follow_up.parent_run, Some(last.id));
    assert_eq!(follow_up.status, RunStatus::Succeeded);
    assert!(
        text(&last.stderr).contains("[info] backlog done; follow-up enqueued job=\"hello\""),
        "{}",
        text(&last.stderr)
    );
    assert!(
        text(&runs[0].stderr).contains("[info] tidied a batch from=\"0\" to=\"10\""),
        "logs land in the run record"
    );
}

#[test]
fn enqueue_of_an_unknown_job_is_an_error_for_the_guest_not_a_trap() {
    let sandbox = Sandbox::new();
    let tidy = toml_path(&guests().tidy);
    sandbox.declare("lost", &format!("module = {tidy}\nenv = {{ BACKLOG = \"5\", FOLLOW_UP = \"nowhere\" }}"));
    let output = sandbox.wasmcron(&["once", "lost", "--json"]).output().unwrap();
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"], "no job named \"nowhere\" is declared", "the guest's own error, no trap");
}

#[test]
fn sandbox_limits_apply_to_job_world_guests_too() {
    let sandbox = Sandbox::new();
    let tidy = toml_path(&guests().tidy);
    sandbox.declare("starved", &format!("module = {tidy}\n[limits]\nfuel = 1000"));
    sandbox.declare("quiet", &format!("module = {tidy}\nenv = {{ BACKLOG = \"10\" }}\n[limits]\noutput = \"16B\""));
    let (record, code) = sandbox.once_json("starved");
    assert_eq!((record["status"].as_str(), code), (Some("out_of_fuel"), 1), "{record}");
    assert_eq!(record["fuel_used"], 1000);
    let (record, _) = sandbox.once_json("quiet");
    assert_eq!(record["status"], "succeeded", "{record}");
    assert!(record["output_dropped"].as_u64().unwrap() > 0, "{record}");
    assert!(record["stdout"].as_str().unwrap().contains("[wasmcron: output truncated"), "{record}");
}
