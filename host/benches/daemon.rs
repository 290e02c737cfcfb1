//! End-to-end daemon benchmarks through the real scheduler, store thread
//! and sandbox (no HTTP, no CLI):
//!
//! - throughput: N runs of a trivial job queued as pending rows, then run
//!   and recorded durably, at a given concurrency cap;
//! - fire lateness: 1,000 jobs on `@every 1s` for 10 s; lateness is each
//!   run's recorded `started_at` minus its `scheduled_for`;
//! - reload latency: a 100 KB module replaced (write, rename) under a
//!   running host, until the host records the new version in service;
//! - start-up: loading 1,000 declared jobs with a cold and a warm compile cache.
//!
//! Run: `cargo bench -p wasmcron --bench daemon`. Prints a Markdown table.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sha2::{Digest, Sha256};
use wasmcron::clock::Clock;
use wasmcron::record::{RunStatus, Trigger};
use wasmcron::registry::Registry;
use wasmcron::runtime::{CompileCache, Runtime, hex};
use wasmcron::scheduler::{ReloadConfig, Scheduler, SchedulerConfig};
use wasmcron::store::{NewRun, RunFilter, Store, StoreHandle};

const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\10\00\00\00\03\00\00\00")
  (data (i32.const 16) "ok\0a")
  (func (export "_start") (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

fn open_count(state: &Path) -> i64 {
    let conn = rusqlite::Connection::open(state.join("wasmcron.db")).unwrap();
    conn.query_row("SELECT count(*) FROM runs WHERE status IN ('pending', 'running')", [], |r| r.get(0)).unwrap()
}

/// Runs the host on `jobs` until `done` says stop; returns the wall time.
fn host(
    runtime: &Arc<Runtime>,
    jobs: &Path,
    state: &Path,
    max_running: usize,
    done: impl Fn() -> bool + Send + 'static,
) -> Duration {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let registry = Registry::load(runtime, jobs, None).unwrap();
    let (store, thread) = StoreHandle::spawn(Store::open(state).unwrap());
    let config = SchedulerConfig { max_running, ..Default::default() };
    let scheduler = Scheduler::new(runtime.clone(), store, Clock::System, config, registry.jobs);
    let started = Instant::now();
    tokio
        .block_on(scheduler.run(async move {
            while !done() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }))
        .unwrap();
    let took = started.elapsed();
    drop(tokio);
    thread.join().unwrap();
    took
}

fn throughput(runtime: &Arc<Runtime>, runs: usize, max_running: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (jobs, state) = (dir.path().join("jobs"), dir.path().join("state"));
    std::fs::create_dir(&jobs).unwrap();
    std::fs::write(jobs.join("hello.wat"), HELLO).unwrap();
    let store = Store::open(&state).unwrap();
    let now = Utc::now();
    store
        .transaction(|s| {
            for _ in 0..runs {
                s.insert_run(&NewRun::new("hello", RunStatus::Pending, Trigger::Manual, now))?;
            }
            Ok(())
        })
        .unwrap();
    drop(store);
    let watched = state.clone();
    let took = host(runtime, &jobs, &state, max_running, move || open_count(&watched) == 0);
    let store = Store::open(&state).unwrap();
    let succeeded =
        store.runs(&RunFilter { status: Some(RunStatus::Succeeded), limit: u32::MAX, ..Default::default() });
    assert_eq!(succeeded.unwrap().len(), runs);
    runs as f64 / took.as_secs_f64()
}

fn lateness(runtime: &Arc<Runtime>, jobs_count: usize, seconds: u64) -> (usize, Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let (jobs, state) = (dir.path().join("jobs"), dir.path().join("state"));
    std::fs::create_dir(&jobs).unwrap();
    std::fs::write(dir.path().join("hello.wat"), HELLO).unwrap();
    for i in 0..jobs_count {
        std::fs::write(
            jobs.join(format!("job{i:04}.toml")),
            "module = \"../hello.wat\"\nschedule = \"@every 1s\"\noverlap = \"allow\"",
        )
        .unwrap();
    }
    let until = Instant::now() + Duration::from_secs(seconds);
    host(runtime, &jobs, &state, 64, move || Instant::now() >= until);
    let runs = Store::open(&state).unwrap().runs(&RunFilter { limit: u32::MAX, ..Default::default() }).unwrap();
    let mut late: Vec<Duration> = runs
        .iter()
        .filter(|r| r.trigger == Trigger::Schedule)
        .filter_map(|r| (r.started_at? - r.scheduled_for).to_std().ok())
        .collect();
    late.sort();
    (runs.len(), late)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A module of about 100 KB: `hello` plus a data segment of `filler` bytes.
fn big_module(version: usize) -> String {
    let filler: String = (0..100_000).map(|i| char::from(b'a' + ((i * 7 + version) % 26) as u8)).collect();
    HELLO.replacen(
        "(memory (export \"memory\") 1)",
        &format!("(memory (export \"memory\") 2)\n  (data (i32.const 1024) \"{filler}\")"),
        1,
    )
}

fn reload_latency(runtime: &Arc<Runtime>, rounds: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let (jobs, state) = (dir.path().join("jobs"), dir.path().join("state"));
    std::fs::create_dir(&jobs).unwrap();
    let module = jobs.join("big.wat");
    std::fs::write(&module, big_module(0)).unwrap();
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let registry = Registry::load(runtime, &jobs, None).unwrap();
    let (store, thread) = StoreHandle::spawn(Store::open(&state).unwrap());
    let reload = ReloadConfig {
        jobs_dir: jobs.clone(),
        cache: None,
        debounce: Duration::from_millis(75),
        module_folders: registry.module_folders.clone(),
        reported: Default::default(),
    };
    let scheduler = Scheduler::new(runtime.clone(), store, Clock::System, SchedulerConfig::default(), registry.jobs)
        .with_reload(reload);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let host = tokio.spawn(scheduler.run(async move {
        let _ = stopped.await;
    }));
    std::thread::sleep(Duration::from_millis(300));
    let reader = Store::open(&state).unwrap();
    let mut latencies = Vec::new();
    for version in 1..=rounds {
        let text = big_module(version);
        let sha = hex(&Sha256::digest(text.as_bytes()));
        let temporary = jobs.join("big.tmp");
        std::fs::write(&temporary, &text).unwrap();
        let written = Instant::now();
        std::fs::rename(&temporary, &module).unwrap();
        while reader.job_state("big").unwrap().module_sha256.as_deref() != Some(sha.as_str()) {
            assert!(written.elapsed() < Duration::from_secs(10), "reload never happened");
            std::thread::sleep(Duration::from_micros(500));
        }
        latencies.push(written.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.send(()).unwrap();
    tokio.block_on(host).unwrap().unwrap();
    drop(tokio);
    thread.join().unwrap();
    latencies.sort();
    latencies
}

/// Loading 1,000 distinct modules: cold (empty cache), then warm.
fn start_up(runtime: &Arc<Runtime>, jobs_count: usize) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    for i in 0..jobs_count {
        let module = HELLO.replace("ok\\0a", &format!("{i:04}"));
        std::fs::write(jobs.join(format!("job{i:04}.wat")), module).unwrap();
        std::fs::write(jobs.join(format!("job{i:04}.toml")), "schedule = \"@hourly\"").unwrap();
    }
    let cache = CompileCache::open(&dir.path().join("cache")).unwrap();
    let time = || {
        let started = Instant::now();
        let registry = Registry::load(runtime, &jobs, Some(&cache)).unwrap();
        assert_eq!(registry.jobs.len(), jobs_count, "{:?}", registry.errors.first().map(|e| e.to_string()));
        (started.elapsed(), registry.compiled)
    };
    let (cold, compiled) = time();
    let (warm, recompiled) = time();
    assert_eq!((compiled, recompiled), (jobs_count, 0));
    (cold, warm)
}

fn main() {
    let runtime = Arc::new(Runtime::new().unwrap());
    println!("| figure | measured |\n|---|---|");
    for max_running in [1, 32] {
        let rate = throughput(&runtime, 20_000, max_running);
        println!(
            "| end-to-end throughput, 20,000 trivial runs queued, run and recorded, max_running {max_running} | {rate:.0} runs/s |"
        );
    }
    for jobs in [10, 1000] {
        let (recorded, late) = lateness(&runtime, jobs, 10);
        println!(
            "| fire lateness, {jobs} jobs on @every 1s for 10 s ({} runs of {recorded} records) | p50 {}, p99 {}, max {} |",
            late.len(),
            ms(percentile(&late, 0.5)),
            ms(percentile(&late, 0.99)),
            ms(*late.last().unwrap())
        );
    }
    let latencies = reload_latency(&runtime, 20);
    println!(
        "| reload latency of a 100 KB module (rename into place → new version in service), 20 reloads, debounce 75 ms | p50 {}, max {} |",
        ms(percentile(&latencies, 0.5)),
        ms(*latencies.last().unwrap())
    );
    let (cold, warm) = start_up(&runtime, 1000);
    println!(
        "| start-up: load and compile 1,000 declared jobs | cold cache {}, warm cache {} ({:.1}x faster) |",
        ms(cold),
        ms(warm),
        cold.as_secs_f64() / warm.as_secs_f64()
    );
}
