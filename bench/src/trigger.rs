//! (h) Triggers over HTTP, against a real `wasmcron run` child on a local
//! port: how many it accepts a second (each answered `202`, so durably
//! recorded) over 1 to 64 keep-alive connections; how long from a trigger
//! sent at a steady 1,000 a second to its run's start; and the same loads
//! against the HTTP floor (`http::Floor`, in this process), so that
//! wasmcron's rate reads as a fraction of what HTTP alone does here.
//!
//! The child has two triggered-only jobs on the trivial module — `trivial`
//! for the closed loops, `paced` for the paced load, so that its runs are
//! read apart — `--max-running 256` and a queue bound no load comes near:
//! neither is what limits. Its log filter is the suite's (`WASMCRON_LOG`,
//! else `warn`), as for the sections in process. Before each load the
//! section waits until every run accepted so far has ended.
//!
//! A run's start is its `started_at` as the child recorded it: the child's
//! system clock, to the microsecond, when the run left the queue, just
//! before its `running` mark is committed and its guest instantiated. It
//! is read from the child's store once the runs have ended. A trigger's
//! send is this process's system clock just before the request is written.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::child::Host;
use crate::http::{self, FLOOR_THREAD, Floor, Target};
use crate::report::{Figure, ThreadCpu, ms, number, percentile, spread, threads_cpu, threads_cpu_of, us};
use crate::suite::Sizes;

/// The job the closed loops trigger.
const CLOSED_JOB: &str = "trivial";
/// The job the paced load triggers.
const PACED_JOB: &str = "paced";
/// The child's `--max-running`: the best of the throughput section's caps.
const MAX_RUNNING: u32 = 256;
/// The child's `--max-queued`: far above what any load here leaves waiting.
const MAX_QUEUED: u32 = 10_000_000;
/// The thread name of the client's runtime.
const CLIENT_THREAD: &str = "bench-client";
/// The targets: accepted triggers a second on 2 cores, and trigger → start p99.
const ACCEPTED_TARGET: f64 = 10_000.0;
const STARTED_P99_TARGET_MS: f64 = 10.0;

pub(crate) fn measure(sizes: &Sizes, wasmcron: &Path) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    let client = tokio::runtime::Builder::new_multi_thread().thread_name(CLIENT_THREAD).enable_all().build()?;
    let args = ["--max-running".into(), MAX_RUNNING.to_string(), "--max-queued".into(), MAX_QUEUED.to_string()];
    let mut host = Host::start(wasmcron, dir.path(), &[CLOSED_JOB, PACED_JOB], &args, &client)?;
    let floor = Floor::start()?;
    let mut figures = accepted(sizes, &client, &mut host, &floor)?;
    figures.extend(paced(sizes, &client, &mut host, &floor)?);
    host.stop()?;
    Ok(figures)
}

/// (a) and (c): closed loops on the floor and then the host, at each
/// number of connections.
fn accepted(
    sizes: &Sizes,
    client: &tokio::runtime::Runtime,
    host: &mut Host,
    floor: &Floor,
) -> anyhow::Result<Vec<Figure>> {
    let (to_host, to_floor, pid) = (host.target(CLOSED_JOB)?, floor.target()?, host.pid());
    let mut figures = Vec::new();
    let (mut best, mut floor_best) = ((0.0, 0), (0.0, 0));
    let mut floor_rows = Vec::new();
    for &connections in &sizes.trigger_connections {
        let bare = closed(client, &to_floor, Server::Floor, connections, sizes.trigger_seconds)?;
        host.drain()?;
        let load = closed(client, &to_host, Server::Host(&pid), connections, sizes.trigger_seconds)?;
        figures.push(accepted_row(connections, &load, &bare));
        floor_rows.push(format!("{connections}: {} ({:.1} µs CPU)", number(bare.rate), bare.server_us));
        if load.rate > best.0 {
            best = (load.rate, connections);
        }
        if bare.rate > floor_best.0 {
            floor_best = (bare.rate, connections);
        }
    }
    let best_figure = Figure::new(
        "trigger.accepted.best",
        "HTTP triggers accepted, best of the connections above",
        best.0,
        "triggers/s",
    );
    figures.push(best_figure.at_least(ACCEPTED_TARGET).detail(format!("at {} connections", best.1)));
    let floor_figure = Figure::new(
        "trigger.floor.best",
        "HTTP floor: a bare axum handler answering 202, the same loads, best",
        floor_best.0,
        "triggers/s",
    );
    figures.push(floor_figure.detail(format!(
        "at {} connections; by connections (server CPU per request): {}",
        floor_best.1,
        floor_rows.join(", ")
    )));
    let ratio = Figure::new(
        "trigger.floor_ratio",
        "HTTP triggers accepted, best ÷ the HTTP floor's best",
        best.0 / floor_best.0,
        "×",
    );
    figures.push(ratio.detail(format!("{} ÷ {} triggers/s", number(best.0), number(floor_best.0))));
    Ok(figures)
}

fn accepted_row(connections: usize, load: &Load, bare: &Load) -> Figure {
    Figure::new(
        format!("trigger.accepted.c{connections}"),
        format!(
            "HTTP triggers accepted (202: run durably recorded), {connections} keep-alive connection{}",
            if connections == 1 { "" } else { "s" }
        ),
        load.rate,
        "triggers/s",
    )
    .detail(format!(
        "{} in {:.2} s, {:.0}% of the HTTP floor's {} triggers/s; host CPU {:.1} µs per trigger ({}); \
         client CPU {:.1} µs per request",
        load.accepted,
        load.took.as_secs_f64(),
        100.0 * load.rate / bare.rate,
        number(bare.rate),
        load.server_us,
        load.server_split,
        load.client_us,
    ))
}

/// (b): the paced load on the floor and then the host; each accepted
/// trigger matched to its run's recorded start.
fn paced(
    sizes: &Sizes,
    client: &tokio::runtime::Runtime,
    host: &mut Host,
    floor: &Floor,
) -> anyhow::Result<Vec<Figure>> {
    let (rate, seconds) = (sizes.paced_rate, sizes.paced_seconds);
    let floor_paced = client.block_on(http::paced(&floor.target()?, rate, seconds))?;
    host.drain()?;
    let paced = client.block_on(http::paced(&host.target(PACED_JOB)?, rate, seconds))?;
    host.drain()?;
    let to_start = sorted(to_start(&paced.sent, &host.started(PACED_JOB)?)?);
    let answered = sorted(paced.sent.iter().map(|s| s.answered).collect());
    let floor_answered = sorted(floor_paced.sent.iter().map(|s| s.answered).collect());
    let behind = sorted(paced.sent.iter().map(|s| s.behind).collect());
    let p99 = |id: &str, figure: String, samples: &[Duration]| {
        Figure::new(id, figure, ms(percentile(samples, 0.99)), "ms").detail(spread(samples))
    };
    let about = format!("{rate}/s paced (open loop) for {} s", seconds.as_secs_f64());
    let started = p99(
        "trigger.started.p99",
        format!("trigger sent → run started (recorded started_at), p99, {about}"),
        &to_start,
    );
    let started = started.at_most(STARTED_P99_TARGET_MS);
    let detail = format!(
        "{}; sent behind its slot: p99 {} ms; {} connections",
        started.detail,
        number(ms(percentile(&behind, 0.99))),
        paced.connections
    );
    Ok(vec![
        started.detail(detail),
        p99("trigger.answered.p99", "… trigger sent → 202 read (run durably recorded), p99".into(), &answered),
        p99("trigger.floor_answered.p99", "… the HTTP floor: sent → 202 read, p99".into(), &floor_answered),
    ])
}

fn sorted(mut samples: Vec<Duration>) -> Vec<Duration> {
    samples.sort();
    samples
}

#[derive(serde::Deserialize)]
struct Accepted {
    id: i64,
}

/// From each trigger's send to its run's start, given when each run started.
fn to_start(sent: &[http::Sent], started: &BTreeMap<i64, DateTime<Utc>>) -> anyhow::Result<Vec<Duration>> {
    sent.iter()
        .map(|sent| {
            let Accepted { id } = serde_json::from_slice(&sent.body).context("reading a trigger's answer")?;
            let start = started.get(&id).with_context(|| format!("run {id} was accepted but never started"))?;
            (*start - sent.at).to_std().context("a run started before its trigger was sent")
        })
        .collect()
}

/// CPU time each thread of process `pid` used since `before` was read.
fn used_since(pid: &str, before: &[ThreadCpu]) -> Vec<ThreadCpu> {
    threads_cpu_of(pid)
        .into_iter()
        .map(|thread| {
            let earlier = before.iter().find(|t| t.tid == thread.tid).map_or(Duration::ZERO, |t| t.cpu);
            ThreadCpu { cpu: thread.cpu.saturating_sub(earlier), ..thread }
        })
        .collect()
}

fn sum(threads: &[ThreadCpu], keep: impl Fn(&ThreadCpu) -> bool) -> Duration {
    threads.iter().filter(|t| keep(t)).map(|t| t.cpu).sum()
}

/// Who serves a load: the host (by its pid) or the floor in this process.
#[derive(Clone, Copy)]
enum Server<'a> {
    Host(&'a str),
    Floor,
}

/// A closed-loop load's rate, and CPU time per accepted trigger.
struct Load {
    rate: f64,
    accepted: u64,
    took: Duration,
    /// The server's CPU time per trigger, in µs, in all and by thread.
    server_us: f64,
    server_split: String,
    /// The client's CPU time per request, in µs.
    client_us: f64,
}

fn closed(
    client: &tokio::runtime::Runtime,
    target: &Target,
    server: Server,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Load> {
    let pid = match server {
        Server::Host(pid) => pid,
        Server::Floor => "self",
    };
    let (server_before, client_before) = (threads_cpu_of(pid), threads_cpu());
    let load = client.block_on(http::closed_loop(target, connections, duration))?;
    let (server_used, client_used) = (used_since(pid, &server_before), used_since("self", &client_before));
    let per = |cpu: Duration| us(cpu) / load.accepted as f64;
    let (server_cpu, server_split) = match server {
        Server::Floor => (sum(&server_used, |t| t.name == FLOOR_THREAD), String::new()),
        Server::Host(pid) => {
            let main = |t: &ThreadCpu| t.tid.to_string() == pid;
            let (store, workers) =
                (|t: &ThreadCpu| t.name == "wasmcron-store", |t: &ThreadCpu| t.name == "tokio-rt-worker");
            let split = format!(
                "store thread {:.1}, async workers {:.1}, main thread (scheduler actor) {:.1}, other {:.1}",
                per(sum(&server_used, store)),
                per(sum(&server_used, workers)),
                per(sum(&server_used, main)),
                per(sum(&server_used, |t| !store(t) && !workers(t) && !main(t))),
            );
            (sum(&server_used, |_| true), split)
        }
    };
    Ok(Load {
        rate: load.accepted as f64 / load.took.as_secs_f64(),
        accepted: load.accepted,
        took: load.took,
        server_us: per(server_cpu),
        server_split,
        client_us: per(sum(&client_used, |t| t.name == CLIENT_THREAD)),
    })
}
