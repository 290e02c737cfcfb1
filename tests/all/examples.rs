//! The bundled `jobs.d` and the example plugins, one or more per language
//! (Rust, C, Zig, AssemblyScript, Python, JavaScript, Go): everything
//! checks, and every bundled job runs to its expected result (those that
//! reach other systems, against the test's own servers, in `reaching`).

use crate::support::{describe, guests, repo_root, text, wasmcron};

fn bundled(args: &[&str], state: &std::path::Path) -> std::process::Output {
    guests(); // builds the plugins the declarations point at
    wasmcron().args(args).arg("--jobs").arg(repo_root().join("jobs.d")).arg("--state").arg(state).output().unwrap()
}

#[test]
fn bundled_jobs_pass_check() {
    let state = tempfile::tempdir().unwrap();
    let output = bundled(&["check"], state.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let jobs = [
        "alert",
        "as-check",
        "c-report",
        "go-logs",
        "heartbeat",
        "js-cache",
        "js-followup",
        "py-prune",
        "py-rest",
        "report",
        "smtp-digest",
        "tidy",
        "webhook",
        "zig-alert",
    ];
    for job in jobs {
        assert!(text(&output.stdout).contains(&format!("ok     {job}")), "{}", describe(&output));
    }
}

#[test]
fn report_summarises_its_preopened_folder() {
    let state = tempfile::tempdir().unwrap();
    let output = bundled(&["once", "report"], state.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("app.log"), "{stdout}");
    assert!(stdout.contains("total: 3 files, 7 lines, 107 bytes"), "{stdout}");
}

#[test]
fn alert_passes_on_its_samples_and_fails_over_the_threshold() {
    let state = tempfile::tempdir().unwrap();
    let output = bundled(&["once", "alert", "--json"], state.path());
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["status"], "succeeded", "{record}");
    assert!(record["stdout"].as_str().unwrap().contains("p95 latency 290.0 ms over 41 samples"));
    assert!(record["fuel_used"].as_u64().unwrap() > 0, "alert declares fuel, so it is metered");

    let payload = state.path().join("slow.txt");
    std::fs::write(&payload, "100\n900\n950\n").unwrap();
    let output = bundled(&["once", "alert", "--json", "--payload", payload.to_str().unwrap()], state.path());
    assert_eq!(output.status.code(), Some(1));
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["status"], "failed");
    assert!(record["stderr"].as_str().unwrap().contains("ALERT: p95 latency 950.0 ms is above 290.0 ms"), "{record}");
}

#[test]
fn heartbeat_wat_job_runs() {
    let state = tempfile::tempdir().unwrap();
    let output = bundled(&["once", "heartbeat"], state.path());
    assert_eq!((output.status.code(), text(&output.stdout).as_str()), (Some(0), "heartbeat: all well.\n"));
}

#[test]
fn the_c_report_summarises_its_preopened_folder() {
    let state = tempfile::tempdir().unwrap();
    let output = bundled(&["once", "c-report"], state.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("C report for /data"), "{stdout}");
    assert!(stdout.contains("orders.csv"), "{stdout}");
    assert!(stdout.contains("total: 3 files, 7 lines, 107 bytes"), "the same totals as the Rust report: {stdout}");
}

#[test]
fn the_zig_alert_passes_under_its_threshold_and_fails_over_it() {
    let state = tempfile::tempdir().unwrap();
    for (samples, code, expected) in [
        ("120\n480\n", 0, "max latency 480.0 ms over 2 samples"),
        ("120\n900\n", 1, "ALERT: max latency 900.0 ms is above 500.0 ms"),
    ] {
        let payload = state.path().join("samples.txt");
        std::fs::write(&payload, samples).unwrap();
        let output = bundled(&["once", "zig-alert", "--json", "--payload", payload.to_str().unwrap()], state.path());
        assert_eq!(output.status.code(), Some(code), "{}", describe(&output));
        let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let captured = format!("{}{}", record["stdout"].as_str().unwrap(), record["stderr"].as_str().unwrap());
        assert!(captured.contains(expected), "{record}");
        assert!(record["fuel_used"].as_u64().unwrap() > 0, "the declaration meters fuel");
    }
}

/// Runs a bundled job once with `payload`; returns its record.
fn once_with(job: &str, payload: &str, state: &std::path::Path) -> serde_json::Value {
    let file = state.join(format!("{job}-payload.txt"));
    std::fs::write(&file, payload).unwrap();
    let output = bundled(&["once", job, "--json", "--payload", file.to_str().unwrap()], state);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("no record: {}", describe(&output)))
}

#[test]
fn the_assemblyscript_check_fails_over_its_limit() {
    let state = tempfile::tempdir().unwrap();
    let record = once_with("as-check", "12", state.path());
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["stdout"], "as-check: queue depth 12 (limit 1000)\n");
    let record = once_with("as-check", "1500", state.path());
    assert_eq!((record["status"].as_str(), record["exit_code"].as_i64()), (Some("failed"), Some(1)), "{record}");
    assert!(record["stderr"].as_str().unwrap().contains("ALERT: queue depth 1500 is above 1000"), "{record}");
}

#[test]
fn the_python_job_keeps_a_window_in_key_value_state() {
    let state = tempfile::tempdir().unwrap();
    for kept in 1..=3 {
        let record = once_with("py-prune", "", state.path());
        assert_eq!(record["status"], "succeeded", "{record}");
        let expected = format!("py-prune: kept {kept} of {kept} entries (attempt 1, manual)\n");
        assert_eq!(record["stdout"], expected.as_str(), "the store remembers earlier runs");
        assert!(record["stderr"].as_str().unwrap().contains("[info] pruned old entries"), "{record}");
    }
}

#[test]
fn the_javascript_job_fans_out_with_enqueue() {
    let state = tempfile::tempdir().unwrap();
    let record = once_with("js-followup", "heartbeat\nreport\n", state.path());
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["stdout"], "js-followup: queued 2 of 2 follow-ups\n");
    let parent = record["id"].as_i64().unwrap();
    let output = bundled(&["runs", "--status", "pending", "--json"], state.path());
    let pending: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let mut queued: Vec<&str> = pending.iter().map(|r| r["job"].as_str().unwrap()).collect();
    queued.sort();
    assert_eq!(queued, ["heartbeat", "report"]);
    assert!(pending.iter().all(|r| r["parent_run"].as_i64() == Some(parent)), "{pending:?}");

    let record = once_with("js-followup", "nowhere", state.path());
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"], "nowhere: no job named \"nowhere\" is declared");
}
