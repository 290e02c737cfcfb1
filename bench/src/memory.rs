//! (g) Memory: an idle `wasmcron run` (a real child process) with no jobs
//! and with 1,000 declared jobs — its resident memory, and how often its
//! threads wake while nothing is due; and the resident memory each
//! concurrently running job adds, from guests parked in a `poll_oneoff` sleep.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use wasmcron::config::JobSpec;
use wasmcron::runtime::{RunContext, RunControl, RunOutcome, Runtime};
use wasmcron::store::StoreUrl;

use crate::report::Figure;
use crate::suite::{SLEEPER_WAT, Sizes};

const MIB: f64 = (1 << 20) as f64;

/// Resident set size of process `pid` ("self" for this one), in bytes.
pub(crate) fn rss(pid: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    Ok(kib * 1024)
}

/// Context switches so far of each thread of process `pid`, by thread id,
/// voluntary and not: each is a time the thread woke, or was woken, to run.
fn context_switches(pid: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut switches = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?;
        // A thread may end between the listing and the read: it has no count to give.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else { continue };
        let count = status
            .lines()
            .filter_map(|line| line.split_once(':'))
            .filter(|(key, _)| matches!(*key, "voluntary_ctxt_switches" | "nonvoluntary_ctxt_switches"))
            .map(|(_, count)| count.trim().parse::<u64>())
            .sum::<Result<u64, _>>()
            .context("a context-switch count in /proc/PID/task/TID/status is not a number")?;
        switches.insert(task.file_name().to_string_lossy().into_owned(), count);
    }
    Ok(switches)
}

/// How often process `pid`'s threads wake, per second, over `window`.
fn wakeups_per_second(pid: &str, window: Duration) -> anyhow::Result<f64> {
    let (before, started) = (context_switches(pid)?, Instant::now());
    std::thread::sleep(window);
    let (after, elapsed) = (context_switches(pid)?, started.elapsed());
    // A thread started in the window counts from zero; one that ended in it
    // takes its count along, so the sum can only understate.
    let woken: u64 =
        after.iter().map(|(tid, &count)| count.saturating_sub(before.get(tid).copied().unwrap_or(0))).sum();
    Ok(woken as f64 / elapsed.as_secs_f64())
}

/// An idle host's resident memory and wake-ups.
struct Idle {
    rss: u64,
    wakeups_per_s: f64,
}

/// Starts `wasmcron run` on `count` jobs none of which is due, waits until
/// it has loaded them and settled, then measures it, counting wake-ups over
/// `quiet`.
fn idle_host(wasmcron: &Path, dir: &Path, count: usize, quiet: Duration) -> anyhow::Result<Idle> {
    let (jobs, state) = (dir.join(format!("jobs{count}")), dir.join(format!("state{count}")));
    crate::suite::declare_distinct_jobs(&jobs, count)?;
    let mut child = Command::new(wasmcron)
        .args(["run", "--listen", "127.0.0.1:0", "--jobs"])
        .arg(&jobs)
        .arg("--state")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", wasmcron.display()))?;
    let pid = child.id().to_string();
    let result = (|| {
        wait_until_loaded(&state, count, || Ok(child.try_wait()?.is_none()))?;
        std::thread::sleep(Duration::from_secs(1));
        Ok(Idle { rss: rss(&pid)?, wakeups_per_s: wakeups_per_second(&pid, quiet)? })
    })();
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait()?;
    result
}

/// Waits until the host's store in `state` says `count` jobs are in
/// service, reading it as `wasmcron jobs` does; `alive` says whether the
/// host is still running.
fn wait_until_loaded(
    state: &Path,
    count: usize,
    mut alive: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let url = StoreUrl::resolve(None, state)?;
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    let mut store = None;
    loop {
        ensure!(started.elapsed() < Duration::from_secs(120), "the host did not load {count} jobs in 120 s");
        ensure!(alive()?, "the host exited while loading its jobs");
        // The host creates the store; opening it first would race its creation.
        if store.is_none() && url.exists() {
            store = tokio.block_on(url.open_existing()).ok();
        }
        if let Some(store) = &store {
            let states = tokio.block_on(store.job_states());
            if states.is_ok_and(|states| states.values().filter(|s| s.module_sha256.is_some()).count() >= count) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Extra resident memory per guest, with `count` guests asleep at once.
fn per_running_job(runtime: &Arc<Runtime>, count: usize) -> anyhow::Result<f64> {
    let compiled = runtime.compile(SLEEPER_WAT.as_bytes(), false)?;
    let job = Arc::new(JobSpec::for_bare_module("sleeper".into(), "sleeper.wat".into()));
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let compiled = Arc::new(compiled);
    // Warm the pool and the runtime with one run, so its one-off costs do
    // not count against the first guest.
    let warm = RunControl::new(Duration::from_millis(10));
    let outcome = tokio.block_on(runtime.run(&compiled, &job, &RunContext::manual(0, Vec::new()), &warm)).outcome;
    ensure!(outcome == RunOutcome::TimedOut, "the sleeper ended {outcome:?}");
    std::thread::sleep(Duration::from_millis(100));
    let before = rss("self")?;
    let controls: Vec<RunControl> = (0..count).map(|_| RunControl::new(Duration::from_secs(3600))).collect();
    let tasks: Vec<_> = controls
        .iter()
        .map(|control| {
            let (runtime, compiled, job, control) = (runtime.clone(), compiled.clone(), job.clone(), control.clone());
            tokio.spawn(async move {
                runtime.run(&compiled, &job, &RunContext::manual(0, Vec::new()), &control).await.outcome
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = rss("self")?;
    controls.iter().for_each(RunControl::cancel);
    for task in tasks {
        let outcome = tokio.block_on(task)?;
        ensure!(outcome == RunOutcome::Cancelled, "a sleeper ended {outcome:?}");
    }
    Ok(during.saturating_sub(before) as f64 / count as f64)
}

pub(crate) fn measure(runtime: &Arc<Runtime>, sizes: &Sizes, wasmcron: &Path) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    let empty = idle_host(wasmcron, dir.path(), 0, sizes.idle_quiet)?;
    let loaded = idle_host(wasmcron, dir.path(), sizes.startup_jobs, sizes.idle_quiet)?;
    let per_job = per_running_job(runtime, sizes.memory_jobs)?;
    Ok(vec![
        Figure::new("memory.idle_empty", "idle host, no jobs (resident)", empty.rss as f64 / MIB, "MiB"),
        Figure::new(
            "memory.idle_loaded",
            format!("idle host, {} jobs declared (resident)", sizes.startup_jobs),
            loaded.rss as f64 / MIB,
            "MiB",
        )
        .detail(format!(
            "{:.1} KiB per declared job",
            (loaded.rss - empty.rss.min(loaded.rss)) as f64 / 1024.0 / sizes.startup_jobs as f64
        )),
        Figure::new(
            "memory.idle_wakeups",
            format!("idle host, {} jobs declared (thread wake-ups)", sizes.startup_jobs),
            loaded.wakeups_per_s,
            "wake-ups/s",
        )
        .detail(format!(
            "context switches of all its threads over {} s, none due; {} wake-ups/s with no jobs",
            sizes.idle_quiet.as_secs(),
            super::report::number(empty.wakeups_per_s)
        )),
        Figure::new("memory.per_running_job", "resident memory per concurrently running job", per_job / 1024.0, "KiB")
            .detail(format!("{} trivial guests asleep at once, one 64 KiB page each", sizes.memory_jobs)),
    ])
}
