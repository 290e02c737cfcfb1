//! (f) A CPU-bound kernel — SHA-256 over 64 MiB of generated data — from
//! one source file, compiled natively into this binary and to wasm
//! (`plugins/hash-kernel`), run natively, under wasmcron without fuel, and
//! with fuel. Each is the best of three; the digests must agree.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use super::Sizes;
use super::report::{Figure, ms};
use crate::config::JobSpec;
use crate::runtime::{RunContext, RunControl, Runtime};

#[path = "../../../plugins/hash-kernel/src/sha256.rs"]
mod sha256;

const ROUNDS: usize = 3;

pub(super) fn compare(runtime: &Arc<Runtime>, sizes: &Sizes, module: &Path) -> anyhow::Result<Vec<Figure>> {
    let bytes = std::fs::read(module).with_context(|| {
        format!("reading the kernel module {}: build it with `plugins/build.sh hash-kernel`", module.display())
    })?;
    let len = sizes.kernel_bytes;
    let mut native = Duration::MAX;
    let mut expected = String::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        expected = sha256::hex(&std::hint::black_box(sha256::work(std::hint::black_box(len))));
        native = native.min(started.elapsed());
    }
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let wasm = |metered: bool| -> anyhow::Result<Duration> {
        let compiled = runtime.compile(&bytes, metered)?;
        let mut job = JobSpec::for_bare_module("hash-kernel".into(), module.to_owned());
        job.env = vec![("KERNEL_BYTES".into(), len.to_string())];
        job.limits.memory = (2 * len as u64 + (16 << 20)).next_power_of_two();
        job.limits.timeout = Duration::from_secs(300);
        job.limits.fuel = metered.then_some(u64::MAX / 2);
        let mut best = Duration::MAX;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let report = tokio.block_on(runtime.run(
                &compiled,
                &job,
                &RunContext::manual(0, Vec::new()),
                &RunControl::new(job.limits.timeout),
            ));
            best = best.min(started.elapsed());
            let digest = String::from_utf8_lossy(&report.stdout).trim().to_owned();
            ensure!(report.outcome.is_success(), "the wasm kernel failed: {:?} {}", report.outcome, digest);
            ensure!(digest == expected, "the wasm kernel printed {digest:?}, natively {expected:?}");
        }
        Ok(best)
    };
    let unmetered = wasm(false)?;
    let metered = wasm(true)?;
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
