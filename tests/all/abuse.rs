//! Hostile guests, round two: each abuses something the host offers — its
//! files, its output capture, its tables, the job world's imports, its
//! compiler — and each test checks the recorded, typed outcome, the limit
//! that held, and that the host stayed healthy (as `hostile.rs` does).

use std::time::Duration;

use serde_json::Value;

use crate::daemon::{Host, slow_to_compile};
use crate::support::{Sandbox, describe, flood, text, toml_path, wait_for};

/// After a hostile run, the same host setup still runs a good job.
fn assert_still_healthy(sandbox: &Sandbox) {
    sandbox.add_fixture("hello.wat");
    let (record, code) = sandbox.once_json("hello");
    assert_eq!((record["status"].as_str(), code), (Some("succeeded"), 0), "{record}");
}

/// `wasmcron once JOB --json --payload FILE`.
fn once_with_payload(sandbox: &Sandbox, job: &str, payload: &str) -> (Value, i32) {
    let file = sandbox.path("payload");
    std::fs::write(&file, payload).unwrap();
    let output = sandbox.wasmcron(&["once", job, "--json", "--payload", file.to_str().unwrap()]).output().unwrap();
    let record =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("no record ({e}): {}", describe(&output)));
    (record, output.status.code().unwrap())
}

/// Opens and closes a file through its preopen (fd 3) 100,000 times; exits
/// 2 if an open fails (say, the host ran out of descriptors), 3 if a close does.
const OPEN_CLOSE: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "f.txt")
  (func (export "_start") (local $n i32)
    (loop $again
      (if (call $open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 0)
                      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0))
        (then (call $exit (i32.const 2))))
      (if (call $close (i32.load (i32.const 0))) (then (call $exit (i32.const 3))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $n) (i32.const 100000))))))"#;

#[test]
fn opening_and_closing_files_in_a_tight_loop_leaks_nothing() {
    let sandbox = Sandbox::new();
    std::fs::create_dir(sandbox.path("data")).unwrap();
    std::fs::write(sandbox.path("data/f.txt"), "x").unwrap();
    std::fs::write(sandbox.jobs().join("churn.wat"), OPEN_CLOSE).unwrap();
    let dir = toml_path(&sandbox.path("data"));
    sandbox.declare("churn", &format!("module = \"churn.wat\"\n[[dirs]]\nhost = {dir}\nguest = \"/data\""));
    // 100,000 opens: far past any descriptor limit, unless each close frees its descriptor.
    let (record, code) = sandbox.once_json("churn");
    assert_eq!(
        (record["status"].as_str(), record["exit_code"].as_i64(), code),
        (Some("succeeded"), Some(0), 0),
        "{record}"
    );
    assert_still_healthy(&sandbox);
}

/// Writes `n` one-byte lines ("\n"), one `fd_write` each.
fn one_byte_lines(n: u32) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\10\00\00\00\01\00\00\00")
  (data (i32.const 16) "\n")
  (func (export "_start") (local $n i32)
    (loop $again
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $n) (i32.const {n}))))))"#
    )
}

#[test]
fn millions_of_one_byte_lines_are_held_at_the_output_cap() {
    let sandbox = Sandbox::new();
    let lines: u64 = 2_000_000;
    std::fs::write(sandbox.jobs().join("lines.wat"), one_byte_lines(lines as u32)).unwrap();
    sandbox.declare("lines", "module = \"lines.wat\"\n[limits]\noutput = \"64KiB\"");
    let (record, code) = sandbox.once_json("lines");
    assert_eq!((record["status"].as_str(), code), (Some("succeeded"), 0), "{record}");
    assert_eq!(record["output_dropped"], lines - 65536, "{}", record["error"]);
    let stdout = record["stdout"].as_str().unwrap();
    assert!(stdout.len() < 65536 + 200, "captured {} bytes", stdout.len());
    let marker = format!("[wasmcron: output truncated at limits.output; {} more bytes dropped]\n", lines - 65536);
    assert!(stdout.ends_with(&marker), "no truncation marker: {:?}", &stdout[stdout.len() - 120..]);
    assert!(stdout[..65536].bytes().all(|b| b == b'\n'));
    assert_still_healthy(&sandbox);
}

/// Asks for a table of 2^31 − 1 elements (exits 101 if that is granted),
/// then grows it 10,000 at a time until refused; exits with its size / 10,000.
const TABLE_GROWER: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (table $t 0 funcref)
  (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.ne (table.grow $t (ref.null func) (i32.const 0x7fffffff)) (i32.const -1))
      (then (call $exit (i32.const 101))))
    (loop $more
      (br_if $more (i32.ne (table.grow $t (ref.null func) (i32.const 10000)) (i32.const -1))))
    (call $exit (i32.div_u (table.size $t) (i32.const 10000)))))"#;

#[test]
fn a_table_grown_without_end_is_held_at_the_element_limit() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("tables.wat"), TABLE_GROWER).unwrap();
    let (record, code) = sandbox.once_json("tables");
    // table.grow answered -1 to the guest (no trap) at the pooling
    // allocator's table slot (20,000 elements by default), below the
    // store limiter's 1,000,000: the guest exits 2.
    assert_eq!(
        (record["status"].as_str(), record["exit_code"].as_i64(), code),
        (Some("failed"), Some(2), 1),
        "{record}"
    );
    assert_still_healthy(&sandbox);
}

fn flood_job(sandbox: &Sandbox) {
    sandbox.declare("flood", &format!("module = {}", toml_path(flood())));
}

#[test]
fn key_value_writes_in_a_loop_stop_at_the_per_run_cap() {
    let sandbox = Sandbox::new();
    flood_job(&sandbox);
    for (action, call) in [("kv-delete", "kv.delete"), ("kv", "kv.set")] {
        let (record, code) = once_with_payload(&sandbox, "flood", action);
        assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{action}: {record}");
        let error = record["error"].as_str().unwrap();
        assert!(
            error.contains(&format!("{call}: this run has made 10000 such calls, the most one run may")),
            "{action}: {error}"
        );
        assert!(error.contains("fixed per-run limit"), "{error}");
        assert_eq!(record["stdout"], "10000 calls went through\n", "{action}: {record}");
    }
    assert_still_healthy(&sandbox);
}

#[test]
fn enqueues_in_a_loop_stop_at_the_per_run_cap() {
    let sandbox = Sandbox::new();
    flood_job(&sandbox);
    sandbox.add_fixture("exit0.wat");
    let (record, code) = once_with_payload(&sandbox, "flood", "enqueue exit0");
    assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("queue.enqueue: this run has made 1000 such calls, the most one run may"), "{error}");
    assert_eq!(record["stdout"], "1000 calls went through\n");
    // Exactly the cap's worth of runs is waiting, each with the flood as its parent.
    let runs = crate::support::all_runs(&sandbox);
    let children: Vec<_> = runs.iter().filter(|r| r.job == "exit0").collect();
    assert_eq!(children.len(), 1000);
    assert!(children.iter().all(|r| r.parent_run == record["id"].as_i64()), "{:?}", children[0]);
    assert_still_healthy(&sandbox);
}

#[test]
fn deep_recursion_through_a_host_import_is_a_typed_failure() {
    let sandbox = Sandbox::new();
    flood_job(&sandbox);
    sandbox.declare("flood", &format!("module = {}\n[limits]\noutput = \"64KiB\"", toml_path(flood())));
    let (record, code) = once_with_payload(&sandbox, "flood", "recurse");
    assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("call stack exhausted"), "{error}");
    // It got deep, logging through the host at each level, before the stack ran out.
    assert!(record["stderr"].as_str().unwrap().contains("[debug] deeper depth=\"1000\""), "{}", record["stderr"]);
    assert_still_healthy(&sandbox);
}

#[test]
fn a_module_slow_to_compile_is_a_load_error_naming_the_file_and_the_limit() {
    let sandbox = Sandbox::new();
    // Many seconds to compile; the hello module takes milliseconds. Named
    // to load last: the compile abandoned at the limit goes on (Cranelift
    // cannot be stopped) on the pool wasmtime compiles with, and would
    // slow any compile after it.
    std::fs::write(sandbox.jobs().join("zbig.wat"), slow_to_compile(16000)).unwrap();
    sandbox.declare("zbig", "module = \"zbig.wat\"\nschedule = \"@every 1s\"");
    sandbox.add_fixture("hello.wat");
    sandbox.declare("hello", "schedule = \"@every 1s\"");
    let expected = format!(
        "{}: module \"{}\": took longer than the compile time limit (1s) to compile; make the module smaller, \
         or raise the limit with --compile-timeout",
        sandbox.jobs().join("zbig.toml").display(),
        sandbox.jobs().join("zbig.wat").display()
    );

    let output = sandbox.wasmcron(&["check", "--compile-timeout", "1s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(text(&output.stderr).contains(&expected), "{}", describe(&output));
    assert!(text(&output.stdout).contains("ok     hello"), "{}", describe(&output));

    // The host's loader says the same, and serves the other job.
    let host = Host::start(&sandbox, &["--compile-timeout", "1s"]);
    wait_for("hello to run", Duration::from_secs(60), || {
        crate::support::all_runs(&sandbox).iter().any(|r| r.job == "hello")
    });
    let log = host.stop();
    assert!(log.contains("took longer than the compile time limit (1s)"), "{log}");
}
