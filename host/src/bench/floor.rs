//! The floor under wasmcron's per-run cost: the same trivial module in a
//! bare wasmtime loop — one engine (pooling allocator tuned as wasmcron's,
//! copy-on-write memory images), one `InstancePre`, then per run a store
//! with a default WASI context, instantiate, call `_start`. No limits, no
//! output capture, no async, no records. Beside it, the same module through
//! wasmcron's sandbox (`Runtime::run`, with everything a run has).

use std::sync::Arc;

use anyhow::ensure;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

use super::report::{Figure, cpu_time, us};
use super::{Sizes, TRIVIAL_WAT};
use crate::config::JobSpec;
use crate::runtime::{RunContext, RunControl, Runtime, tuned_pool};

/// A bare wasmtime instantiate-and-call loop; CPU time per run.
fn bare_loop(runs: usize) -> anyhow::Result<f64> {
    let mut config = Config::new();
    config.memory_init_cow(true).allocation_strategy(InstanceAllocationStrategy::Pooling(tuned_pool()));
    let engine = Engine::new(&config)?;
    let module = Module::new(&engine, TRIVIAL_WAT)?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |cx| cx)?;
    let pre = linker.instantiate_pre(&module)?;
    let cpu = cpu_time();
    for _ in 0..runs {
        let mut store = Store::new(&engine, WasiCtxBuilder::new().build_p1());
        let instance = pre.instantiate(&mut store)?;
        instance.get_typed_func::<(), ()>(&mut store, "_start")?.call(&mut store, ())?;
    }
    Ok(us(cpu_time() - cpu) / runs as f64)
}

/// The same module through wasmcron's sandbox, one run after another.
fn sandbox_loop(runtime: &Runtime, runs: usize) -> anyhow::Result<f64> {
    let compiled = runtime.compile(TRIVIAL_WAT.as_bytes(), false)?;
    let job = JobSpec::for_bare_module("trivial".into(), "trivial.wat".into());
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let context = RunContext::manual(0, Vec::new());
    tokio.block_on(async {
        let cpu = cpu_time();
        for _ in 0..runs {
            let report = runtime.run(&compiled, &job, &context, &RunControl::new(job.limits.timeout)).await;
            ensure!(report.outcome.is_success() && report.stdout == b"ok\n", "the trivial run failed: {report:?}");
        }
        Ok(us(cpu_time() - cpu) / runs as f64)
    })
}

pub(super) fn compare(runtime: &Arc<Runtime>, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    let runs = sizes.sandbox_runs;
    // Warm both paths (pool slots, page tables) before timing them.
    bare_loop(runs / 10 + 1)?;
    sandbox_loop(runtime, runs / 10 + 1)?;
    let bare = bare_loop(runs)?;
    let sandbox = sandbox_loop(runtime, runs)?;
    Ok(vec![
        Figure::new("per_run.bare", "per-run CPU cost of a bare wasmtime instantiate-and-call loop", bare, "µs")
            .detail(format!("{runs} runs of the trivial module")),
        Figure::new(
            "per_run.sandbox",
            "per-run CPU cost of wasmcron's sandbox (limits, WASI context, output capture, async)",
            sandbox,
            "µs",
        )
        .detail(format!("{runs} runs, one after another")),
        Figure::new("per_run.sandbox_ratio", "sandbox per-run cost ÷ bare loop", sandbox / bare, "×").at_most(2.0),
    ])
}
