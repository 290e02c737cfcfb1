//! Hostile guests: each misbehaves in one way, and each test checks the
//! recorded outcome and that the host itself stayed healthy (it exits
//! normally, records the run, and runs the next job fine).

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use crate::support::{Sandbox, describe, guests, run_seconds, text, toml_path};

/// After a hostile run, the same host setup still runs a good job.
fn assert_still_healthy(sandbox: &Sandbox) {
    sandbox.add_fixture("hello.wat");
    let (record, code) = sandbox.once_json("hello");
    assert_eq!((record["status"].as_str(), code), (Some("succeeded"), 0), "{record}");
    assert_eq!(record["stdout"], "hello from wasm\n");
}

#[test]
fn infinite_loop_times_out_near_its_timeout() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("spin.wat");
    sandbox.declare("spin", "[limits]\ntimeout = \"1s\"");
    let (record, code) = sandbox.once_json("spin");
    assert_eq!((record["status"].as_str(), code), (Some("timed_out"), 1), "{record}");
    let seconds = run_seconds(&record);
    assert!((1.0..5.0).contains(&seconds), "stopped after {seconds}s, timeout 1s");
    assert_eq!(record["fuel_used"], serde_json::Value::Null, "an unmetered job reports no fuel");
    assert_still_healthy(&sandbox);
}

#[test]
fn fuel_limited_loop_runs_out_of_fuel() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("spin.wat");
    sandbox.declare("spin", "[limits]\ntimeout = \"1m\"\nfuel = 5_000_000");
    let (record, code) = sandbox.once_json("spin");
    assert_eq!((record["status"].as_str(), code), (Some("out_of_fuel"), 1), "{record}");
    assert_eq!(record["fuel_used"], 5_000_000);
    assert!(run_seconds(&record) < 30.0, "fuel ran out long before the timeout");
    assert_still_healthy(&sandbox);
}

#[test]
fn memory_bomb_is_held_at_the_limit_and_peak_rss_stays_bounded() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("memory_bomb.wat");
    sandbox.declare("memory_bomb", "[limits]\nmemory = \"32MiB\"");
    #[expect(clippy::zombie_processes, reason = "reaped by libc::wait4 below, which also gives its rusage")]
    let child = sandbox.wasmcron(&["once", "memory_bomb", "--json"]).stdout(Stdio::piped()).spawn().unwrap();
    let pid = child.id() as libc::pid_t;

    // wait4 gives this one child's peak resident set size, unlike
    // RUSAGE_CHILDREN, which other tests' children would pollute.
    let stdout = std::thread::spawn({
        let mut pipe = child.stdout.unwrap();
        move || {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut pipe, &mut bytes).unwrap();
            bytes
        }
    });
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; both out-pointers are valid.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    let peak_mib = usage.ru_maxrss / 1024; // ru_maxrss is in KiB on Linux
    let record: serde_json::Value = serde_json::from_slice(&stdout.join().unwrap()).unwrap();

    assert_eq!(std::process::ExitStatus::from_raw(status).code(), Some(1));
    assert_eq!(record["status"], "failed", "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("unreachable"), "{error}");
    assert!(error.contains("limits.memory is 33554432 bytes"), "{error}");
    // The guest would take 4 GiB unchecked; the host's own footprint is far below 300 MiB.
    assert!(peak_mib < 300, "peak RSS {peak_mib} MiB");
    eprintln!("memory bomb: peak RSS of the host {peak_mib} MiB");
    assert_still_healthy(&sandbox);
}

#[test]
fn unbounded_recursion_fails_cleanly() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("recursion.wat");
    let (record, code) = sandbox.once_json("recursion");
    assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{record}");
    assert_eq!(record["exit_code"], serde_json::Value::Null, "a trap has no exit code");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("call stack exhausted"), "{error}");
    assert_still_healthy(&sandbox);
}

#[test]
fn a_flood_of_output_is_capped_and_marked() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("flood.wat");
    sandbox.declare("flood", "[limits]\noutput = \"1MiB\"");
    let (record, code) = sandbox.once_json("flood");
    assert_eq!((record["status"].as_str(), code), (Some("succeeded"), 0), "{record}");
    let stdout = record["stdout"].as_str().unwrap();
    let written: u64 = 1600 * 65536;
    assert_eq!(record["output_dropped"], written - (1 << 20));
    assert!(stdout.starts_with("xxxx"));
    assert!(stdout.len() < (1 << 20) + 200, "captured {} bytes", stdout.len());
    assert!(
        stdout.ends_with(&format!(
            "[wasmcron: output truncated at limits.output; {} more bytes dropped]\n",
            written - (1 << 20)
        )),
        "no truncation marker at the end of the captured output"
    );
    assert_still_healthy(&sandbox);
}

#[test]
fn proc_exit_codes_are_outcomes() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("exit3.wat");
    sandbox.add_fixture("exit0.wat");
    let (record, code) = sandbox.once_json("exit3");
    assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{record}");
    assert_eq!(record["exit_code"], 3);
    assert_eq!(record["error"], "exited with code 3");
    let (record, code) = sandbox.once_json("exit0");
    assert_eq!((record["status"].as_str(), record["exit_code"].as_i64(), code), (Some("succeeded"), Some(0), 0));
}

#[test]
fn host_files_are_invisible_without_a_preopen() {
    let sandbox = Sandbox::new();
    let secret = sandbox.path("secret.txt");
    std::fs::write(&secret, "host secret").unwrap();
    let module = toml_path(&guests().probe_p1);
    sandbox.declare("peek", &format!("module = {module}\nargs = [\"read\", {}]", toml_path(&secret)));
    let (record, code) = sandbox.once_json("peek");
    assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{record}");
    assert!(!record["stdout"].as_str().unwrap().contains("host secret"));
    let stderr = record["stderr"].as_str().unwrap();
    // With no preopen, the guest's view of the filesystem is empty.
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}

#[test]
fn writing_through_a_read_only_preopen_is_denied() {
    let sandbox = Sandbox::new();
    std::fs::create_dir(sandbox.path("data")).unwrap();
    std::fs::write(sandbox.path("data/existing.txt"), "original").unwrap();
    let module = toml_path(&guests().probe_p1);
    let dir = toml_path(&sandbox.path("data"));
    for (job, path) in [("create", "/data/new.txt"), ("overwrite", "/data/existing.txt")] {
        sandbox.declare(
            job,
            &format!("module = {module}\nargs = [\"write\", \"{path}\", \"changed\"]\n[[dirs]]\nhost = {dir}\nguest = \"/data\"\nmode = \"ro\""),
        );
        let (record, code) = sandbox.once_json(job);
        assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{record}");
        let stderr = record["stderr"].as_str().unwrap();
        assert!(
            stderr.contains("Read-only file system")
                || stderr.contains("ermission denied")
                || stderr.contains("not permitted"),
            "{stderr}"
        );
    }
    assert!(!sandbox.path("data/new.txt").exists());
    assert_eq!(std::fs::read_to_string(sandbox.path("data/existing.txt")).unwrap(), "original");

    // The same guest may read through the same preopen.
    sandbox.declare(
        "reader",
        &format!(
            "module = {module}\nargs = [\"read\", \"/data/existing.txt\"]\n[[dirs]]\nhost = {dir}\nguest = \"/data\""
        ),
    );
    let (record, _) = sandbox.once_json("reader");
    assert_eq!(
        (record["status"].as_str(), record["stdout"].as_str()),
        (Some("succeeded"), Some("original")),
        "{record}"
    );
}

#[test]
fn an_hour_long_sleep_ends_at_the_timeout() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("sleep_hour.wat");
    sandbox.declare("sleep_hour", "[limits]\ntimeout = \"1s\"");
    let (record, code) = sandbox.once_json("sleep_hour");
    assert_eq!((record["status"].as_str(), code), (Some("timed_out"), 1), "{record}");
    let seconds = run_seconds(&record);
    assert!((1.0..10.0).contains(&seconds), "stopped after {seconds}s, timeout 1s");

    // The same for a Rust guest sleeping through std, as a module and as a component.
    for (job, module) in [("rust_p1", &guests().probe_p1), ("rust_p2", &guests().probe_p2)] {
        sandbox.declare(
            job,
            &format!("module = {}\nargs = [\"sleep\", \"3600\"]\n[limits]\ntimeout = \"1s\"", toml_path(module)),
        );
        let (record, _) = sandbox.once_json(job);
        assert_eq!(record["status"], "timed_out", "{job}: {record}");
        assert!(run_seconds(&record) < 10.0, "{job}: {record}");
    }
}

#[test]
fn invalid_and_unlinkable_modules_are_named_by_check_while_others_load() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("garbage.wasm"), b"\0asm\x01\0\0\0this is not a module").unwrap();
    std::fs::write(sandbox.jobs().join("text.wasm"), b"just some text").unwrap();
    sandbox.add_fixture("unlinkable.wat");
    sandbox.add_fixture("no_start.wat");
    sandbox.add_fixture("hello.wat");
    sandbox.declare("missing", "module = \"build/missing.wasm\"");

    let output = sandbox.wasmcron(&["check"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(stdout.contains("ok     hello"), "{}", describe(&output));
    let jobs = sandbox.jobs();
    for expected in [
        format!("{}: is not valid WebAssembly", jobs.join("garbage.wasm").display()),
        format!("{}: is not WebAssembly: it is neither a wasm binary nor WAT text", jobs.join("text.wasm").display()),
        format!(
            "{}: cannot be linked: unknown import: `env::launch_missiles` has not been defined",
            jobs.join("unlinkable.wat").display()
        ),
        format!("{}: has no `_start` export", jobs.join("no_start.wat").display()),
        format!(
            "{}: module \"{}\": cannot be read",
            jobs.join("missing.toml").display(),
            jobs.join("build/missing.wasm").display()
        ),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(stderr.contains("1 job(s) ok, 5 error(s)"), "{stderr}");

    // The good job still runs beside them.
    let (record, _) = sandbox.once_json("hello");
    assert_eq!(record["status"], "succeeded");
}
