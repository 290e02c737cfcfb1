//! The `cluster` section's view of a PostgreSQL database: a fresh one on
//! the test server (`wasmcron-test-pg`: a throwaway server, or the one
//! `WASMCRON_TEST_POSTGRES` names), read with SQL of the section's own
//! through `psql`, and counted with `pg_stat_statements` and
//! `pg_stat_database`.
//!
//! The section's own statements open with [`OWN`], a comment
//! `pg_stat_statements` keeps in the text it shows, so they are left out
//! of the counts. Its own transactions cannot be told apart that way:
//! each `psql` call costs a few (its connection's start-up reads the
//! catalogue in one), measured once on the idle database
//! ([`Database::fresh`]) and taken off by count.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, ensure};
use chrono::{DateTime, Utc};

use crate::suite::Setup;

/// Opens every statement the section sends itself.
const OWN: &str = "/* wasmcron-bench */";

pub(super) struct Database {
    url: String,
    /// Statements sent so far, each in a `psql` call of its own.
    calls: Cell<u64>,
    /// Transactions each `psql` call commits, measured at creation.
    commits_per_call: u64,
}

/// The counts of a moment: each statement's calls (by query id, with its
/// text), and the transactions committed, in this database.
pub(super) struct Snapshot {
    statements: BTreeMap<String, ((u64, f64), String)>,
    commits: u64,
    /// The section's own `psql` calls until this snapshot, itself included.
    calls: u64,
}

/// What the hosts sent between two snapshots.
pub(super) struct Counted {
    pub statements: u64,
    pub commits: u64,
    /// Statements by calls, most first: calls, milliseconds executing
    /// them (in all), and the text as first seen.
    pub top: Vec<(u64, f64, String)>,
}

impl Database {
    /// A new, empty database with `pg_stat_statements` in it.
    pub fn fresh() -> anyhow::Result<Database> {
        let url = wasmcron_test_pg::server().fresh_database();
        let preloaded = wasmcron_test_pg::execute(&url, "SHOW shared_preload_libraries");
        ensure!(
            preloaded.contains("pg_stat_statements"),
            Setup(format!(
                "the cluster section counts statements with pg_stat_statements, which the server at {} does not \
                 load (shared_preload_libraries = {:?}); add it there, or unset {} to use a throwaway server",
                wasmcron_test_pg::server().admin_url(),
                preloaded.trim(),
                wasmcron_test_pg::ENV
            ))
        );
        wasmcron_test_pg::execute(&url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        let mut database = Database { url, calls: Cell::new(0), commits_per_call: 0 };
        // The second counts the first's second call and its own first.
        let (first, second) = (database.snapshot()?, database.snapshot()?);
        database.commits_per_call = (second.commits - first.commits).div_ceil(second.calls - first.calls);
        Ok(database)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The rows `sql` returns, one line each, columns split at `|`
    /// (into at most `columns`: text in the last may hold `|`).
    pub fn rows(&self, sql: &str, columns: usize) -> Vec<Vec<String>> {
        self.calls.set(self.calls.get() + 1);
        let output = wasmcron_test_pg::execute(&self.url, &format!("{OWN} {sql}"));
        output
            .lines()
            .filter(|line| !line.is_empty())
            .map(|l| l.splitn(columns, '|').map(str::to_owned).collect())
            .collect()
    }

    /// The one value `sql` returns.
    pub fn value<T: FromStr>(&self, sql: &str) -> anyhow::Result<T>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        let rows = self.rows(sql, 1);
        let text = rows.first().and_then(|row| row.first()).with_context(|| format!("{sql:?} returned no row"))?;
        text.parse().with_context(|| format!("{sql:?} returned {text:?}"))
    }

    /// The database's clock now.
    pub fn now(&self) -> anyhow::Result<DateTime<Utc>> {
        instant(self.value("SELECT extract(epoch FROM clock_timestamp())")?)
    }

    /// The counts now. The hosts' sessions report their transactions
    /// when idle (at most a second late while busy) and when they end:
    /// take the closing snapshot once the hosts have stopped.
    pub fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let in_this = "dbid = (SELECT oid FROM pg_database WHERE datname = current_database())";
        let rows = self.rows(
            &format!(
                "SELECT queryid, calls, total_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 160) \
                 FROM pg_stat_statements \
                 WHERE {in_this} AND query NOT LIKE '{OWN}%'"
            ),
            4,
        );
        let mut statements = BTreeMap::new();
        for row in rows {
            let [id, calls, ms, text] = <[String; 4]>::try_from(row).map_err(|row| anyhow::anyhow!("a row {row:?}"))?;
            let counts = (calls.parse().context("pg_stat_statements.calls")?, ms.parse().context("total_exec_time")?);
            statements.insert(id, (counts, text));
        }
        let commits = self.value("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")?;
        Ok(Snapshot { statements, commits, calls: self.calls.get() })
    }
}

impl Snapshot {
    /// What the hosts sent since `before`: the section's own statements
    /// left out, its own transactions taken off.
    pub fn since(&self, before: &Snapshot, database: &Database) -> Counted {
        let mut top: Vec<(u64, f64, String)> = self
            .statements
            .iter()
            .map(|(id, ((calls, ms), text))| {
                let (calls_then, ms_then) = before.statements.get(id).map_or((0, 0.0), |(counts, _)| *counts);
                (calls - calls_then, ms - ms_then, text.clone())
            })
            .filter(|(calls, _, _)| *calls > 0)
            .collect();
        top.sort_by_key(|(calls, _, _)| std::cmp::Reverse(*calls));
        // Own calls from the one before `before` was read to the one before this one.
        let own = (self.calls - before.calls) * database.commits_per_call;
        Counted {
            statements: top.iter().map(|(calls, _, _)| calls).sum(),
            commits: (self.commits - before.commits).saturating_sub(own),
            top,
        }
    }
}

/// CPU time (user plus system) the throwaway server has used so far: its
/// postmaster with every session it has reaped, and each live process
/// it started. None for a server of `WASMCRON_TEST_POSTGRES`, not ours.
pub(super) fn server_cpu() -> Option<Duration> {
    let data = wasmcron_test_pg::server().data_dir()?;
    let postmaster = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let postmaster: u32 = postmaster.lines().next()?.trim().parse().ok()?;
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        // A process may end between the listing and the read: its time is the postmaster's then.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (name) state ppid …": fields resume after the name's ')'.
        let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
        let fields: Vec<u64> = rest.split_whitespace().skip(1).take(14).map(|f| f.parse().unwrap_or(0)).collect();
        if fields.len() < 14 {
            continue;
        }
        let (ppid, own, reaped) = (fields[0], fields[10] + fields[11], fields[12] + fields[13]);
        if pid == postmaster {
            ticks += own + reaped;
        } else if ppid == u64::from(postmaster) {
            ticks += own;
        }
    }
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// An instant given as seconds since the epoch, as `extract(epoch …)` gives it.
pub(super) fn instant(epoch: f64) -> anyhow::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros((epoch * 1e6).round() as i64).with_context(|| format!("{epoch} is not an instant"))
}
