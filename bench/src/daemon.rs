//! Sections that run the whole host path: the scheduler actor, the store
//! thread committing to a real SQLite file, and the sandbox.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use chrono::Utc;
use sha2::{Digest, Sha256};
use wasmcron::clock::Clock;
use wasmcron::events::Observer;
use wasmcron::record::{RunStatus, Trigger};
use wasmcron::registry::Registry;
use wasmcron::runtime::{CompileCache, Runtime};
use wasmcron::scheduler::{ReloadConfig, Scheduler, SchedulerConfig};
use wasmcron::store::{NewRun, RunQuery, Store, StoreUrl};

use crate::observe::{Ended, Lateness};
use crate::report::{Figure, cpu_time, ms, percentile, spread, this_thread_cpu, threads_cpu, us};
use crate::suite::{Sizes, TRIVIAL_WAT};

/// A host's tokio runtime and its store, open before the host runs so that
/// a section can fill the store first, and read it after.
struct Bench {
    // Declared before `tokio`, so dropped first: the store's thread ends
    // with the runtime still there to run it.
    store: Arc<dyn Store>,
    tokio: tokio::runtime::Runtime,
}

/// The thread name tokio gives its workers (`/proc` shows at most 15
/// bytes of a name).
const TOKIO_THREAD: &str = "tokio-rt-worker";
/// The store's thread (SQLite).
const STORE_THREAD: &str = "wasmcron-store";

/// Opens the default store (`sqlite:STATE/wasmcron.db`) on a runtime of its own.
fn open(state: &Path) -> anyhow::Result<Bench> {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let store = tokio.block_on(StoreUrl::resolve(None, state)?.open())?;
    Ok(Bench { store, tokio })
}

/// What a benchmark host took: wall time, and CPU time by thread.
struct Hosted {
    took: Duration,
    /// The calling thread: the scheduler actor (and the shutdown future).
    actor_cpu: Duration,
    /// tokio's workers: run tasks, the sandbox, channels.
    workers_cpu: Duration,
    /// The store thread: SQLite.
    store_cpu: Duration,
}

/// Runs a host on `jobs`, with `observers` on its run events, until
/// `shutdown` resolves; then it drains as `wasmcron run` does.
fn host(
    runtime: &Arc<Runtime>,
    bench: &Bench,
    jobs: &Path,
    config: SchedulerConfig,
    observers: Vec<Arc<dyn Observer>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Hosted> {
    let registry = Registry::load(runtime, jobs, None)?;
    ensure!(registry.errors.is_empty(), "bench jobs failed to load: {}", registry.errors[0]);
    let (scheduler, _handle) =
        Scheduler::new(runtime.clone(), bench.store.clone(), Clock::System, config, registry.jobs);
    let before = threads_cpu();
    let (started, actor_started) = (Instant::now(), this_thread_cpu());
    bench.tokio.block_on(scheduler.with_observers(observers).run(shutdown))?;
    let took = started.elapsed();
    let actor_cpu = this_thread_cpu().saturating_sub(actor_started);
    // Each tokio thread's CPU time while the host ran (the store was filled
    // on the same threads beforehand); read before the threads end.
    let (mut workers_cpu, mut store_cpu) = (Duration::ZERO, Duration::ZERO);
    for thread in threads_cpu() {
        let earlier = before.iter().find(|t| t.tid == thread.tid).map_or(Duration::ZERO, |t| t.cpu);
        let used = thread.cpu.saturating_sub(earlier);
        match thread.name.as_str() {
            TOKIO_THREAD => workers_cpu += used,
            STORE_THREAD => store_cpu += used,
            _ => {}
        }
    }
    Ok(Hosted { took, actor_cpu, workers_cpu, store_cpu })
}

/// (a) Trivial runs queued as pending rows, then run and recorded by the
/// host, at each concurrency cap.
pub(crate) fn throughput(runtime: &Arc<Runtime>, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    let runs = sizes.throughput_runs;
    let mut figures = Vec::new();
    struct Best {
        rate: f64,
        max_running: usize,
        cpu_per_run: f64,
        split: String,
    }
    let mut best = Best { rate: 0.0, max_running: 0, cpu_per_run: 0.0, split: String::new() };
    for &max_running in &sizes.concurrency {
        let dir = tempfile::tempdir()?;
        let (jobs, state) = (dir.path().join("jobs"), dir.path().join("state"));
        std::fs::create_dir(&jobs)?;
        std::fs::write(jobs.join("trivial.wat"), TRIVIAL_WAT)?;
        let bench = open(&state)?;
        let queue = vec![NewRun::pending("trivial", Trigger::Manual, Utc::now()); runs];
        let queued = bench.tokio.block_on(bench.store.insert_runs(queue))?;
        ensure!(queued.len() == runs, "queued {} of {runs} trivial runs", queued.len());
        // The host recovers the pending rows at start and runs them all;
        // it is told to stop once the last of them has ended.
        let ended = Arc::new(Ended::expecting(runs));
        let cpu = cpu_time();
        let config = SchedulerConfig { max_running, ..Default::default() };
        let until_ended = ended.clone();
        let hosted = host(runtime, &bench, &jobs, config, vec![ended], async move { until_ended.all().await })?;
        let (took, cpu) = (hosted.took, cpu_time() - cpu);
        let query = RunQuery { status: Some(RunStatus::Succeeded), limit: u32::MAX, ..Default::default() };
        let succeeded = bench.tokio.block_on(bench.store.runs(query))?.len();
        ensure!(succeeded == runs, "{succeeded} of {runs} trivial runs succeeded");
        let rate = runs as f64 / took.as_secs_f64();
        figures.push(
            Figure::new(
                format!("throughput.c{max_running}"),
                format!("throughput, trivial runs queued, run and recorded durably, max_running {max_running}"),
                rate,
                "runs/s",
            )
            .detail(format!(
                "{runs} runs in {:.2} s; CPU {:.1} µs per run",
                took.as_secs_f64(),
                us(cpu) / runs as f64
            )),
        );
        let cpu_per_run = us(cpu) / runs as f64;
        if rate > best.rate {
            let per_run = |cpu: Duration| us(cpu) / runs as f64;
            let split = format!(
                "store thread (SQLite) {:.1} µs, async workers (tasks, sandbox) {:.1} µs, scheduler actor {:.1} µs",
                per_run(hosted.store_cpu),
                per_run(hosted.workers_cpu),
                per_run(hosted.actor_cpu)
            );
            best = Best { rate, max_running, cpu_per_run, split };
        }
    }
    figures.push(
        Figure::new("throughput.best", "throughput, best of the caps above", best.rate, "runs/s")
            .at_least(20_000.0)
            .detail(format!("at max_running {}", best.max_running)),
    );
    figures.push(
        Figure::new(
            "per_run.end_to_end",
            "per-run CPU cost end to end (queue, sandbox, durable record), all threads",
            best.cpu_per_run,
            "µs",
        )
        .detail(format!("at max_running {}, the best throughput above; by thread: {}", best.max_running, best.split)),
    );
    Ok(figures)
}

/// (b) Jobs on `@every 1s`, all due on the same whole second, timed at
/// each stage by a probe on the host's run events.
pub(crate) fn lateness(runtime: &Arc<Runtime>, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    let (count, seconds) = (sizes.lateness_jobs, sizes.lateness_seconds);
    let dir = tempfile::tempdir()?;
    let (jobs, state) = (dir.path().join("jobs"), dir.path().join("state"));
    std::fs::create_dir(&jobs)?;
    std::fs::write(dir.path().join("trivial.wat"), TRIVIAL_WAT)?;
    for i in 0..count {
        std::fs::write(
            jobs.join(format!("job{i:04}.toml")),
            "module = \"../trivial.wat\"\nschedule = \"@every 1s\"\noverlap = \"allow\"",
        )?;
    }
    let bench = open(&state)?;
    let probe = Arc::new(Lateness::default());
    // Start just after a whole second, so that the host's own start-up
    // (loading the declarations, recovery) is over long before the first
    // fire: this figure is lateness in service. A fire due while the host
    // is still starting is late by the rest of the start-up, which the
    // `startup` section measures.
    let past_second = Duration::from_nanos(u64::from(Utc::now().timestamp_subsec_nanos() % 1_000_000_000));
    std::thread::sleep(Duration::from_secs(1) - past_second);
    let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let config = SchedulerConfig { max_running: 256, ..Default::default() };
    // A tokio timer is made in its runtime: this one once `host` polls it.
    let shutdown = async move { tokio::time::sleep_until(until).await };
    host(runtime, &bench, &jobs, config, vec![probe.clone()], shutdown)?;
    let mut samples = probe.take();
    for stage in [&mut samples.fired, &mut samples.recorded, &mut samples.started] {
        stage.sort();
    }
    ensure!(!samples.fired.is_empty(), "no job fired in {seconds} s");
    let about = format!("{count} jobs on @every 1s for {seconds} s, max_running 256");
    let p99 = |id: &str, figure: String, sorted: &[Duration]| {
        Figure::new(id, figure, ms(percentile(sorted, 0.99)), "ms").detail(spread(sorted))
    };
    Ok(vec![
        p99("lateness.fired.p99", format!("fire lateness p99, due → overlap policy applied ({about})"), &samples.fired)
            .at_most(2.0),
        p99("lateness.recorded.p99", "… → run's row committed as pending".into(), &samples.recorded),
        p99("lateness.started.p99", "… → guest's instantiation starting".into(), &samples.started),
    ])
}

/// A module of at least `size` bytes, nearly all code: functions of a few
/// hundred bytes each (loads, arithmetic, stores in a loop), about the
/// shape of compiled Rust or C.
pub(crate) fn code_module(size: usize, version: usize) -> anyhow::Result<Vec<u8>> {
    let build = |functions: usize| {
        let mut text = TRIVIAL_WAT.trim_end().strip_suffix(")").expect("a module in parentheses").to_owned();
        for i in 0..functions {
            text.push_str("\n  (func (param i32 i32) (result i32) (local i32)\n    (loop $again");
            for step in 0..6 {
                let (offset, factor) = ((i * 8 + step * 4) % 4096, i * 31 + step * 7 + version);
                text.push_str(&format!(
                    "\n      local.get 0 i32.load offset={offset} local.get 1 i32.add local.get 2 i32.xor local.set 2
      local.get 0 local.get 2 i32.const {factor} i32.mul i32.const {step} i32.rotl i32.store offset={offset}"
                ));
            }
            text.push_str("\n      local.get 1 i32.const 1 i32.sub local.tee 1 br_if $again)\n    local.get 2)");
        }
        text.push(')');
        wat::parse_str(&text)
    };
    // Estimate from a sample, then top up until the module is big enough.
    let per_function = build(100)?.len() / 100;
    let mut functions = size / per_function;
    loop {
        let module = build(functions)?;
        if module.len() >= size {
            return Ok(module);
        }
        functions += (size - module.len()) / per_function + 1;
    }
}

/// (d) A 100 KB module replaced (written beside, renamed into place) under
/// a running host, until the host records the new version in service.
pub(crate) fn reload(runtime: &Arc<Runtime>, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    let (jobs, state) = (dir.path().join("jobs"), dir.path().join("state"));
    std::fs::create_dir(&jobs)?;
    let module = jobs.join("big.wasm");
    let first = code_module(100_000, 0)?;
    let size = first.len();
    let compiling = Instant::now();
    runtime.compile(&first, false)?;
    let compile = compiling.elapsed();
    std::fs::write(&module, first)?;
    // The default of `wasmcron run --debounce`.
    let debounce = Duration::from_millis(75);
    let bench = open(&state)?;
    let registry = Registry::load(runtime, &jobs, None)?;
    let reload = ReloadConfig {
        jobs_dir: jobs.clone(),
        cache: None,
        debounce,
        module_folders: registry.module_folders.clone(),
        reported: Default::default(),
    };
    let config = SchedulerConfig::default();
    let (scheduler, _handle) =
        Scheduler::new(runtime.clone(), bench.store.clone(), Clock::System, config, registry.jobs);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // On a thread of its own, as `Scheduler::run` asks; this one polls the store.
    let tokio = bench.tokio.handle().clone();
    let host = std::thread::spawn(move || {
        tokio.block_on(scheduler.with_reload(reload).run(async move {
            let _ = stopped.await;
        }))
    });
    std::thread::sleep(Duration::from_millis(300));
    let in_service = || -> anyhow::Result<Option<String>> {
        let mut states = bench.tokio.block_on(bench.store.job_states())?;
        Ok(states.remove("big").and_then(|state| state.module_sha256))
    };
    let mut latencies = Vec::new();
    for version in 1..=sizes.reloads {
        let bytes = code_module(100_000, version)?;
        let sha = format!("{:x}", Sha256::digest(&bytes));
        let temporary = jobs.join("big.tmp");
        std::fs::write(&temporary, &bytes)?;
        let written = Instant::now();
        std::fs::rename(&temporary, &module)?;
        while in_service()?.as_deref() != Some(sha.as_str()) {
            ensure!(written.elapsed() < Duration::from_secs(10), "the host did not reload big.wasm within 10 s");
            std::thread::sleep(Duration::from_micros(500));
        }
        latencies.push(written.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = stop.send(());
    host.join().map_err(|_| anyhow::anyhow!("the scheduler's thread panicked"))??;
    latencies.sort();
    Ok(vec![
        Figure::new(
            "reload.max",
            format!(
                "reload: a {} KB module renamed into place → new version in service, debounce {} ms",
                size / 1000,
                debounce.as_millis()
            ),
            ms(*latencies.last().context("no reloads")?),
            "ms",
        )
        .at_most(150.0)
        .detail(format!("{}; compiling it alone takes {:.0} ms", spread(&latencies), ms(compile))),
    ])
}

/// (e) A host starting with 1,000 declared jobs (distinct modules): load
/// and compile them, open the store and record what loaded, recover; cold,
/// then with the cache warm.
pub(crate) fn startup(runtime: &Arc<Runtime>, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    let count = sizes.startup_jobs;
    let dir = tempfile::tempdir()?;
    let jobs = dir.path().join("jobs");
    crate::suite::declare_distinct_jobs(&jobs, count)?;
    let cache = CompileCache::open(&dir.path().join("cache"))?;
    let start = |state: &Path| -> anyhow::Result<(Duration, usize)> {
        let started = Instant::now();
        let registry = Registry::load(runtime, &jobs, Some(&cache))?;
        ensure!(registry.jobs.len() == count, "{} of {count} jobs loaded", registry.jobs.len());
        let compiled = registry.compiled;
        let bench = open(state)?;
        bench.tokio.block_on(bench.store.record_loads(registry.loads(), Utc::now()))?;
        let config = SchedulerConfig::default();
        let (scheduler, _handle) =
            Scheduler::new(runtime.clone(), bench.store.clone(), Clock::System, config, registry.jobs);
        bench.tokio.block_on(scheduler.run(std::future::ready(())))?;
        Ok((started.elapsed(), compiled))
    };
    let (cold, compiled) = start(&dir.path().join("cold"))?;
    let (warm, recompiled) = start(&dir.path().join("warm"))?;
    ensure!(compiled == count && recompiled == 0, "compiled {compiled} cold and {recompiled} warm");
    Ok(vec![
        Figure::new("startup.cold", format!("start-up with {count} declared jobs, cold compile cache"), ms(cold), "ms"),
        Figure::new("startup.warm", format!("start-up with {count} declared jobs, warm compile cache"), ms(warm), "ms")
            .at_most(1000.0)
            .detail(format!("{:.1}× faster than cold", cold.as_secs_f64() / warm.as_secs_f64())),
    ])
}
