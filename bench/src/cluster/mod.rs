//! The `cluster` section: `wasmcron run` children sharing one PostgreSQL
//! database (issue 14), beside one host on SQLite, in one run.
//!
//! - Throughput (here): a burst of trivial triggers over the HTTP API,
//!   dealt to every host, until every run is `succeeded` in the store:
//!   one host on SQLite (the reference), then 1, 2 and 3 hosts on a fresh
//!   database each. Runs a second are runs ÷ (the last run's `ended_at` −
//!   the first trigger's send). On 2 cores more hosts share the same
//!   cores with the database: they cannot add throughput, and the section
//!   says what they do instead of expecting it.
//! - Statements and transactions per run of each PostgreSQL burst (here),
//!   counted by the database ([`database`]).
//! - Fire lateness of 1,000 jobs on `@every 1s` over 3 hosts ([`lateness`]).
//! - Rescue after a SIGKILL ([`rescue`]).
//!
//! Every host serves the same job under its own folder (`host-N/`: state,
//! token, log) and name (`--host-name`), with the `trigger` section's
//! caps (`--max-running 256`, a queue bound nothing comes near). The
//! burst's job is declared `overlap = "allow"`: on a shared store a job
//! of any other policy runs one run at a time across the cluster,
//! triggered runs included, which would measure that policy rather than
//! the store (one host on SQLite runs triggered runs side by side either way).

mod database;
mod lateness;
mod rescue;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use chrono::{DateTime, Utc};
use wasmcron::record::RunStatus;

use crate::child::Host;
use crate::http;
use crate::report::{Figure, number, process_cpu_of, us};
use crate::suite::Sizes;
use database::{Database, instant};

/// The job every burst triggers, and its declaration.
const JOB: &str = "trivial";
const DECLARATION: &str = "overlap = \"allow\"\n";
/// Keep-alive connections of a burst, dealt to the hosts in turn.
const CONNECTIONS: usize = 16;
/// How long the runs of a burst, a window of fires or a rescue may take.
const PATIENCE: Duration = Duration::from_secs(120);
/// The targets: one host on PostgreSQL within this many times SQLite's
/// per-run cost, and at most this many statements (round trips) per run.
const COST_RATIO_TARGET: f64 = 3.0;
const STATEMENTS_TARGET: f64 = 3.0;

pub(crate) fn measure(sizes: &Sizes, wasmcron: &Path) -> anyhow::Result<Vec<Figure>> {
    let client = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let runs = sizes.cluster_runs;
    let sqlite = on_sqlite(wasmcron, runs, &client)?;
    let mut figures = vec![
        Figure::new(
            "cluster.sqlite",
            "trivial runs end to end over HTTP, one host on SQLite (the reference)",
            sqlite.rate,
            "runs/s",
        )
        .detail(sqlite.detail()),
    ];
    let mut bursts = Vec::new();
    for hosts in 1..=3 {
        let burst = on_postgres(wasmcron, hosts, runs, &client)?;
        let figure = format!("… {hosts} host{} on one PostgreSQL database", if hosts == 1 { "" } else { "s" });
        figures
            .push(Figure::new(format!("cluster.pg{hosts}"), figure, burst.rate.rate, "runs/s").detail(burst.detail()));
        bursts.push(burst);
    }
    let one = &bursts[0];
    figures.push(
        Figure::new(
            "cluster.cost_ratio",
            "per-run cost, one host on PostgreSQL ÷ one host on SQLite (wall time per run, end to end)",
            sqlite.rate / one.rate.rate,
            "×",
        )
        .at_most(COST_RATIO_TARGET)
        .detail(format!(
            "{} ÷ {} runs/s; in CPU per run, hosts and database together, {:.1} µs ÷ {:.1} µs",
            number(sqlite.rate),
            number(one.rate.rate),
            one.rate.hosts_us + one.rate.database_us.unwrap_or(0.0),
            sqlite.hosts_us
        )),
    );
    let per_run = |burst: &PgBurst, count: u64| count as f64 / burst.runs as f64;
    let by_hosts = |count: fn(&PgBurst) -> u64| {
        let each: Vec<String> = bursts.iter().map(|b| number(per_run(b, count(b)))).collect();
        format!("by 1, 2, 3 hosts: {}", each.join(", "))
    };
    let top: Vec<String> = one
        .counted
        .top
        .iter()
        .take(8)
        .map(|(calls, ms, text)| {
            format!(
                "{} × ({:.1} µs each in the database) {text}",
                number(per_run(one, *calls)),
                ms * 1e3 / *calls as f64
            )
        })
        .collect();
    figures.push(
        Figure::new(
            "cluster.statements_per_run",
            "database statements (each a round trip) per run, one host on PostgreSQL (pg_stat_statements)",
            per_run(one, one.counted.statements),
            "statements",
        )
        .at_most(STATEMENTS_TARGET)
        .detail(format!(
            "{}; the host's idle work (claims, heartbeats, rescues each second) included; per run, most first: {}",
            by_hosts(|b| b.counted.statements),
            top.join("; ")
        )),
    );
    figures.push(
        Figure::new(
            "cluster.transactions_per_run",
            "… transactions committed per run (pg_stat_database.xact_commit)",
            per_run(one, one.counted.commits),
            "transactions",
        )
        .detail(by_hosts(|b| b.counted.commits)),
    );
    figures.extend(lateness::measure(sizes, wasmcron, &client)?);
    figures.extend(rescue::measure(sizes, wasmcron, &client)?);
    Ok(figures)
}

/// A burst's rate, and the CPU time it cost per run.
struct Rate {
    rate: f64,
    runs: usize,
    took: Duration,
    /// From the first trigger sent to the last one answered.
    answered: Duration,
    /// The hosts' CPU time per run, in µs.
    hosts_us: f64,
    /// The database server's, where it is ours to watch.
    database_us: Option<f64>,
}

impl Rate {
    fn new(runs: usize, burst: &http::Burst, last_ended: DateTime<Utc>, cpu: Cpu) -> anyhow::Result<Rate> {
        let took = (last_ended - burst.started).to_std().context("the last run ended before the first trigger")?;
        let (rate, answered, per_run) = (runs as f64 / took.as_secs_f64(), burst.answered, |cpu| us(cpu) / runs as f64);
        Ok(Rate { rate, runs, took, answered, hosts_us: per_run(cpu.hosts), database_us: cpu.database.map(per_run) })
    }

    fn detail(&self) -> String {
        format!(
            "{} runs in {:.2} s, every trigger answered (202) after {:.2} s, {CONNECTIONS} connections; \
             CPU per run: hosts {:.1} µs{}",
            self.runs,
            self.took.as_secs_f64(),
            self.answered.as_secs_f64(),
            self.hosts_us,
            self.database_us.map_or(String::new(), |database| format!(", PostgreSQL {database:.1} µs")),
        )
    }
}

fn on_sqlite(wasmcron: &Path, runs: usize, client: &tokio::runtime::Runtime) -> anyhow::Result<Rate> {
    let dir = tempfile::tempdir()?;
    declare(&dir.path().join("jobs"))?;
    let mut host = Host::start(wasmcron, dir.path(), &[JOB], &caps(), client)?;
    let cpu = Cpu::now(std::slice::from_ref(&host), false);
    let burst = client.block_on(http::burst(&[host.target(JOB)?], CONNECTIONS, runs))?;
    host.drain()?;
    let cpu = Cpu::now(std::slice::from_ref(&host), false).since(cpu);
    let recorded = host.runs(JOB)?;
    let succeeded = recorded.iter().filter(|run| run.status == RunStatus::Succeeded).count();
    ensure!(succeeded == runs, "{runs} triggers accepted on SQLite, {succeeded} runs succeeded");
    let last = recorded.iter().filter_map(|run| run.ended_at).max().context("no run ended")?;
    host.stop()?;
    Rate::new(runs, &burst, last, cpu)
}

/// A burst on PostgreSQL, and what the hosts sent the database for it.
struct PgBurst {
    rate: Rate,
    runs: usize,
    counted: database::Counted,
    /// Runs by the host that ran them.
    by_host: Vec<(String, u64)>,
}

impl PgBurst {
    fn detail(&self) -> String {
        let by_host: Vec<String> = self.by_host.iter().map(|(name, runs)| format!("{name} {runs}")).collect();
        format!("{}; runs by host: {}", self.rate.detail(), by_host.join(", "))
    }
}

fn on_postgres(
    wasmcron: &Path,
    count: usize,
    runs: usize,
    client: &tokio::runtime::Runtime,
) -> anyhow::Result<PgBurst> {
    let database = Database::fresh()?;
    let dir = tempfile::tempdir()?;
    for n in 1..=count {
        declare(&dir.path().join(format!("host-{n}/jobs")))?;
    }
    let hosts = start_hosts(wasmcron, dir.path(), count, &[JOB], &caps(), &database, client)?;
    let targets = hosts.iter().map(|host| host.target(JOB)).collect::<anyhow::Result<Vec<_>>>()?;
    let (before, cpu) = (database.snapshot()?, Cpu::now(&hosts, true));
    let burst = client.block_on(http::burst(&targets, CONNECTIONS, runs))?;
    let last = wait_succeeded(&database, runs)?;
    let cpu = Cpu::now(&hosts, true).since(cpu);
    let by_host = database
        .rows(
            &format!(
                "SELECT coalesce(h.name, r.host_id, '?'), count(*) FROM runs r LEFT JOIN hosts h ON h.id = r.host_id \
                 WHERE r.job = '{JOB}' GROUP BY 1 ORDER BY 1"
            ),
            2,
        )
        .into_iter()
        .map(|row| Ok((row[0].clone(), row.get(1).context("a count")?.parse()?)))
        .collect::<anyhow::Result<_>>()?;
    for host in hosts {
        host.stop()?;
    }
    // Taken once the hosts' sessions have ended and reported everything.
    let counted = database.snapshot()?.since(&before, &database);
    Ok(PgBurst { rate: Rate::new(runs, &burst, last, cpu)?, runs, counted, by_host })
}

/// Waits until `runs` runs of the burst's job have ended, each of them
/// `succeeded`: the last one's `ended_at`.
fn wait_succeeded(database: &Database, runs: usize) -> anyhow::Result<DateTime<Utc>> {
    let started = std::time::Instant::now();
    let sql = format!(
        "SELECT count(*) FILTER (WHERE status NOT IN ('pending', 'running')), \
         count(*) FILTER (WHERE status = 'succeeded'), coalesce(extract(epoch FROM max(ended_at)), 0) \
         FROM runs WHERE job = '{JOB}'"
    );
    loop {
        let row = database.rows(&sql, 3).pop().context("no row")?;
        let [ended, succeeded, last] = <[String; 3]>::try_from(row).map_err(|row| anyhow::anyhow!("a row {row:?}"))?;
        let (ended, succeeded): (usize, usize) = (ended.parse()?, succeeded.parse()?);
        if ended >= runs {
            ensure!(
                ended == runs && succeeded == runs,
                "{runs} triggers accepted: {ended} runs ended, {succeeded} succeeded"
            );
            return instant(last.parse()?);
        }
        ensure!(started.elapsed() < PATIENCE, "{ended} of {runs} runs ended within {PATIENCE:?}");
        // Seldom: each look is a `psql` session, CPU the hosts and the server would use.
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Declares the burst's job in `jobs` (its module is the host's to write).
fn declare(jobs: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(jobs)?;
    Ok(std::fs::write(jobs.join(format!("{JOB}.toml")), DECLARATION)?)
}

/// The `trigger` section's caps: neither is what limits.
fn caps() -> Vec<String> {
    ["--max-running", "256", "--max-queued", "10000000"].map(str::to_owned).to_vec()
}

/// Starts `count` hosts on `database`, `host-1` … in `dir`, each serving `jobs`.
fn start_hosts(
    wasmcron: &Path,
    dir: &Path,
    count: usize,
    jobs: &[&str],
    args: &[String],
    database: &Database,
    client: &tokio::runtime::Runtime,
) -> anyhow::Result<Vec<Host>> {
    (1..=count).map(|n| start_host(wasmcron, dir, &format!("host-{n}"), jobs, args, database, client)).collect()
}

/// Starts one host named `name` on `database`, in `dir/name`.
fn start_host(
    wasmcron: &Path,
    dir: &Path,
    name: &str,
    jobs: &[&str],
    args: &[String],
    database: &Database,
    client: &tokio::runtime::Runtime,
) -> anyhow::Result<Host> {
    let mut args = args.to_vec();
    args.extend(["--host-name".to_owned(), name.to_owned()]);
    Host::start_shared(wasmcron, &dir.join(name), jobs, &args, database.url(), client)
        .with_context(|| format!("starting {name}"))
}

/// CPU time used so far by the hosts (every thread, ended ones included)
/// and by the database server, where it is ours.
#[derive(Clone, Copy)]
struct Cpu {
    hosts: Duration,
    database: Option<Duration>,
}

impl Cpu {
    fn now(hosts: &[Host], database: bool) -> Cpu {
        let hosts = hosts.iter().filter_map(|host| process_cpu_of(&host.pid())).sum();
        Cpu { hosts, database: if database { database::server_cpu() } else { None } }
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            hosts: self.hosts.saturating_sub(before.hosts),
            database: self.database.zip(before.database).map(|(now, then)| now.saturating_sub(then)),
        }
    }
}
