//! The floor under wasmcron's per-run cost: the same trivial module in a
//! bare wasmtime loop — one engine (pooling allocator tuned as wasmcron's,
//! copy-on-write memory images), one `InstancePre`, then per run a store
//! with a default WASI context, instantiate, call `_start`. No limits, no
//! output capture, no async, no records. Beside it, the same module through
//! wasmcron's sandbox (`Runtime::run`, with everything a run has), and the
//! durable record alone: each run's two row writes through the store
//! interface, with no sandbox, scheduler or run tasks around them.

use std::sync::Arc;

use anyhow::ensure;
use wasmcron::config::JobSpec;
use wasmcron::record::{RunStatus, Trigger};
use wasmcron::runtime::{RunContext, RunControl, Runtime};
use wasmcron::store::{Finished, NewRun, RunQuery, StoreUrl};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::report::{Figure, cpu_time, us};
use crate::suite::{Sizes, TRIVIAL_WAT};

/// Runs recorded per transaction by `record_loop`: about what the store's
/// actor commits together at the best throughput.
const RECORD_BATCH: usize = 64;

/// The pooling allocator as wasmcron tunes it, for the bare loop to start
/// from the same floor. Mirrors `tuned_pool` in host/src/runtime/engine.rs
/// (a freed slot keeps 256 KiB of memory and table resident, reset in
/// place, with `PAGEMAP_SCAN` where the kernel has it): change both together.
fn tuned_pool() -> PoolingAllocationConfig {
    const KEEP_RESIDENT: usize = 256 << 10;
    let mut pool = PoolingAllocationConfig::new();
    pool.linear_memory_keep_resident(KEEP_RESIDENT).table_keep_resident(KEEP_RESIDENT).pagemap_scan(Enabled::Auto);
    pool
}

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
        let mut store = wasmtime::Store::new(&engine, WasiCtxBuilder::new().build_p1());
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
/// then the outcome with its output — through the store interface, against
/// a real SQLite file; CPU time of the whole process per run. Each batch's
/// calls are made at once, so the store thread commits them together, as
/// it does under load. Inserting the pending rows is not timed (the
/// throughput section queues them beforehand too).
fn record_loop(runs: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    // One worker makes the calls, as fast as it can; the store thread
    // commits whatever has queued meanwhile, as under load. (A
    // current-thread runtime would wait for each answer on a blocking
    // task, as the CLI does: not the daemon's path.)
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let store = tokio.block_on(StoreUrl::resolve(None, dir.path())?.open())?;
    let now = chrono::Utc::now();
    let ids = tokio.block_on(store.insert_runs(vec![NewRun::pending("trivial", Trigger::Manual, now); runs]))?;
    let sha = "0".repeat(64);
    let cpu = cpu_time();
    tokio.block_on(async {
        for batch in ids.chunks(RECORD_BATCH) {
            let mut started = tokio::task::JoinSet::new();
            for &id in batch {
                let (store, sha) = (store.clone(), sha.clone());
                started.spawn(async move { store.start_run(id, chrono::Utc::now(), sha).await });
            }
            started.join_all().await.into_iter().collect::<Result<(), _>>()?;
            let mut finished = tokio::task::JoinSet::new();
            for &id in batch {
                let store = store.clone();
                let outcome = Finished {
                    status: RunStatus::Succeeded,
                    ended_at: chrono::Utc::now(),
                    exit_code: Some(0),
                    error: None,
                    fuel_used: None,
                    stdout: b"ok\n".to_vec(),
                    stderr: Vec::new(),
                    output_dropped: 0,
                };
                finished.spawn(async move { store.finish_run(id, outcome).await });
            }
            finished.join_all().await.into_iter().collect::<Result<(), _>>()?;
        }
        anyhow::Ok(())
    })?;
    let cpu = us(cpu_time() - cpu) / runs as f64;
    let query = RunQuery { status: Some(RunStatus::Succeeded), limit: u32::MAX, ..Default::default() };
    let recorded = tokio.block_on(store.runs(query))?.len();
    ensure!(recorded == runs, "the record loop recorded {recorded} of {runs} runs");
    Ok(cpu)
}

pub(crate) fn compare(runtime: &Arc<Runtime>, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
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
            "{} runs, {RECORD_BATCH} per transaction, through the store interface, all threads; \
             bare loop + record = {:.1} µs, {:.2}× the bare loop",
            sizes.throughput_runs,
            bare + record,
            (bare + record) / bare
        )),
    ])
}
