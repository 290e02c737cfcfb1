//! Fire lateness on a cluster: 1,000 jobs on `@every 1s`, declared alike
//! on 3 hosts sharing one database, watched over a window of whole
//! seconds that opens 2 s after the last host is ready (so no host is
//! still starting). Every host records every fire (one row wins each,
//! by the unique key) and any host may claim it.
//!
//! A fire's lateness is its run's `started_at` (the claim, by the
//! database's clock) − its `scheduled_for`, read from the database once
//! every fire of the window has ended. Exactly one row per (job,
//! scheduled_for) is checked over the whole run: a double fails the
//! section.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};

use super::database::Database;
use super::{PATIENCE, start_hosts};
use crate::report::{Figure, ms, percentile, spread};
use crate::suite::Sizes;

/// The hosts sharing the jobs.
const HOSTS: usize = 3;
/// The fires of a scheduled job, whichever way they were recorded.
const FIRES: &str = "trigger IN ('schedule', 'catch-up')";

pub(super) fn measure(sizes: &Sizes, wasmcron: &Path, client: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Figure>> {
    let (count, seconds) = (sizes.cluster_lateness_jobs, sizes.cluster_lateness_seconds);
    let database = Database::fresh()?;
    let dir = tempfile::tempdir()?;
    let jobs: Vec<String> = (0..count).map(|i| format!("every{i:04}")).collect();
    for host in 1..=HOSTS {
        let folder = dir.path().join(format!("host-{host}/jobs"));
        std::fs::create_dir_all(&folder)?;
        for job in &jobs {
            std::fs::write(folder.join(format!("{job}.toml")), "schedule = \"@every 1s\"\n")?;
        }
    }
    let names: Vec<&str> = jobs.iter().map(String::as_str).collect();
    let hosts = start_hosts(wasmcron, dir.path(), HOSTS, &names, &super::caps(), &database, client)?;
    let from = database.now()?.timestamp() + 3;
    let until = from + seconds as i64;
    let window = format!("{FIRES} AND scheduled_for >= to_timestamp({from}) AND scheduled_for < to_timestamp({until})");
    // Past the window by a second, then until every fire due in it is recorded and has ended.
    let wait = (until + 1 - database.now()?.timestamp()).max(0) as u64;
    std::thread::sleep(Duration::from_secs(wait));
    let due = count as u64 * seconds;
    let started = std::time::Instant::now();
    let state =
        format!("SELECT count(*), count(*) FILTER (WHERE status IN ('pending', 'running')) FROM runs WHERE {window}");
    loop {
        let row = database.rows(&state, 2).pop().context("no row")?;
        let (recorded, open): (u64, u64) = (row[0].parse()?, row.get(1).context("a count")?.parse()?);
        if recorded >= due && open == 0 {
            break;
        }
        ensure!(
            started.elapsed() < PATIENCE,
            "{PATIENCE:?} after the window, {recorded} of its {due} fires were recorded and {open} not ended"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let by_host = database.rows(
        &format!(
            "SELECT coalesce(h.name, r.host_id, 'none'), count(*) FROM runs r LEFT JOIN hosts h ON h.id = r.host_id \
             WHERE {window} GROUP BY 1 ORDER BY 1"
        ),
        2,
    );
    for host in hosts {
        host.stop()?;
    }
    let mut late = Vec::new();
    let sql = format!(
        "SELECT round(extract(epoch FROM started_at - scheduled_for) * 1e6) FROM runs WHERE {window} AND started_at IS NOT NULL"
    );
    for row in database.rows(&sql, 1) {
        let micros: f64 = row[0].parse().with_context(|| format!("a lateness {row:?}"))?;
        late.push(Duration::from_micros(micros.max(0.0) as u64));
    }
    late.sort();
    let statuses = database.rows(&format!("SELECT status, count(*) FROM runs WHERE {window} GROUP BY 1 ORDER BY 1"), 2);
    let doubles: u64 = database.value(&format!(
        "SELECT count(*) FROM (SELECT 1 FROM runs WHERE {FIRES} GROUP BY job, scheduled_for HAVING count(*) > 1) d"
    ))?;
    let fires: u64 = database.value(&format!("SELECT count(*) FROM runs WHERE {FIRES}"))?;
    ensure!(doubles == 0, "{doubles} fires were recorded more than once (of {fires} recorded over the run)");
    // `@every` is aligned to the epoch: hosts firing apart would show as more fires than are due.
    let recorded: u64 = database.value(&format!("SELECT count(*) FROM runs WHERE {window}"))?;
    ensure!(recorded <= due, "{recorded} fires were recorded in a window where {due} were due");
    ensure!(!late.is_empty(), "no fire of the window started");
    let join = |rows: Vec<Vec<String>>| rows.iter().map(|row| row.join(" ")).collect::<Vec<_>>().join(", ");
    let figure =
        format!("fire lateness p99, {count} jobs on @every 1s over {HOSTS} hosts on one database, {seconds} s");
    Ok(vec![Figure::new("cluster.lateness.p99", figure, ms(percentile(&late, 0.99)), "ms").detail(format!(
        "due → claimed (started_at − scheduled_for, the database's clock): {}; fires of the window: {recorded} of \
         {due} due, {} started, by status: {}; by host: {}; exactly one row per (job, scheduled_for) over all {fires} \
         fires recorded",
        spread(&late),
        late.len(),
        join(statuses),
        join(by_host),
    ))])
}
