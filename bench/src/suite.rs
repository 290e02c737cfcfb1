//! The suite: which sections there are, how big each is, and the order
//! they run in. Each section drives the real host path — scheduler, store,
//! SQLite file, sandbox — in this process (or, for idle memory and HTTP
//! triggers, a real `wasmcron run` child) and reports figures beside the
//! targets wasmcron holds itself to.
//!
//! Sections: `throughput` (trivial runs queued, run and recorded durably,
//! at several concurrency caps), `lateness` (1,000 jobs on `@every 1s`),
//! `cancel` (a tight loop cancelled, and one hitting its deadline),
//! `reload` (a 100 KB module replaced under a running host), `startup`
//! (1,000 declared jobs, cold and warm compile cache), `kernel` (SHA-256
//! over 64 MiB natively and as wasm, with and without fuel), `memory` (an
//! idle host's memory and wake-ups, and each concurrently running job), and
//! `floor` (the same trivial module in a bare wasmtime instantiate-and-call
//! loop: the floor under wasmcron's per-run cost; and the two row writes
//! that make a run durable, alone: the floor under its record), and
//! `trigger` (HTTP triggers to a `wasmcron run` child: accepted per second
//! over 1 to 64 connections, and trigger → start at a steady 1,000 a
//! second, beside a bare axum handler answering 202, the HTTP floor), and
//! `history` (the API's run list over 100,000 recorded runs, by each
//! filter the dashboard uses), and `outbound` (one HTTP request from a
//! guest over wasi:http, beside the same request made natively), and
//! `cluster` (`wasmcron run` hosts sharing one PostgreSQL database, beside
//! one on SQLite: runs a second, statements per run, fire lateness, and
//! the rescue of a killed host's run). `soak` (a million runs and 10,000
//! declared jobs through one `wasmcron run`: memory, file descriptors,
//! database size) runs only when asked for with `--only soak`.
//!
//! Peers outside this process (the `wasmtime` CLI and a native process per
//! run) are measured by `cargo xtask bench`, which runs this suite too.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmcron::runtime::Runtime;

use crate::report::{Figure, Report};
use crate::{cluster, daemon, floor, history, kernel, memory, outbound, sandbox, soak, trigger};

/// A trivial WASI command: writes "ok\n" to stdout and returns. The peers
/// of `cargo xtask bench` run the same file.
pub const TRIVIAL_WAT: &str = include_str!("../trivial.wat");

/// Sleeps an hour in `poll_oneoff`, touching one page of memory: a run
/// that stays running (blocked in a host call, running no wasm).
pub(crate) const SLEEPER_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\01\00\00\00")
  (data (i32.const 24) "\00\a0\8b\30\46\03\00\00")
  (func (export "_start") (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#;

/// Declares `count` jobs in `jobs`, each on a distinct trivial module and
/// due once a year: a host's worth of jobs that compile and then idle.
pub(crate) fn declare_distinct_jobs(jobs: &std::path::Path, count: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(jobs)?;
    for i in 0..count {
        std::fs::write(jobs.join(format!("job{i:04}.wat")), TRIVIAL_WAT.replace("ok\\0a", &format!("{i:04}")))?;
        std::fs::write(jobs.join(format!("job{i:04}.toml")), "schedule = \"@yearly\"")?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    Throughput,
    Lateness,
    Cancel,
    Reload,
    Startup,
    Kernel,
    Memory,
    Floor,
    Trigger,
    History,
    Outbound,
    Cluster,
    /// A million runs and 10,000 jobs through one host: only with
    /// `--only soak`, never in the default run (it takes minutes).
    Soak,
}

impl Section {
    /// Its name on the command line and in progress lines.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self).map(|v| v.get_name().to_owned()).unwrap_or_default()
    }

    pub const ALL: [Section; 12] = [
        Section::Throughput,
        Section::Lateness,
        Section::Cancel,
        Section::Reload,
        Section::Startup,
        Section::Kernel,
        Section::Memory,
        Section::Floor,
        Section::Trigger,
        Section::History,
        Section::Outbound,
        Section::Cluster,
    ];
}

/// What to run, and how big.
#[derive(Debug, Clone)]
pub struct Options {
    pub sections: Vec<Section>,
    /// Small sizes and short durations: checks the suite works, in seconds.
    /// Its numbers mean little.
    pub quick: bool,
    /// The SHA-256 kernel compiled to wasm (`plugins/build.sh hash-kernel`).
    pub kernel: PathBuf,
    /// The test probe built as a component, for `outbound`.
    pub probe: PathBuf,
    /// The `wasmcron` binary, for the sections that start a `wasmcron run` child.
    pub wasmcron: PathBuf,
    /// Concurrency caps for `throughput`, instead of the defaults.
    pub concurrency: Vec<usize>,
}

/// What the suite needs and did not find: the program's setup, not a
/// section, is at fault (exit code 2).
#[derive(Debug)]
pub struct Setup(pub String);

impl std::fmt::Display for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Setup {}

/// Sizes for a full or a quick run.
pub(crate) struct Sizes {
    pub throughput_runs: usize,
    pub concurrency: Vec<usize>,
    pub lateness_jobs: usize,
    pub lateness_seconds: u64,
    pub cancels: usize,
    pub reloads: usize,
    pub startup_jobs: usize,
    pub kernel_bytes: usize,
    pub memory_jobs: usize,
    /// How long an idle host is watched for wake-ups.
    pub idle_quiet: Duration,
    pub sandbox_runs: usize,
    /// Keep-alive connections of the closed-loop trigger loads.
    pub trigger_connections: Vec<usize>,
    /// How long each closed-loop trigger load lasts.
    pub trigger_seconds: Duration,
    /// Triggers a second of the paced load, and for how long.
    pub paced_rate: u32,
    pub paced_seconds: Duration,
    /// Runs recorded for the `history` section's run list.
    pub history_runs: usize,
    /// HTTP requests a guest makes in one run of the `outbound` section.
    pub outbound_requests: usize,
    /// Triggers in each burst of the `cluster` section.
    pub cluster_runs: usize,
    /// Jobs on `@every 1s` over the cluster's hosts, and for how long.
    pub cluster_lateness_jobs: usize,
    pub cluster_lateness_seconds: u64,
    /// Hosts killed, one after another, for the rescue figure.
    pub cluster_rescues: usize,
    /// Runs through the soak's host, and jobs declared for its second part.
    pub soak_runs: u64,
    pub soak_jobs: usize,
}

fn full() -> Sizes {
    Sizes {
        throughput_runs: 50_000,
        concurrency: vec![1, 4, 16, 64, 256],
        lateness_jobs: 1000,
        lateness_seconds: 30,
        cancels: 50,
        reloads: 20,
        startup_jobs: 1000,
        kernel_bytes: 64 << 20,
        memory_jobs: 200,
        idle_quiet: Duration::from_secs(5),
        sandbox_runs: 5000,
        trigger_connections: vec![1, 4, 16, 64],
        trigger_seconds: Duration::from_secs(3),
        paced_rate: 1000,
        paced_seconds: Duration::from_secs(10),
        history_runs: 100_000,
        outbound_requests: 2_000,
        cluster_runs: 5_000,
        cluster_lateness_jobs: 1000,
        cluster_lateness_seconds: 20,
        cluster_rescues: 5,
        soak_runs: 1_000_000,
        soak_jobs: 10_000,
    }
}

fn quick() -> Sizes {
    Sizes {
        throughput_runs: 200,
        concurrency: vec![1, 8],
        lateness_jobs: 20,
        lateness_seconds: 2,
        cancels: 3,
        reloads: 2,
        startup_jobs: 20,
        kernel_bytes: 1 << 20,
        memory_jobs: 10,
        idle_quiet: Duration::from_secs(1),
        sandbox_runs: 100,
        trigger_connections: vec![1, 4],
        trigger_seconds: Duration::from_millis(250),
        paced_rate: 1000,
        paced_seconds: Duration::from_millis(300),
        history_runs: 2_000,
        outbound_requests: 20,
        cluster_runs: 100,
        cluster_lateness_jobs: 20,
        cluster_lateness_seconds: 3,
        cluster_rescues: 1,
        soak_runs: 20_000,
        soak_jobs: 200,
    }
}

/// Runs the chosen sections in order, calling `progress` as each begins.
pub fn run(options: &Options, mut progress: impl FnMut(Section)) -> anyhow::Result<Report> {
    let mut sizes = if options.quick { quick() } else { full() };
    if !options.concurrency.is_empty() {
        sizes.concurrency = options.concurrency.clone();
    }
    let sizes = &sizes;
    let mut report = Report::new(options.quick);
    let mut sections = options.sections.clone();
    sections.sort();
    sections.dedup();
    // Fail before minutes of other sections, not after them.
    check_setup(options, &sections)?;
    let runtime = Arc::new(Runtime::new()?);
    for section in sections {
        progress(section);
        let figures = match section {
            Section::Throughput => daemon::throughput(&runtime, sizes)?,
            Section::Lateness => daemon::lateness(&runtime, sizes)?,
            Section::Cancel => sandbox::cancel(&runtime, sizes)?,
            Section::Reload => daemon::reload(&runtime, sizes)?,
            Section::Startup => daemon::startup(&runtime, sizes)?,
            Section::Kernel => kernel::compare(&runtime, sizes, &options.kernel)?,
            Section::Memory => memory::measure(&runtime, sizes, &options.wasmcron)?,
            Section::Floor => floor::compare(&runtime, sizes)?,
            Section::Trigger => trigger::measure(sizes, &options.wasmcron)?,
            Section::History => history::measure(sizes, &options.wasmcron)?,
            Section::Outbound => outbound::compare(&runtime, sizes, &options.probe)?,
            Section::Cluster => cluster::measure(sizes, &options.wasmcron)?,
            Section::Soak => soak::measure(sizes, &options.wasmcron)?,
        };
        report.figures.extend(figures);
    }
    let value = |id: &str| report.figures.iter().find(|f| f.id == id).map(|f| f.value);
    if let (Some(end_to_end), Some(bare)) = (value("per_run.end_to_end"), value("per_run.bare")) {
        let mut ratio =
            Figure::new("per_run.end_to_end_ratio", "end-to-end per-run cost ÷ bare loop", end_to_end / bare, "×")
                .at_most(2.0);
        if let Some(record) = value("per_run.record") {
            ratio = ratio.detail(format!(
                "the bare loop plus the durable record alone come to {:.2}×; end to end is {:.2}× that",
                (bare + record) / bare,
                end_to_end / (bare + record)
            ));
        }
        report.figures.push(ratio);
    }
    Ok(report)
}

/// Whether what the chosen sections need from outside is there.
fn check_setup(options: &Options, sections: &[Section]) -> Result<(), Setup> {
    if sections.contains(&Section::Kernel) && !options.kernel.is_file() {
        return Err(Setup(format!(
            "the kernel section needs the SHA-256 kernel built to wasm, and {} is not there: build it with \
             `plugins/build.sh hash-kernel` in the repository, pass --kernel FILE, or pick other sections with --only",
            options.kernel.display()
        )));
    }
    if sections.contains(&Section::Outbound) && !options.probe.is_file() {
        return Err(Setup(format!(
            "the outbound section needs the test probe built as a component, and {} is not there: build it with \
             `cargo build --release --target wasm32-wasip2 --manifest-path tests/guests/Cargo.toml`, pass --probe FILE, \
             or pick other sections with --only",
            options.probe.display()
        )));
    }
    let child = sections.iter().find(|s| {
        matches!(s, Section::Memory | Section::Trigger | Section::History | Section::Cluster | Section::Soak)
    });
    if let Some(section) = child
        && !options.wasmcron.is_file()
    {
        return Err(Setup(format!(
            "the {} section starts `wasmcron run`, and {} is not there: build it with \
             `cargo build --release -p wasmcron`, pass --wasmcron PATH, or pick other sections with --only",
            section.name(),
            options.wasmcron.display()
        )));
    }
    Ok(())
}
