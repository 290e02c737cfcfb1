//! The guest ABI of DESIGN.md: arguments, environment, `WASMCRON_*`
//! variables, the payload as stdin, preopens, preview 1 modules and preview 2
//! components alike, and cancellation of a running guest.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmcron::config::JobSpec;
use wasmcron::runtime::{EPOCH_TICK, RunContext, RunControl, RunOutcome, Runtime};

use crate::support::{Sandbox, fixture, guests, toml_path};

#[test]
fn args_env_and_context_reach_the_guest_and_nothing_else_does() {
    let sandbox = Sandbox::new();
    for (job, module) in [("probe_p1", &guests().probe_p1), ("probe_p2", &guests().probe_p2)] {
        sandbox.declare(
            job,
            &format!(
                "module = {}\nargs = [\"env\", \"--since\", \"1d\"]\nenv = {{ LEVEL = \"info\" }}",
                toml_path(module)
            ),
        );
        let output = sandbox.wasmcron(&["once", job, "--json"]).env("HOST_SECRET", "leak").output().unwrap();
        let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(record["status"], "succeeded", "{record}");
        let id = record["id"].as_i64().unwrap();
        let stdout = record["stdout"].as_str().unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[0], format!("args={job} env --since 1d"));
        let scheduled = record["scheduled_for"].as_str().unwrap();
        let vars: Vec<String> = lines.iter().skip(2).map(|l| l.to_string()).collect();
        assert_eq!(
            vars,
            [
                "LEVEL=info".to_string(),
                "WASMCRON_ATTEMPT=1".into(),
                format!("WASMCRON_JOB={job}"),
                format!("WASMCRON_RUN_ID={id}"),
                format!("WASMCRON_SCHEDULED_AT={scheduled}"),
                "WASMCRON_TRIGGER=manual".into(),
            ],
            "{job}: exactly the declared and WASMCRON_* variables, no host environment"
        );
        let bytes = std::fs::read(module).unwrap();
        let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(record["module_sha256"], sha);
    }
}

#[test]
fn the_payload_is_stdin() {
    let sandbox = Sandbox::new();
    sandbox.declare("echo", &format!("module = {}\nargs = [\"stdin\"]", toml_path(&guests().probe_p2)));
    std::fs::write(sandbox.path("payload.json"), "{\"order\": 42}").unwrap();
    let payload = sandbox.path("payload.json");
    let output = sandbox.wasmcron(&["once", "echo", "--payload", payload.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(output.stdout, b"{\"order\": 42}", "once passes the guest's stdout through");

    let mut child = sandbox
        .wasmcron(&["once", "echo", "--payload", "-", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"from a pipe").unwrap();
    let output = child.wait_with_output().unwrap();
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["stdout"], "from a pipe");
}

#[test]
fn a_read_write_preopen_can_be_written() {
    let sandbox = Sandbox::new();
    std::fs::create_dir(sandbox.path("out")).unwrap();
    sandbox.declare(
        "writer",
        &format!(
            "module = {}\nargs = [\"write\", \"/out/result.txt\", \"done\"]\n[[dirs]]\nhost = {}\nguest = \"/out\"\nmode = \"rw\"",
            toml_path(&guests().probe_p2),
            toml_path(&sandbox.path("out"))
        ),
    );
    let (record, code) = sandbox.once_json("writer");
    assert_eq!((record["status"].as_str(), code), (Some("succeeded"), 0), "{record}");
    assert_eq!(std::fs::read_to_string(sandbox.path("out/result.txt")).unwrap(), "done");
}

#[test]
fn a_guest_error_is_a_failure_with_its_message() {
    let sandbox = Sandbox::new();
    for (job, module) in [("fail_p1", &guests().probe_p1), ("fail_p2", &guests().probe_p2)] {
        sandbox.declare(job, &format!("module = {}\nargs = [\"fail\", \"disk full\"]", toml_path(module)));
        let (record, code) = sandbox.once_json(job);
        assert_eq!(
            (record["status"].as_str(), record["exit_code"].as_i64(), code),
            (Some("failed"), Some(1), 1),
            "{record}"
        );
        assert_eq!(record["stderr"], format!("{job}: disk full\n"));
    }
}

/// Runs `spin.wat` in the library's runtime and cancels it mid-loop.
#[test]
fn cancel_stops_a_tight_loop_within_a_few_ticks() {
    let runtime = Runtime::new().unwrap();
    let bytes = std::fs::read(fixture("spin.wat")).unwrap();
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    for metered in [false, true] {
        let compiled = runtime.compile(&bytes, metered).unwrap();
        let mut job = JobSpec::for_bare_module("spin".into(), fixture("spin.wat"));
        job.limits.fuel = metered.then_some(u64::MAX / 2);
        let context = RunContext::manual(1, Vec::new());
        let control = RunControl::new(Duration::from_secs(60));
        let (outcome, after_cancel) = tokio.block_on(async {
            let canceller = control.clone();
            let cancel_at = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                canceller.cancel();
                Instant::now()
            });
            let report = runtime.run(&compiled, &job, &context, &control).await;
            (report.outcome, cancel_at.await.unwrap().elapsed())
        });
        assert_eq!(outcome, RunOutcome::Cancelled, "metered: {metered}");
        // The mechanism needs two ticks; the bound is loose so a loaded machine passes.
        // Latency itself is measured in BENCHMARKS.md, not asserted here.
        assert!(after_cancel < EPOCH_TICK * 2 + Duration::from_millis(500), "took {after_cancel:?} after cancel");
    }
}
