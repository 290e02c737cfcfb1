//! `wasmcron-bench` (the suite) and `cargo xtask bench` (the suite beside
//! its peers): short runs that check every section reports well-formed
//! figures (the trigger section on its own too, against a `wasmcron run`
//! child; the cluster section against hosts on a throwaway PostgreSQL),
//! and that bad options are explained before any section runs.
//! No timing thresholds: speed is judged in BENCHMARKS.md.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

const FIGURES: [&str; 25] = [
    "throughput.c1",
    "throughput.best",
    "per_run.end_to_end",
    "lateness.fired.p99",
    "lateness.recorded.p99",
    "lateness.started.p99",
    "cancel.max",
    "deadline.max",
    "reload.max",
    "startup.cold",
    "startup.warm",
    "kernel.unmetered",
    "kernel.metered",
    "memory.idle_empty",
    "memory.idle_loaded",
    "memory.per_running_job",
    "memory.idle_wakeups",
    "per_run.bare",
    "per_run.sandbox",
    "per_run.sandbox_ratio",
    "per_run.record",
    "per_run.end_to_end_ratio",
    "outbound.native",
    "outbound.guest",
    "outbound.ratio",
];

/// The `trigger` section's figures (with `--quick`, connections 1 and 4).
const TRIGGER_FIGURES: [&str; 8] = [
    "trigger.accepted.c1",
    "trigger.accepted.c4",
    "trigger.accepted.best",
    "trigger.floor.best",
    "trigger.floor_ratio",
    "trigger.started.p99",
    "trigger.answered.p99",
    "trigger.floor_answered.p99",
];

/// The `cluster` section's figures: hosts on one PostgreSQL database
/// beside one on SQLite.
const CLUSTER_FIGURES: [&str; 9] = [
    "cluster.sqlite",
    "cluster.pg1",
    "cluster.pg2",
    "cluster.pg3",
    "cluster.cost_ratio",
    "cluster.statements_per_run",
    "cluster.transactions_per_run",
    "cluster.lateness.p99",
    "cluster.rescue.max",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// `wasmcron-bench`, with no inherited log filter.
fn bench() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmcron-bench"));
    command.env_remove("WASMCRON_LOG");
    command
}

/// The `wasmcron` binary beside this test's `wasmcron-bench`, for the
/// memory section. `cargo test --workspace` has built it already; under
/// `cargo test -p wasmcron-bench` it may be missing or older than the
/// library this suite was built with, so it is built here (once per test
/// run; a no-op when it is up to date).
fn wasmcron() -> &'static Path {
    static WASMCRON: OnceLock<PathBuf> = OnceLock::new();
    WASMCRON.get_or_init(|| {
        let profile_dir = Path::new(env!("CARGO_BIN_EXE_wasmcron-bench")).parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.current_dir(repo_root()).args(["build", "--quiet", "--package", "wasmcron", "--target-dir"]);
        build.arg(profile_dir.parent().unwrap());
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let output = build.output().expect("running cargo");
        assert!(output.status.success(), "building wasmcron failed:\n{}", describe(&output));
        let wasmcron = profile_dir.join("wasmcron");
        assert!(wasmcron.is_file(), "cargo built wasmcron, but not at {}", wasmcron.display());
        wasmcron
    })
}

/// The SHA-256 kernel built to wasm, for the kernel section, as `cargo
/// xtask bench` builds it (once per test run).
fn kernel() -> &'static Path {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let root = repo_root();
        let target = Command::new("rustup").args(["target", "add", "wasm32-wasip1"]).output().expect("running rustup");
        assert!(target.status.success(), "adding the wasm32-wasip1 target failed:\n{}", describe(&target));
        let output = Command::new("bash")
            .arg(root.join("plugins/build.sh"))
            .arg("hash-kernel")
            .output()
            .expect("running plugins/build.sh");
        assert!(output.status.success(), "building the SHA-256 kernel failed:\n{}", describe(&output));
        root.join("plugins/target/wasm32-wasip1/release/hash-kernel.wasm")
    })
}

/// The test probe built as a component, for the outbound section (once
/// per test run).
fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let root = repo_root();
        let target = Command::new("rustup").args(["target", "add", "wasm32-wasip2"]).output().expect("running rustup");
        assert!(target.status.success(), "adding the wasm32-wasip2 target failed:\n{}", describe(&target));
        let output = Command::new("cargo")
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
            .arg(root.join("tests/guests/Cargo.toml"))
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .expect("running cargo");
        assert!(output.status.success(), "building the probe failed:\n{}", describe(&output));
        root.join("tests/guests/target/wasm32-wasip2/release/probe.wasm")
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Stdout and stderr of a finished command, for assertion messages.
fn describe(output: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", output.status.code(), text(&output.stdout), text(&output.stderr))
}

/// Figures that may rightly be zero: a host with nothing due need not wake.
const MAY_BE_ZERO: [&str; 1] = ["memory.idle_wakeups"];

/// Checks a whole suite's report: see `check_figures`.
fn check_report(report: &Value) {
    check_figures(report, FIGURES.iter().chain(&TRIGGER_FIGURES).chain(&CLUSTER_FIGURES));
}

/// Checks a report's shape: every figure in `expected` there, each figure
/// finite and positive (or zero, where that is possible), and each
/// target's verdict agreeing with its value.
fn check_figures<'a>(report: &Value, expected: impl IntoIterator<Item = &'a &'a str>) {
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["date"].as_str().unwrap().starts_with("20"), "{report}");
    let figures = report["figures"].as_array().unwrap();
    let ids: BTreeSet<&str> = figures.iter().map(|f| f["id"].as_str().unwrap()).collect();
    for id in expected {
        assert!(ids.contains(*id), "no figure {id} in {ids:?}");
    }
    for figure in figures {
        let value = figure["value"].as_f64().unwrap();
        let may_be_zero = MAY_BE_ZERO.contains(&figure["id"].as_str().unwrap());
        assert!(value.is_finite() && (value > 0.0 || (may_be_zero && value == 0.0)), "{figure}");
        assert!(!figure["figure"].as_str().unwrap().is_empty() && !figure["unit"].as_str().unwrap().is_empty());
        if let Some(target) = figure["target"].as_object() {
            let limit = target["limit"].as_f64().unwrap();
            let met = match target["bound"].as_str().unwrap() {
                "at_most" => value <= limit,
                "at_least" => value >= limit,
                other => panic!("unknown bound {other}"),
            };
            assert_eq!(target["met"].as_bool(), Some(met), "{figure}");
        }
    }
}

#[test]
fn quick_suite_reports_every_section() {
    let output = bench()
        .current_dir(repo_root())
        .args(["--quick", "--json", "--kernel"])
        .arg(kernel())
        .arg("--probe")
        .arg(probe())
        .arg("--wasmcron")
        .arg(wasmcron())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["quick"], true);
    check_report(&report);
    // Progress goes to stderr, one line per section.
    assert_eq!(text(&output.stderr).lines().filter(|l| l.starts_with("wasmcron-bench: ")).count(), 12);
    check_cluster(&report);

    // For people: a Markdown table with the machine on top.
    let output = bench().args(["--quick", "--only", "floor,cancel"]).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let table = text(&output.stdout);
    assert!(table.contains("| figure | target | measured | met | detail |"), "{table}");
    assert!(table.contains("sandbox per-run cost ÷ bare loop"), "{table}");
    assert!(!table.contains("throughput"), "--only runs only the sections named: {table}");
}

/// The cluster section's targets, and what its details promise: the
/// cost ratio is of the figures it names, one host ran every run of its
/// burst, and every fire was recorded once (else the section fails).
fn check_cluster(report: &Value) {
    let figures = report["figures"].as_array().unwrap();
    let figure = |id: &str| figures.iter().find(|f| f["id"] == id).unwrap();
    let value = |id: &str| figure(id)["value"].as_f64().unwrap();
    for (id, limit) in
        [("cluster.cost_ratio", 3.0), ("cluster.statements_per_run", 3.0), ("cluster.rescue.max", 2000.0)]
    {
        assert_eq!(figure(id)["target"]["limit"], limit, "{id}");
        assert_eq!(figure(id)["target"]["bound"], "at_most", "{id}");
    }
    assert!((value("cluster.cost_ratio") - value("cluster.sqlite") / value("cluster.pg1")).abs() < 1e-9, "{report}");
    let detail = |id: &str| figure(id)["detail"].as_str().unwrap().to_owned();
    assert!(detail("cluster.pg1").contains("runs by host: host-1 100"), "{}", detail("cluster.pg1"));
    let lateness = detail("cluster.lateness.p99");
    assert!(lateness.contains("exactly one row per (job, scheduled_for)"), "{lateness}");
}

#[test]
fn trigger_section_drives_a_wasmcron_run_child_beside_the_http_floor() {
    let output =
        bench().args(["--quick", "--json", "--only", "trigger", "--wasmcron"]).arg(wasmcron()).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    check_figures(&report, &TRIGGER_FIGURES);
    let figures = report["figures"].as_array().unwrap();
    let figure = |id: &str| figures.iter().find(|f| f["id"] == id).unwrap();
    assert!(figures.iter().all(|f| f["id"].as_str().unwrap().starts_with("trigger.")), "{figures:?}");
    // The targets the section is judged by, beside their figures.
    assert_eq!(figure("trigger.accepted.best")["target"]["limit"], 10_000.0);
    assert_eq!(figure("trigger.accepted.best")["target"]["bound"], "at_least");
    assert_eq!(figure("trigger.started.p99")["target"]["limit"], 10.0);
    assert_eq!(figure("trigger.started.p99")["target"]["bound"], "at_most");
    // The ratio is of the two bests it names.
    let value = |id: &str| figure(id)["value"].as_f64().unwrap();
    let ratio = value("trigger.accepted.best") / value("trigger.floor.best");
    assert!((value("trigger.floor_ratio") - ratio).abs() < 1e-9, "{report}");
    // Every accepted trigger of the paced load was matched to its run's start.
    let detail = figure("trigger.started.p99")["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("(300 samples)"), "{detail}");
}

#[test]
fn bad_options_are_explained_before_any_section() {
    let output = bench().args(["--only", "speed"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(text(&output.stderr).contains("invalid value 'speed'"), "{}", describe(&output));
    assert!(text(&output.stderr).contains("throughput"), "the valid sections are listed: {}", describe(&output));

    let output = bench().args(["--quick", "--kernel", "/nowhere/kernel.wasm"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("/nowhere/kernel.wasm") && stderr.contains("plugins/build.sh hash-kernel"), "{stderr}");
    assert!(!stderr.contains("wasmcron-bench: throughput"), "a missing kernel fails before any section runs: {stderr}");

    let output =
        bench().args(["--quick", "--only", "cancel,memory", "--wasmcron", "/nowhere/wasmcron"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("/nowhere/wasmcron") && stderr.contains("--wasmcron PATH"), "{stderr}");
    assert!(!stderr.contains("wasmcron-bench: cancel"), "a missing wasmcron fails before any section runs: {stderr}");

    let output = bench().args(["--quick", "--only", "trigger", "--wasmcron", "/nowhere/wasmcron"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("the trigger section starts `wasmcron run`"), "{stderr}");
}

#[test]
fn xtask_bench_reports_peers_beside_wasmcron() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(repo_root())
        .args(["run", "--quiet", "--package", "xtask", "--", "bench", "--quick", "--no-install", "--runs", "4"])
        .arg("--wasmcron")
        .arg(wasmcron())
        .arg("--bench")
        .arg(env!("CARGO_BIN_EXE_wasmcron-bench"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("| native process, once per run |"), "{stdout}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(repo_root().join("target/bench/report.json")).unwrap()).unwrap();
    check_report(&report);
    let rows = report["peers"]["rows"].as_array().unwrap();
    let native = rows.iter().find(|r| r["peer"] == "native process, once per run").unwrap();
    for key in ["serial_runs_per_s", "parallel_runs_per_s", "wasmcron_serial_ratio", "wasmcron_best_ratio"] {
        let value = native[key].as_f64().unwrap();
        assert!(value.is_finite() && value > 0.0, "{key}: {native}");
    }
    assert!(rows.iter().any(|r| r["peer"].as_str().unwrap().starts_with("bare wasmtime")), "{rows:?}");
}
