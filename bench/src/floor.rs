//! The floor under wasmcron's per-run cost: the same trivial module in a
//! bare wasmtime loop — one engine (pooling allocator tuned as wasmcron's,
//! copy-on-write memory images), one `InstancePre`, then per run a store
//! with a default WASI context, instantiate, call `_start`. No limits, no
//! output capture, no async, no records. Beside it, the same module through
//! wasmcron's sandbox (`Runtime::run`, with everything a run has), and the
//! durable record alone: each run's two row writes on one thread, with no
//! sandbox, channels or tasks around them.

use std::sync::Arc;

use anyhow::ensure;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

use super::report::{Figure, cpu_time, this_thread_cpu, us};
use super::{Sizes, TRIVIAL_WAT};
use crate::config::JobSpec;
use crate::record::{RunStatus, Trigger};
use crate::runtime::{RunContext, RunControl, Runtime, tuned_pool};
use crate::store::{self, Finished, NewRun, RunFilter};

/// Runs recorded per transaction by `record_loop`: about what the store
/// thread commits together at the best throughput.
const RECORD_BATCH: usize = 64;

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

/// The two writes that make a run durable — `running` with its module hash,
/// then the outcome with its output — against a real SQLite file, in
/// batches as the store thread commits them; CPU time per run. Inserting
/// the pending rows is not timed (the throughput section queues them
/// beforehand too).
fn record_loop(runs: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let store = store::Store::open(dir.path())?;
    let now = chrono::Utc::now();
    let ids: Vec<i64> = store.transaction(|s| {
        (0..runs).map(|_| s.insert_run(&NewRun::new("trivial", RunStatus::Pending, Trigger::Manual, now))).collect()
    })?;
    let sha = "0".repeat(64);
    let cpu = this_thread_cpu();
    for batch in ids.chunks(RECORD_BATCH) {
        store.transaction(|s| batch.iter().try_for_each(|&id| s.start_run(id, chrono::Utc::now(), &sha)))?;
        store.transaction(|s| {
            batch.iter().try_for_each(|&id| {
                let finished = Finished {
                    status: RunStatus::Succeeded,
                    ended_at: chrono::Utc::now(),
                    exit_code: Some(0),
                    error: None,
                    fuel_used: None,
                    stdout: b"ok\n".to_vec(),
                    stderr: Vec::new(),
                    output_dropped: 0,
                };
                s.finish_run(id, &finished)
            })
        })?;
    }
    let cpu = us(this_thread_cpu() - cpu) / runs as f64;
    let filter = RunFilter { status: Some(RunStatus::Succeeded), limit: u32::MAX, ..Default::default() };
    let recorded = store.runs(&filter)?.len();
    ensure!(recorded == runs, "the record loop recorded {recorded} of {runs} runs");
    Ok(cpu)
}

pub(super) fn compare(runtime: &Arc<Runtime>, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    let runs = sizes.sandbox_runs;
    // Warm both paths (pool slots, page tables) before timing them.
    bare_loop(runs / 10 + 1)?;
    sandbox_loop(runtime, runs / 10 + 1)?;
    let bare = bare_loop(runs)?;
    let sandbox = sandbox_loop(runtime, runs)?;
    let record = record_loop(sizes.throughput_runs)?;
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
        Figure::new(
            "per_run.record",
            "per-run CPU cost of the durable record alone (the `running` and outcome row writes, SQLite)",
            record,
            "µs",
        )
        .detail(format!(
            "{} runs, {RECORD_BATCH} per transaction, one thread; bare loop + record = {:.1} µs, {:.2}× the bare loop",
            sizes.throughput_runs,
            bare + record,
            (bare + record) / bare
        )),
    ])
}
