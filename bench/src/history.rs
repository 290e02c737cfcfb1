//! The `history` section: the API's run list over a long history. A real
//! `wasmcron run` child serves a state database holding 100,000 recorded
//! runs (20 busy jobs and a rare one; about 5% failed; each with 200 bytes
//! of output), and each query the dashboard makes — the newest page, by
//! job, by status, by time window, a deep page by cursor, every attempt of
//! one fire, a search — is timed over HTTP, a page of 50 each.
//!
//! The runs are written straight into the SQLite file in one transaction
//! after the store has created its schema: inserting them through a host
//! would measure the host's write path (that is `throughput`), not reads.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use chrono::{DateTime, Utc};
use wasmcron::store::StoreUrl;

use crate::child::Host;
use crate::report::Figure;
use crate::suite::Sizes;

/// The target: a page of runs answered within this, whatever the filter.
const TARGET_MS: f64 = 50.0;
/// Timed requests per query shape.
const REQUESTS: usize = 20;
/// Busy jobs; their runs take turns.
const JOBS: usize = 20;
/// One run in this many is of the rare job.
const RARE_EVERY: usize = 10_000;

pub(crate) fn measure(sizes: &Sizes, wasmcron: &Path) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    let runs = sizes.history_runs;
    let newest = Utc::now() - chrono::Duration::seconds(60);
    fill(&state, runs, newest)?;
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Keep everything: the section is about reading a long history.
    let keep = ["--keep-runs", "100000000", "--keep-for", "3650d", "--keep-failed-for", "3650d"];
    let host = Host::start(wasmcron, dir.path(), &["job00", "rare"], &keep.map(str::to_owned), &client)?;
    let middle = newest - chrono::Duration::seconds(runs as i64 / 2);
    let hour_after = middle + chrono::Duration::hours(1);
    let deep_cursor = (runs / 50).max(2);
    let fire = first_attempt_of(runs, newest);
    // Each shape finds runs, except the last search: it reads them all to find none.
    let shapes: Vec<(&str, String)> = vec![
        ("the newest page", "/api/v1/runs".into()),
        ("one busy job", "/api/v1/runs?job=job07".into()),
        ("the rare job (one run in 10,000)", "/api/v1/runs?job=rare".into()),
        ("failed runs", "/api/v1/runs?status=failed".into()),
        ("one job's failed runs", "/api/v1/runs?job=job07&status=failed".into()),
        ("manual runs of one job", "/api/v1/runs?job=job03&trigger=manual".into()),
        (
            "an hour's window mid-history",
            format!("/api/v1/runs?since={}&until={}", rfc3339(middle), rfc3339(hour_after)),
        ),
        ("a deep page (by cursor, near the oldest)", format!("/api/v1/runs?cursor={deep_cursor}")),
        ("every attempt of one fire", format!("/api/v1/runs?job={}&scheduled_for={}", fire.0, rfc3339(fire.1))),
        ("search: an error's text", "/api/v1/runs?q=upstream".into()),
        ("search: text no run has (every run read)", "/api/v1/runs?q=no-such-text".into()),
    ];
    let mut figures = Vec::new();
    let mut worst = (0.0f64, "");
    for (what, path) in &shapes {
        let (times, listed) = client.block_on(host.time_get(path, REQUESTS))?;
        let expect_none = path.ends_with("no-such-text");
        ensure!((listed == 0) == expect_none, "GET {path} listed {listed} runs");
        let p50 = times[times.len() / 2].as_secs_f64() * 1000.0;
        let max = times.last().expect("timed").as_secs_f64() * 1000.0;
        if max > worst.0 {
            worst = (max, what);
        }
        figures.push(
            Figure::new(format!("history.{}", slug(what)), format!("run list over {runs} runs: {what}"), max, "ms")
                .detail(format!("p50 {p50:.2} ms, max of {REQUESTS}; GET {path}")),
        );
    }
    let worst_what = worst.1.to_owned();
    figures.insert(
        0,
        Figure::new(
            "history.worst",
            format!("run list over {runs} recorded runs, a page of 50, slowest query shape"),
            worst.0,
            "ms",
        )
        .at_most(TARGET_MS)
        .detail(format!("{worst_what}; {} shapes, {REQUESTS} requests each, over HTTP", shapes.len())),
    );
    host.stop()?;
    Ok(figures)
}

/// Creates the store's schema, then writes `runs` ended runs ending at
/// `newest`, one a second, in one transaction.
fn fill(state: &Path, runs: usize, newest: DateTime<Utc>) -> anyhow::Result<()> {
    std::fs::create_dir_all(state)?;
    let url = StoreUrl::resolve(None, state)?;
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        drop(url.open().await?);
        anyhow::Ok(())
    })?;
    let mut db = rusqlite::Connection::open(state.join("wasmcron.db")).context("opening the state database")?;
    let tx = db.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO runs (job, status, trigger, attempt, scheduled_for, started_at, ended_at, exit_code, error,
                               fuel_used, module_sha256, stdout, stderr, triggered_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        let output = "report line: 1234 rows processed, 0 skipped, checksum 9f2c5e1d\n".repeat(3);
        for i in 0..runs {
            let (job, scheduled_for, attempt) = run_at(i, runs, newest);
            let failed = i % 20 == 7;
            let trigger = match i % 10 {
                _ if attempt > 1 => "retry",
                3 => "manual",
                _ => "schedule",
            };
            let scheduled = micros(scheduled_for);
            insert.execute(rusqlite::params![
                job,
                if failed { "failed" } else { "succeeded" },
                trigger,
                attempt,
                scheduled,
                scheduled + 1_000,
                scheduled + 250_000,
                if failed { 3 } else { 0 },
                failed.then_some("exit code 3: upstream answered 503 Service Unavailable"),
                1_200_000 + i as i64 % 5000,
                "9f2c5e1d7a3b4c6d8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d",
                output.as_bytes(),
                if failed { b"error: upstream answered 503\n".as_slice() } else { b"".as_slice() },
                (trigger == "manual").then_some(scheduled),
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Run `i`'s job, due time and attempt: a failed run's retry follows it
/// as the next row, due at the same instant.
fn run_at(i: usize, runs: usize, newest: DateTime<Utc>) -> (String, DateTime<Utc>, u32) {
    let first = if i % 20 == 8 { i - 1 } else { i };
    let job = if first % RARE_EVERY == 0 { "rare".to_owned() } else { format!("job{:02}", first % JOBS) };
    let due = newest - chrono::Duration::seconds((runs - first) as i64);
    (job, due, if first == i { 1 } else { 2 })
}

/// A fire with two attempts, mid-history: its job and due time.
fn first_attempt_of(runs: usize, newest: DateTime<Utc>) -> (String, DateTime<Utc>) {
    let i = (runs / 2) / 20 * 20 + 7;
    let (job, due, _) = run_at(i, runs, newest);
    (job, due)
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn slug(what: &str) -> String {
    let words: Vec<String> = what
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(4)
        .map(str::to_ascii_lowercase)
        .collect();
    words.join("_")
}

impl Host {
    /// Sends `GET path` `count` times on one keep-alive connection (after
    /// one untimed); each must answer 200. The times, sorted, and how many
    /// runs the page listed.
    pub async fn time_get(&self, path: &str, count: usize) -> anyhow::Result<(Vec<Duration>, usize)> {
        let mut connection = crate::http::Getter::connect(self.addr(), self.token()).await?;
        let first = connection.get(path).await?;
        let page: serde_json::Value = serde_json::from_slice(&first).context("a page of runs")?;
        let listed = page["runs"].as_array().map_or(0, Vec::len);
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            let started = Instant::now();
            connection.get(path).await?;
            times.push(started.elapsed());
        }
        times.sort();
        Ok((times, listed))
    }
}
