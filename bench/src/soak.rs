//! The soak (`--only soak`, never part of the default run): a million
//! trivial runs through one real `wasmcron run` — triggered over HTTP,
//! scheduled every second, and failed and retried — while its resident
//! memory, open file descriptors and database size are sampled; then
//! 10,000 declared jobs loaded, reloaded and served by another host.
//!
//! What it holds the host to: resident memory at the end within 10% of
//! what it was after the first 10,000 runs, the same file descriptors
//! open throughout, the database held to its size by retention
//! (`--keep-runs`, pruned every few seconds here), and every run ended.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use hyper::StatusCode;

use crate::child::Host;
use crate::http::{self, Getter, Target};
use crate::memory::rss;
use crate::report::Figure;
use crate::suite::{Sizes, TRIVIAL_WAT};

const MIB: f64 = (1 << 20) as f64;
/// Jobs on `* * * * * *`: this many scheduled runs a second.
const TICKERS: usize = 20;
/// One trigger in this many goes to the job that fails and is retried.
const FLAKY_EVERY: u64 = 10;
/// Runs kept per job, and how often the host prunes to it.
const KEEP_RUNS: &str = "100";
const PRUNE_EVERY: &str = "5s";

/// A job that always traps: with `attempts = 2`, two runs a trigger.
const FAILING_WAT: &str = r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#;

pub(crate) fn measure(sizes: &Sizes, wasmcron: &Path) -> anyhow::Result<Vec<Figure>> {
    let mut figures = million(sizes, wasmcron)?;
    figures.extend(many_jobs(sizes, wasmcron)?);
    Ok(figures)
}

/// One sample of the host process while the soak runs.
#[derive(Debug, Clone, Copy)]
struct Sample {
    runs: u64,
    rss: u64,
    fds: usize,
    db_bytes: u64,
}

fn million(sizes: &Sizes, wasmcron: &Path) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    let jobs = dir.path().join("jobs");
    std::fs::create_dir_all(&jobs)?;
    std::fs::write(jobs.join("flaky.wat"), FAILING_WAT)?;
    std::fs::write(jobs.join("flaky.toml"), "[retry]\nattempts = 2\nbackoff = \"50ms\"\nmax_backoff = \"50ms\"\n")?;
    for i in 0..TICKERS {
        std::fs::write(jobs.join(format!("tick{i:02}.wat")), TRIVIAL_WAT)?;
        std::fs::write(jobs.join(format!("tick{i:02}.toml")), "schedule = \"* * * * * *\"\n")?;
    }
    let client = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let args = ["--keep-runs", KEEP_RUNS, "--prune-every", PRUNE_EVERY].map(str::to_owned);
    let mut host = Host::start(wasmcron, dir.path(), &["work"], &args, &client)?;
    let pid = host.pid();
    let db = dir.path().join("state/wasmcron.db");
    let targets = [host.target("work")?, host.target("flaky")?];

    // Descriptors at rest, before any client connects: the end is compared with it.
    let at_rest = sample(&pid, &db)?;
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let senders: Vec<_> = (0..8).map(|_| client.spawn(send(targets.clone(), counts.clone(), stop.clone()))).collect();

    let started = Instant::now();
    let goal = sizes.soak_runs;
    let mut samples: Vec<Sample> = vec![];
    let mut after_first: Option<Sample> = None;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let sample = sample(&pid, &db)?;
        if after_first.is_none() && sample.runs >= 10_000 {
            after_first = Some(sample);
        }
        samples.push(sample);
        if samples.len().is_multiple_of(20) {
            eprintln!(
                "wasmcron-bench: soak: {} runs, {:.0} MiB resident, {} fds, database {:.1} MiB, {:?}",
                sample.runs,
                sample.rss as f64 / MIB,
                sample.fds,
                sample.db_bytes as f64 / MIB,
                started.elapsed()
            );
        }
        if sample.runs >= goal {
            break;
        }
        ensure!(started.elapsed() < Duration::from_secs(3600), "the soak made {} runs in an hour", sample.runs);
    }
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        client.block_on(sender).context("a sender panicked")??;
    }
    host.drain()?;
    // A last prune, then the end state.
    std::thread::sleep(Duration::from_secs(6));
    let end = sample(&pid, &db)?;
    let took = started.elapsed();
    let first = after_first.context("the soak ended before 10,000 runs")?;
    let unended = unended(&db)?;
    host.stop()?;
    ensure!(unended == 0, "{unended} runs were still pending or running after the soak drained");

    // Under load the clients' connections are open too; at rest, after
    // they closed, the host must hold what it held before they came.
    let loaded: Vec<usize> = samples.iter().filter(|s| s.runs >= first.runs).map(|s| s.fds).collect();
    let (fd_min, fd_max) = (*loaded.iter().min().unwrap_or(&0), *loaded.iter().max().unwrap_or(&0));
    // The database's size at half the runs, by when retention has held it
    // for minutes (SQLite reuses pruned pages; its high-water mark is what
    // arrives between two prunes), against its size at the end.
    let settled = samples.iter().find(|s| s.runs >= goal / 2).copied().unwrap_or(first);
    let db_max = samples.iter().map(|s| s.db_bytes).max().unwrap_or(0).max(end.db_bytes);
    let accepted = counts.accepted.load(Ordering::Relaxed);
    let refused = counts.refused.load(Ordering::Relaxed);
    Ok(vec![
        Figure::new(
            "soak.runs",
            "soak: trivial runs through one host (triggered, scheduled every second, failed and retried)",
            end.runs as f64,
            "runs",
        )
        .detail(format!(
            "{:.0} s, {:.0} runs/s; {accepted} triggers accepted ({} to the retried job), {refused} answered 429 and sent again; {TICKERS} jobs every second",
            took.as_secs_f64(),
            end.runs as f64 / took.as_secs_f64(),
            counts.flaky.load(Ordering::Relaxed),
        )),
        Figure::new(
            "soak.rss_growth",
            "soak: resident memory at the end ÷ after the first 10,000 runs",
            end.rss as f64 / first.rss as f64,
            "×",
        )
        .at_most(1.10)
        .detail(format!(
            "{:.1} MiB after {} runs, {:.1} MiB at the end, at most {:.1} MiB on the way",
            first.rss as f64 / MIB,
            first.runs,
            end.rss as f64 / MIB,
            samples.iter().map(|s| s.rss).max().unwrap_or(0) as f64 / MIB
        )),
        Figure::new(
            "soak.fds",
            "soak: open file descriptors at rest after the soak − before it",
            end.fds as f64 - at_rest.fds as f64,
            "fds",
        )
        .at_most(0.0)
        .detail(format!(
            "{} before, {} after; {fd_min}–{fd_max} under load (8 client connections open) over {} samples",
            at_rest.fds,
            end.fds,
            loaded.len()
        )),
        Figure::new(
            "soak.db_growth",
            "soak: database size at the end ÷ at half the runs (retention holding it)",
            end.db_bytes as f64 / settled.db_bytes as f64,
            "×",
        )
        .at_most(1.10)
        .detail(format!(
            "{:.1} MiB at {} runs, {:.1} MiB at the end, at most {:.1} MiB; --keep-runs {KEEP_RUNS} over {} jobs, pruned every {PRUNE_EVERY}",
            settled.db_bytes as f64 / MIB,
            settled.runs,
            end.db_bytes as f64 / MIB,
            db_max as f64 / MIB,
            TICKERS + 2
        )),
    ])
}

#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    flaky: AtomicU64,
    refused: AtomicU64,
}

/// Triggers on one keep-alive connection until `stop`: one in
/// `FLAKY_EVERY` to the failing job. A 429 (the queue is full) is waited
/// out and sent again, as a client should; anything else but 202 is an error.
async fn send(targets: [Target; 2], counts: Arc<Counts>, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let mut connection = http::connect(targets[0].addr).await?;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let flaky = n.is_multiple_of(FLAKY_EVERY);
        let target = &targets[usize::from(flaky)];
        let (status, body) = http::trigger(&mut connection, target).await?;
        match status {
            StatusCode::ACCEPTED => {
                counts.accepted.fetch_add(1, Ordering::Relaxed);
                if flaky {
                    counts.flaky.fetch_add(1, Ordering::Relaxed);
                }
            }
            StatusCode::TOO_MANY_REQUESTS => {
                counts.refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            other => anyhow::bail!("POST {} was answered {other}: {}", target.path, String::from_utf8_lossy(&body)),
        }
    }
    Ok(())
}

fn sample(pid: &str, db: &Path) -> anyhow::Result<Sample> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
    let db_bytes = size(db) + size(&db.with_extension("db-wal"));
    Ok(Sample { runs: runs_made(db)?, rss: rss(pid)?, fds, db_bytes })
}

/// Runs made so far: the highest run id (ids are never reused, pruned or not).
fn runs_made(db: &Path) -> anyhow::Result<u64> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let max: Option<i64> = conn.query_row("SELECT max(id) FROM runs", [], |row| row.get(0))?;
    Ok(max.unwrap_or(0) as u64)
}

fn unended(db: &Path) -> anyhow::Result<i64> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn.query_row("SELECT count(*) FROM runs WHERE status IN ('pending', 'running')", [], |row| row.get(0))?)
}

/// 10,000 declared jobs: how long a host takes to load them and be ready,
/// its memory, how long a reload of every declaration takes to be in
/// service, and a sample of them triggered and run.
fn many_jobs(sizes: &Sizes, wasmcron: &Path) -> anyhow::Result<Vec<Figure>> {
    let count = sizes.soak_jobs;
    let dir = tempfile::tempdir()?;
    let (jobs, modules) = (dir.path().join("jobs"), dir.path().join("modules"));
    std::fs::create_dir_all(&jobs)?;
    std::fs::create_dir_all(&modules)?;
    std::fs::write(modules.join("trivial.wat"), TRIVIAL_WAT)?;
    let declare = |hour: u32| -> anyhow::Result<()> {
        for i in 0..count {
            let text = format!("module = \"../modules/trivial.wat\"\nschedule = \"0 0 {hour} * * *\"\n");
            std::fs::write(jobs.join(format!("job{i:05}.toml")), text)?;
        }
        Ok(())
    };
    declare(3)?;
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    let mut host = Host::start(wasmcron, dir.path(), &[], &[], &client)?;
    let ready = started.elapsed();
    let rss_loaded = rss(&host.pid())?;
    let mut getter = client.block_on(Getter::connect(host.addr(), host.token()))?;
    let listed = Instant::now();
    let body = client.block_on(getter.get("/api/v1/jobs"))?;
    let list_took = listed.elapsed();
    let served = |body: &[u8], hour: u32| {
        let text = String::from_utf8_lossy(body);
        text.matches(&format!("\"schedule\":\"0 0 {hour} * * *\"")).count()
    };
    ensure!(served(&body, 3) == count, "the jobs view lists {} of {count} jobs", served(&body, 3));

    let reloading = Instant::now();
    declare(4)?;
    loop {
        let body = client.block_on(getter.get("/api/v1/jobs"))?;
        if served(&body, 4) == count {
            break;
        }
        ensure!(
            reloading.elapsed() < Duration::from_secs(600),
            "{count} changed declarations not in service in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let reload = reloading.elapsed();
    let rss_reloaded = rss(&host.pid())?;

    // Served: a sample of the jobs, triggered and run to success.
    let picked: Vec<String> = (0..count).step_by((count / 100).max(1)).map(|i| format!("job{i:05}")).collect();
    client.block_on(async {
        let mut connection = http::connect(host.addr()).await?;
        for job in &picked {
            let (status, body) = http::trigger(&mut connection, &host.target(job)?).await?;
            ensure!(status == StatusCode::ACCEPTED, "triggering {job}: {status} {}", String::from_utf8_lossy(&body));
        }
        anyhow::Ok(())
    })?;
    host.drain()?;
    let ran = picked.iter().try_fold(0, |n, job| {
        anyhow::Ok(n + host.runs(job)?.iter().filter(|r| r.status == wasmcron::record::RunStatus::Succeeded).count())
    })?;
    ensure!(ran == picked.len(), "{ran} of {} triggered jobs succeeded", picked.len());
    host.stop()?;
    Ok(vec![
        Figure::new(
            "soak.jobs_ready",
            format!("soak: {count} declared jobs, start to ready"),
            ready.as_secs_f64(),
            "s",
        )
        .detail(format!(
            "{:.0} MiB resident once loaded; GET /api/v1/jobs of all of them in {:.0} ms",
            rss_loaded as f64 / MIB,
            list_took.as_secs_f64() * 1000.0
        )),
        Figure::new(
            "soak.jobs_reload",
            format!("soak: all {count} declarations changed → every one in service"),
            reload.as_secs_f64(),
            "s",
        )
        .detail(format!(
            "{:.0} MiB resident after the reload; {} of them triggered and run to success",
            rss_reloaded as f64 / MIB,
            picked.len()
        )),
    ])
}
