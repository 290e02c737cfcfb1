//! The command line as DESIGN.md specifies it: `once` and its record,
//! `next`, exit codes, and the run kept in the state database.

use crate::support::{Sandbox, describe, text, wasmcron};

#[test]
fn once_json_prints_the_whole_record_and_stores_it() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("hello.wat");
    let (record, code) = sandbox.once_json("hello");
    assert_eq!(code, 0);
    let fields: Vec<&str> = record.as_object().unwrap().keys().map(String::as_str).collect();
    for field in [
        "id",
        "job",
        "status",
        "exit_code",
        "error",
        "attempt",
        "trigger",
        "scheduled_for",
        "started_at",
        "ended_at",
        "fuel_used",
        "module_sha256",
        "stdout",
        "stderr",
    ] {
        assert!(fields.contains(&field), "{field} missing from {record}");
    }
    assert_eq!(record["job"], "hello");
    assert_eq!(record["trigger"], "manual");
    assert_eq!(record["attempt"], 1);
    for time in ["scheduled_for", "started_at", "ended_at"] {
        chrono::DateTime::parse_from_rfc3339(record[time].as_str().unwrap()).unwrap();
    }

    // The run is in the SQLite file in the state folder, readable by anyone.
    let db = rusqlite::Connection::open(sandbox.state().join("wasmcron.db")).unwrap();
    let (status, stdout): (String, Vec<u8>) = db
        .query_row("SELECT status, stdout FROM runs WHERE id = ?1", [record["id"].as_i64().unwrap()], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap();
    assert_eq!((status.as_str(), stdout.as_slice()), ("succeeded", b"hello from wasm\n".as_slice()));

    // Run ids keep counting across invocations.
    let (second, _) = sandbox.once_json("hello");
    assert_eq!(second["id"].as_i64(), Some(record["id"].as_i64().unwrap() + 1));
}

#[test]
fn once_passes_output_through_and_reports_failure_on_stderr() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("hello.wat");
    sandbox.add_fixture("exit3.wat");
    let output = sandbox.wasmcron(&["once", "hello"]).output().unwrap();
    assert_eq!((output.status.code(), text(&output.stdout).as_str()), (Some(0), "hello from wasm\n"));
    let output = sandbox.wasmcron(&["once", "exit3"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("of exit3 failed: exited with code 3"), "{}", describe(&output));
}

#[test]
fn once_on_an_unknown_or_broken_job_is_a_configuration_error() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("hello.wat");
    sandbox.declare("broken", "schedule = \"61 * * * *\"");
    let output = sandbox.wasmcron(&["once", "nothere"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("no job named \"nothere\""), "{}", describe(&output));
    let output = sandbox.wasmcron(&["once", "broken"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("broken.toml: schedule \"61 * * * *\": minute 61 is out of range 0-59"));
    let output = sandbox.wasmcron(&["once"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "usage error");
}

#[test]
fn global_options_come_from_the_environment_too() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("hello.wat");
    let output = wasmcron()
        .args(["once", "hello", "--json"])
        .env("WASMCRON_JOBS", sandbox.jobs())
        .env("WASMCRON_STATE", sandbox.state())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(sandbox.state().join("wasmcron.db").exists());
}

#[test]
fn store_names_the_database_by_url_and_bad_urls_say_what_to_write() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("hello.wat");
    let elsewhere = sandbox.path("elsewhere/history.db");
    let url = format!("sqlite:{}", elsewhere.display());
    let output = sandbox.wasmcron(&["--store", &url, "once", "hello"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(elsewhere.is_file() && !sandbox.state().join("wasmcron.db").exists(), "the run went to {url}");
    let output = sandbox.wasmcron(&["runs", "--json"]).env("WASMCRON_STORE", &url).output().unwrap();
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((runs.len(), runs[0]["job"].as_str()), (1, Some("hello")), "{}", describe(&output));

    for (bad, says) in
        [("postgres://w@db/x?port=notaport", "not a PostgreSQL URL"), ("runs.db", "not a store URL; write sqlite:PATH")]
    {
        let output = sandbox.wasmcron(&["--store", bad, "runs"]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        assert!(text(&output.stderr).contains(&format!("--store {bad:?}: ")), "{}", describe(&output));
        assert!(text(&output.stderr).contains(says), "{}", describe(&output));
    }
    // A server that is not there: named, with the cause and what to check.
    let nobody = "postgres://wasmcron:s3cret@127.0.0.1:1/wasmcron";
    let output = sandbox.wasmcron(&["--store", nobody, "runs"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("store postgres://wasmcron@127.0.0.1:1/wasmcron: cannot connect to the database server: "),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused") && !stderr.contains("s3cret"), "{stderr}");
    let output = sandbox.wasmcron(&["--store", "sqlite:/nowhere/none.db", "runs"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("no state database at /nowhere/none.db"), "{}", describe(&output));
}

#[test]
fn next_prints_fires_with_the_zone_offset() {
    let output = wasmcron()
        .args(["next", "30 2 * * *", "--tz", "America/New_York", "--from", "2026-03-07T12:00:00Z", "-n", "3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        text(&output.stdout),
        "2026-03-08T03:00:00-04:00\n2026-03-09T02:30:00-04:00\n2026-03-10T02:30:00-04:00\n"
    );

    let output = wasmcron().args(["next", "@every 90s", "--from", "2026-01-01T00:00:00Z", "-n", "2"]).output().unwrap();
    assert_eq!(text(&output.stdout), "2026-01-01T00:01:30+00:00\n2026-01-01T00:03:00+00:00\n");
}

#[test]
fn next_rejects_bad_input_with_the_fix() {
    for (args, expected) in [
        (vec!["next", "61 * * * *"], "minute 61 is out of range 0-59"),
        (vec!["next", "* * * * *", "--tz", "Nowhere/City"], "--tz \"Nowhere/City\" is not an IANA time zone"),
        (vec!["next", "* * * * *", "--from", "yesterday"], "--from \"yesterday\" is not an RFC 3339 time"),
    ] {
        let output = wasmcron().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(text(&output.stderr).contains(expected), "{args:?}: {}", describe(&output));
    }
}

#[test]
fn bench_measures_a_job_without_recording_runs() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("hello.wat");
    sandbox.add_fixture("exit3.wat");
    let output = sandbox.wasmcron(&["bench", "--job", "hello", "-n", "3", "--json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((report["runs"].as_u64(), report["failures"].as_u64()), (Some(3), Some(0)), "{report}");
    assert!(report["fuel_used"].as_u64().unwrap() > 0, "fuel is counted even for an unmetered job: {report}");
    assert_eq!(report["output_bytes"], 16, "\"hello from wasm\\n\"");
    let (min, max) = (report["run_ms"]["min"].as_f64().unwrap(), report["run_ms"]["max"].as_f64().unwrap());
    assert!(0.0 < min && min <= max, "{report}");
    assert!(!sandbox.state().join("wasmcron.db").exists(), "bench records nothing");

    let output = sandbox.wasmcron(&["bench", "--job", "exit3", "-n", "2"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "failing runs fail the bench: {}", describe(&output));
    assert!(text(&output.stdout).contains("exit3: 2 runs, 2 failed"), "{}", describe(&output));
}
