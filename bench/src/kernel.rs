//! (f) A CPU-bound kernel — SHA-256 over 64 MiB of generated data — from
//! one source file, compiled natively into this binary and to wasm
//! (`plugins/hash-kernel`), run natively, under wasmcron without fuel, and
//! with fuel. Each is the best of five, taken in alternating rounds; the
//! digests must agree.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use wasmcron::config::JobSpec;
use wasmcron::runtime::{RunContext, RunControl, Runtime};

use crate::report::{Figure, ms};
use crate::suite::Sizes;

#[path = "../../plugins/hash-kernel/src/sha256.rs"]
mod sha256;

const ROUNDS: usize = 5;

pub(crate) fn compare(runtime: &Arc<Runtime>, sizes: &Sizes, module: &Path) -> anyhow::Result<Vec<Figure>> {
    let bytes = std::fs::read(module).with_context(|| {
        format!("reading the kernel module {}: build it with `plugins/build.sh hash-kernel`", module.display())
    })?;
    let len = sizes.kernel_bytes;
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut job = JobSpec::for_bare_module("hash-kernel".into(), module.to_owned());
    job.env = vec![("KERNEL_BYTES".into(), len.to_string())];
    job.limits.memory = (2 * len as u64 + (16 << 20)).next_power_of_two();
    job.limits.timeout = Duration::from_secs(300);
    let mut metered_job = job.clone();
    metered_job.limits.fuel = Some(u64::MAX / 2);
    let (unmetered_code, metered_code) = (runtime.compile(&bytes, false)?, runtime.compile(&bytes, true)?);
    let in_wasm = |compiled, job: &JobSpec, expected: &str| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let context = RunContext::manual(0, Vec::new());
        let report = tokio.block_on(runtime.run(compiled, job, &context, &RunControl::new(job.limits.timeout)));
        let took = started.elapsed();
        let digest = String::from_utf8_lossy(&report.stdout).trim().to_owned();
        ensure!(report.outcome.is_success(), "the wasm kernel failed: {:?} {}", report.outcome, digest);
        ensure!(digest == expected, "the wasm kernel printed {digest:?}, natively {expected:?}");
        Ok(took)
    };
    // Rounds alternate native and wasm, so that a slow spell on a shared
    // machine slows both sides alike; each side keeps its best.
    let (mut native, mut unmetered, mut metered) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let expected = sha256::hex(&std::hint::black_box(sha256::work(std::hint::black_box(len))));
        native = native.min(started.elapsed());
        unmetered = unmetered.min(in_wasm(&unmetered_code, &job, &expected)?);
        metered = metered.min(in_wasm(&metered_code, &metered_job, &expected)?);
    }
    let mib = len >> 20;
    let speed = |d: Duration| format!("{:.0} ms, {:.0} MiB/s", ms(d), len as f64 / (1 << 20) as f64 / d.as_secs_f64());
    Ok(vec![
        Figure::new(
            "kernel.unmetered",
            format!("SHA-256 of {mib} MiB under wasmcron without fuel, as a fraction of native speed"),
            native.as_secs_f64() / unmetered.as_secs_f64(),
            "× native",
        )
        .at_least(0.8)
        .detail(format!("wasm {}; native {}", speed(unmetered), speed(native))),
        Figure::new(
            "kernel.metered",
            "the same with fuel metering",
            native.as_secs_f64() / metered.as_secs_f64(),
            "× native",
        )
        .detail(format!("wasm {}", speed(metered))),
    ])
}
