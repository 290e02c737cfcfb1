//! Rescue after a SIGKILL: 2 hosts on one database with `--lease 3s`
//! (renewed each second), one run of a job that sleeps an hour, and the
//! host running it killed with SIGKILL; the other host finds the lease
//! lapsed, records the run `abandoned` with a retry, and claims the retry.
//!
//! The figure is the retry's `started_at` − the killed attempt's
//! `lease_until`, both the database's clock. `lease_until` is read just
//! after the kill: no renewal can follow it then, and the rescue (which
//! clears it) cannot come before it passes. The killed host is started
//! again, and the next repetition kills whichever host runs the retry.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use super::database::{Database, instant};
use super::{PATIENCE, start_host};
use crate::child::Host;
use crate::http;
use crate::report::{Figure, ms, spread};
use crate::suite::{SLEEPER_WAT, Sizes};

const JOB: &str = "sleeper";
/// The lease, and the target: the retry started within 2 renewals (a
/// third of the lease each) of the lease's expiry.
const LEASE: &str = "3s";
const TARGET_MS: f64 = 2000.0;

pub(super) fn measure(sizes: &Sizes, wasmcron: &Path, client: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Figure>> {
    let repeats = sizes.cluster_rescues;
    let database = Database::fresh()?;
    let dir = tempfile::tempdir()?;
    let names = ["host-a", "host-b"];
    for name in names {
        let jobs = dir.path().join(name).join("jobs");
        std::fs::create_dir_all(&jobs)?;
        std::fs::write(jobs.join(format!("{JOB}.wat")), SLEEPER_WAT)?;
        let declaration = format!("[limits]\ntimeout = \"1h\"\n\n[retry]\nattempts = {}\n", repeats + 1);
        std::fs::write(jobs.join(format!("{JOB}.toml")), declaration)?;
    }
    let args = ["--lease".to_owned(), LEASE.to_owned()];
    let start = |name: &str| start_host(wasmcron, dir.path(), name, &[], &args, &database, client);
    let mut hosts: BTreeMap<String, Host> = BTreeMap::new();
    for name in names {
        hosts.insert(name.to_owned(), start(name)?);
    }
    let first = hosts.values().next().context("a host")?;
    client.block_on(http::burst(&[first.target(JOB)?], 1, 1))?;
    let mut samples = Vec::with_capacity(repeats);
    for attempt in 1..=repeats {
        let (id, name) = running(&database, attempt)?;
        hosts
            .remove(&name)
            .with_context(|| format!("attempt {attempt} runs on {name}, not a host started here"))?
            .kill()?;
        let lease_until =
            instant(database.value(&format!("SELECT extract(epoch FROM lease_until) FROM runs WHERE id = {id}"))?)?;
        let (_, retried_on) = running(&database, attempt + 1)?;
        let started = instant(database.value(&format!(
            "SELECT extract(epoch FROM started_at) FROM runs WHERE job = '{JOB}' AND attempt = {}",
            attempt + 1
        ))?)?;
        let status: String = database.value(&format!("SELECT status FROM runs WHERE id = {id}"))?;
        ensure!(
            status == "abandoned",
            "the killed host's run {id} is {status}, not abandoned, after its retry started"
        );
        ensure!(retried_on != name, "the retry of run {id} started on {name}, the host killed");
        samples.push((started - lease_until).to_std().context("the retry started before the lease lapsed")?);
        hosts.insert(name.clone(), start(&name)?);
    }
    for (_, host) in hosts {
        host.stop()?;
    }
    samples.sort();
    let max = samples.last().copied().unwrap_or_default();
    Ok(vec![
        Figure::new(
            "cluster.rescue.max",
            format!("rescue after a SIGKILL: lease expiry → retry started on the other host, --lease {LEASE}"),
            ms(max),
            "ms",
        )
        .at_most(TARGET_MS)
        .detail(format!(
            "{} (the database's clock; 2 hosts, each repetition killing the host running the run)",
            spread(&samples)
        )),
    ])
}

/// Waits until attempt `attempt` of the sleeper is running: its run id,
/// and the name of the host running it.
fn running(database: &Database, attempt: usize) -> anyhow::Result<(i64, String)> {
    let started = Instant::now();
    let sql = format!(
        "SELECT r.id, h.name FROM runs r JOIN hosts h ON h.id = r.host_id \
         WHERE r.job = '{JOB}' AND r.attempt = {attempt} AND r.status = 'running'"
    );
    loop {
        if let Some(row) = database.rows(&sql, 2).pop() {
            return Ok((row[0].parse().context("a run id")?, row.get(1).context("a host name")?.clone()));
        }
        if started.elapsed() > PATIENCE {
            let runs =
                database.rows(&format!("SELECT id, attempt, status, host_id, error FROM runs WHERE job = '{JOB}'"), 5);
            let hosts = database.rows("SELECT id, name FROM hosts", 2);
            bail!(
                "attempt {attempt} of {JOB} was not running within {PATIENCE:?}; its runs: {runs:?}; hosts: {hosts:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
