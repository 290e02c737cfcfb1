//! Sandbox micro-benchmarks, through the library's real run path:
//!
//! - cancel latency: a tight loop cancelled mid-run, time until `run` returns;
//! - trivial run cost: instantiate `hello.wat` and run it to completion;
//! - fuel overhead: a CPU-bound kernel on the unmetered and the metered engine.
//!
//! Run: `cargo bench -p wasmcron --bench sandbox`. Prints a Markdown table.
//! Compare ratios within one run; absolute times drift between machines.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmcron::config::JobSpec;
use wasmcron::runtime::{CompiledJob, EPOCH_TICK, RunContext, RunControl, RunOutcome, Runtime};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

struct Bench {
    runtime: Runtime,
    tokio: tokio::runtime::Runtime,
}

impl Bench {
    fn compile(&self, name: &str, metered: bool) -> (CompiledJob, JobSpec) {
        let compiled = self.runtime.compile(&std::fs::read(fixture(name)).unwrap(), metered).unwrap();
        let mut job = JobSpec::for_bare_module(name.into(), fixture(name));
        job.limits.fuel = metered.then_some(u64::MAX / 2);
        (compiled, job)
    }

    /// Runs once; `cancel_after` cancels the run that long after it starts.
    fn run(&self, compiled: &CompiledJob, job: &JobSpec, cancel_after: Option<Duration>) -> (RunOutcome, Duration) {
        let context = RunContext::manual(1, Vec::new());
        let control = RunControl::new(Duration::from_secs(600));
        self.tokio.block_on(async {
            let started = Instant::now();
            let cancelled_at = cancel_after.map(|delay| {
                let control = control.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    control.cancel();
                    Instant::now()
                })
            });
            let report = self.runtime.run(compiled, job, &context, &control).await;
            let ended = Instant::now();
            let measured = match cancelled_at {
                Some(handle) => ended - handle.await.unwrap(),
                None => ended - started,
            };
            (report.outcome, measured)
        })
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let bench = Bench {
        runtime: Runtime::new().unwrap(),
        tokio: tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
    };
    println!("| figure | measured |\n|---|---|");

    let (spin, spin_job) = bench.compile("spin.wat", false);
    let mut latencies: Vec<Duration> = (0..50)
        .map(|_| {
            let (outcome, latency) = bench.run(&spin, &spin_job, Some(Duration::from_millis(20)));
            assert_eq!(outcome, RunOutcome::Cancelled);
            latency
        })
        .collect();
    latencies.sort();
    println!(
        "| cancel latency of a tight loop, 50 runs (epoch tick {}) | p50 {}, p99 {}, max {} |",
        ms(EPOCH_TICK),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap())
    );

    let (hello, hello_job) = bench.compile("hello.wat", false);
    let runs = 2000;
    let started = Instant::now();
    for _ in 0..runs {
        assert_eq!(bench.run(&hello, &hello_job, None).0, RunOutcome::Succeeded);
    }
    let per_run = started.elapsed() / runs;
    println!("| trivial run (hello.wat: instantiate, run, capture), {runs} in sequence | {} per run |", ms(per_run));

    let (plain, plain_job) = bench.compile("busy.wat", false);
    let (metered, metered_job) = bench.compile("busy.wat", true);
    let best = |compiled: &CompiledJob, job: &JobSpec| {
        (0..3)
            .map(|_| bench.run(compiled, job, None))
            .inspect(|(o, _)| assert!(o.is_success()))
            .map(|(_, d)| d)
            .min()
            .unwrap()
    };
    let unmetered_time = best(&plain, &plain_job);
    let metered_time = best(&metered, &metered_job);
    println!(
        "| CPU-bound kernel (busy.wat, 1e8 calls), best of 3 | unmetered {}, metered {}: fuel costs {:.2}x |",
        ms(unmetered_time),
        ms(metered_time),
        metered_time.as_secs_f64() / unmetered_time.as_secs_f64()
    );
}
