//! `wasmcron bench --job JOB`: a job author's sizing tool. Runs the job's
//! module N times through the real sandbox — as declared, and once more
//! metered to count its fuel — and reports run time, fuel and output
//! beside the declared limits, without recording anything in the store.
//! (wasmcron's own performance suite is the `wasmcron-bench` crate, run by
//! `cargo xtask bench`.)

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use super::Globals;
use crate::config::{self, JobSpec};
use crate::registry;
use crate::runtime::{CompiledJob, CredentialDirs, RunContext, RunControl, RunOutcome, Runtime};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job whose module to measure.
    #[arg(long)]
    pub job: String,
    /// How many runs.
    #[arg(short = 'n', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub runs: u32,
    /// A file whose bytes are each run's stdin.
    #[arg(long, value_name = "FILE")]
    pub payload: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    job: String,
    runs: u32,
    failures: u32,
    compile_ms: f64,
    run_ms: Stats,
    fuel_used: u64,
    output_bytes: u64,
    limits: Limits,
}

#[derive(Debug, Serialize)]
struct Stats {
    min: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

#[derive(Debug, Serialize)]
struct Limits {
    timeout_ms: f64,
    fuel: Option<u64>,
    output: u64,
}

pub fn run(globals: &Globals, args: Args) -> anyhow::Result<ExitCode> {
    let job = args.job.clone();
    job_bench(globals, &job, args)
}

fn job_bench(globals: &Globals, job: &str, args: Args) -> anyhow::Result<ExitCode> {
    let loaded = config::load_dir(&globals.jobs).with_context(|| format!("reading {}", globals.jobs.display()))?;
    let Some(spec) = loaded.jobs.into_iter().find(|j| j.name == job) else {
        bail!("no job named {job:?} loads from {}; see `wasmcron check`", globals.jobs.display());
    };
    let payload = match &args.payload {
        Some(path) => std::fs::read(path).with_context(|| format!("--payload {}", path.display()))?,
        None => Vec::new(),
    };
    // Its secrets are read as a host's runs read them.
    let runtime = Runtime::new()?.with_credentials(CredentialDirs::from_env(&globals.state));
    let bytes = registry::read_module(&spec).map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let (declared, _) = registry::compile(&runtime, &spec, &bytes, None).map_err(anyhow::Error::msg)?;
    let compile_ms = ms(started.elapsed());
    // The fuel count needs metered code; run it once on the metered engine.
    let mut metered_spec = spec.clone();
    metered_spec.limits.fuel = Some(spec.limits.fuel.unwrap_or(u64::MAX / 2));
    let (metered, _) = registry::compile(&runtime, &metered_spec, &bytes, None).map_err(anyhow::Error::msg)?;

    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut times = Vec::with_capacity(args.runs as usize);
    let mut failures = 0;
    let mut output_bytes = 0;
    for _ in 0..args.runs {
        let run = tokio.block_on(measure(&runtime, &declared.compiled, &spec, &payload));
        times.push(run.took);
        failures += u32::from(!run.outcome.is_success());
        output_bytes = output_bytes.max(run.output);
    }
    let fuel = tokio.block_on(measure(&runtime, &metered.compiled, &metered_spec, &payload)).fuel;
    times.sort();
    let pick = |p: f64| ms(times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1]);
    let report = Report {
        job: spec.name.clone(),
        runs: args.runs,
        failures,
        compile_ms,
        run_ms: Stats {
            min: ms(times[0]), p50: pick(0.5), p99: pick(0.99), max: ms(*times.last().expect("runs ≥ 1"))
        },
        fuel_used: fuel,
        output_bytes,
        limits: Limits { timeout_ms: ms(spec.limits.timeout), fuel: spec.limits.fuel, output: spec.limits.output },
    };
    print(&report, args.json)?;
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::from(super::FAILED) })
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// What one run measured.
struct Measured {
    outcome: RunOutcome,
    took: Duration,
    output: u64,
    fuel: u64,
}

async fn measure(runtime: &Runtime, compiled: &CompiledJob, spec: &JobSpec, payload: &[u8]) -> Measured {
    let started = Instant::now();
    let report = runtime
        .run(compiled, spec, &RunContext::manual(0, payload.to_vec()), &RunControl::new(spec.limits.timeout))
        .await;
    Measured {
        took: started.elapsed(),
        output: (report.stdout.len() + report.stderr.len()) as u64 + report.output_dropped,
        fuel: report.fuel_used.unwrap_or(0),
        outcome: report.outcome,
    }
}

fn print(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let limit_fuel = report.limits.fuel.map_or("none (unmetered)".to_owned(), |f| f.to_string());
    println!(
        "{}: {} runs, {} failed; compiled in {:.1} ms",
        report.job, report.runs, report.failures, report.compile_ms
    );
    println!(
        "  run time   min {:.3} ms   p50 {:.3} ms   p99 {:.3} ms   max {:.3} ms   (limits.timeout {:.0} ms)",
        report.run_ms.min, report.run_ms.p50, report.run_ms.p99, report.run_ms.max, report.limits.timeout_ms
    );
    println!("  fuel used  {}   (limits.fuel {limit_fuel})", report.fuel_used);
    println!("  output     {} bytes at most   (limits.output {} bytes)", report.output_bytes, report.limits.output);
    Ok(())
}
