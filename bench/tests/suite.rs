//! `wasmcron bench` (the suite) and `cargo xtask bench` (the suite beside
//! its peers): short runs that check every section reports well-formed
//! figures. No timing thresholds: speed is judged in BENCHMARKS.md.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::support::{describe, guests, repo_root, text, wasmcron};

const KERNEL: &str = "plugins/target/wasm32-wasip1/release/hash-kernel.wasm";

const FIGURES: [&str; 21] = [
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
    "per_run.bare",
    "per_run.sandbox",
    "per_run.sandbox_ratio",
    "per_run.record",
    "per_run.end_to_end_ratio",
];

/// Checks a report's shape: every figure named, finite and positive, and
/// each target's verdict agreeing with its value.
fn check_report(report: &Value) {
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["date"].as_str().unwrap().starts_with("20"), "{report}");
    let figures = report["figures"].as_array().unwrap();
    let ids: BTreeSet<&str> = figures.iter().map(|f| f["id"].as_str().unwrap()).collect();
    for id in FIGURES {
        assert!(ids.contains(id), "no figure {id} in {ids:?}");
    }
    for figure in figures {
        let value = figure["value"].as_f64().unwrap();
        assert!(value.is_finite() && value > 0.0, "{figure}");
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
fn bench_quick_reports_every_section() {
    guests(); // builds the SHA-256 kernel with the other plugins
    let output =
        wasmcron().current_dir(repo_root()).args(["bench", "--quick", "--json", "--kernel", KERNEL]).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["quick"], true);
    check_report(&report);
    // Progress goes to stderr, one line per section.
    assert_eq!(text(&output.stderr).lines().filter(|l| l.starts_with("wasmcron bench: ")).count(), 8);

    // For people: a Markdown table with the machine on top.
    let output = wasmcron().args(["bench", "--quick", "--only", "floor,cancel"]).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let table = text(&output.stdout);
    assert!(table.contains("| figure | target | measured | met | detail |"), "{table}");
    assert!(table.contains("sandbox per-run cost ÷ bare loop"), "{table}");
    assert!(!table.contains("throughput"), "--only runs only the sections named: {table}");
}

#[test]
fn bench_explains_bad_options() {
    let output = wasmcron().args(["bench", "--only", "speed"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(text(&output.stderr).contains("invalid value 'speed'"), "{}", describe(&output));
    assert!(text(&output.stderr).contains("throughput"), "the valid sections are listed: {}", describe(&output));

    let output = wasmcron().args(["bench", "--quick", "--kernel", "/nowhere/kernel.wasm"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("/nowhere/kernel.wasm") && stderr.contains("plugins/build.sh hash-kernel"), "{stderr}");
    assert!(!stderr.contains("wasmcron bench: throughput"), "a missing kernel fails before any section runs: {stderr}");

    let output = wasmcron().args(["bench", "--job", "x", "--quick"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "--quick is for the suite: {}", describe(&output));
}

#[test]
fn xtask_bench_reports_peers_beside_wasmcron() {
    guests();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(repo_root())
        .args(["run", "--quiet", "--package", "xtask", "--", "bench", "--quick", "--no-install", "--runs", "4"])
        .arg("--wasmcron")
        .arg(env!("CARGO_BIN_EXE_wasmcron"))
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
