//! A PostgreSQL server for tests: the one `WASMCRON_TEST_POSTGRES` names
//! (a URL to a server the tests may create databases on), or else a
//! throwaway one started from Debian's `postgresql` package, once per test
//! process, on a private port and socket directory, tuned for speed over
//! durability (`fsync=off`). Each test takes a database of its own
//! ([`Server::fresh_database`]).
//!
//! The throwaway server never outlives the test process: a sidecar shell
//! watches the process and stops the server (`pg_ctl stop -m immediate`)
//! and deletes its files once the process is gone, however it ended. The
//! server's files belong to the `postgres` user when the tests run as
//! root (`initdb` refuses root), and statements are sent with `psql`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Names the server the tests should use instead of starting their own.
pub const ENV: &str = "WASMCRON_TEST_POSTGRES";

const INSTALL: &str = "run .ci/install-toolchains (it runs `apt-get install postgresql postgresql-contrib`)";

/// A running PostgreSQL server.
pub struct Server {
    /// A URL to its maintenance database, without the database name's path
    /// part replaced yet: `postgres://postgres@127.0.0.1:PORT/postgres`.
    admin: String,
    /// Our own server's data directory (none with `WASMCRON_TEST_POSTGRES`).
    data: Option<PathBuf>,
}

/// The process's server, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var(ENV) {
        Ok(url) if !url.trim().is_empty() => Server { admin: url.trim().to_owned(), data: None },
        _ => start(),
    })
}

impl Server {
    /// A URL to the maintenance database, for statements on the server as a whole.
    pub fn admin_url(&self) -> &str {
        &self.admin
    }

    /// Our own server's data directory, if we started it.
    pub fn data_dir(&self) -> Option<&Path> {
        self.data.as_deref()
    }

    /// Creates an empty database with a name unique to this call and
    /// returns its URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("wasmcron_test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        execute(&self.admin, &format!("CREATE DATABASE {name}"));
        with_database(&self.admin, &name)
    }
}

/// Runs `sql` (one or more statements) on the database at `url` with
/// `psql`, stopping at the first error (which panics, with psql's
/// message). Returns what the statements printed: one line per row,
/// columns separated by `|`.
pub fn execute(url: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args(["--no-psqlrc", "--quiet", "--tuples-only", "--no-align", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run psql: {e}; {INSTALL}"));
    assert!(
        output.status.success(),
        "psql on {url}: {sql:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `url` with its database (the path) replaced by `name`, query kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}

/// The newest installed PostgreSQL's `bin` folder.
fn binaries() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|versions| {
        versions
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let version: u32 = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                ["initdb", "pg_ctl", "postgres"].iter().all(|b| bin.join(b).is_file()).then_some((version, bin))
            })
            .max()
    });
    match found {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (initdb, pg_ctl, postgres); {INSTALL}, \
             or set {ENV} to the URL of a server the tests may create databases on"
        ),
    }
}

fn root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command for a server binary, as `postgres` when we are root.
fn as_owner(program: &Path) -> Command {
    if root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {what}: {e}; {INSTALL}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn start() -> Server {
    let bin = binaries();
    let dir = tempfile::Builder::new().prefix("wasmcron-test-pg-").tempdir().expect("a temporary folder").keep();
    let (data, sockets, log) = (dir.join("data"), dir.join("sockets"), dir.join("server.log"));
    std::fs::create_dir(&sockets).expect("the socket folder");
    if root() {
        run(
            {
                let mut chown = Command::new("chown");
                chown.arg("-R").arg("postgres:postgres").arg(&dir);
                chown
            },
            "chown of the server's folder to postgres",
        );
    }
    let mut initdb = as_owner(&bin.join("initdb"));
    initdb.args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale", "C", "-D"]).arg(&data);
    run(initdb, "initdb");
    // The server stops once this process is gone, however it ends: the
    // sidecar outlives a killed test binary by at most a second.
    let pg_ctl = bin.join("pg_ctl");
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {owner}{pg_ctl} -D {data} stop -m immediate; rm -rf {dir}",
        pid = std::process::id(),
        owner = if root() { "runuser -u postgres -- " } else { "" },
        pg_ctl = pg_ctl.display(),
        data = data.display(),
        dir = dir.display(),
    );
    // Its own process group, so a Ctrl-C to the tests does not end it
    // before it has stopped the server; never waited for, by design.
    #[expect(clippy::zombie_processes, reason = "the sidecar outlives this process by design")]
    Command::new("sh")
        .args(["-c", &stop])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server's sidecar");
    // A free port, found by binding it; taken by someone else before the
    // server binds it (rarely), the start fails and another is tried.
    let mut tries = 0;
    let port = loop {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let options = format!(
            "-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=400 -c shared_preload_libraries=pg_stat_statements",
            sockets = sockets.display()
        );
        let mut start = as_owner(&pg_ctl);
        start.arg("-D").arg(&data).arg("-l").arg(&log).args(["-w", "-t", "60", "-o", &options, "start"]);
        let started = start.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if started.is_ok_and(|s| s.success()) {
            break port;
        }
        tries += 1;
        if tries == 3 {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("PostgreSQL did not start in {}: {log}", data.display());
        }
    };
    let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    wait_ready(port);
    Server { admin, data: Some(data) }
}

fn wait_ready(port: u16) {
    let since = Instant::now();
    loop {
        let ready = Command::new("pg_isready")
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return;
        }
        assert!(since.elapsed() < Duration::from_secs(60), "PostgreSQL on port {port} is not ready after a minute");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_of_its_own_takes_statements() {
        let url = server().fresh_database();
        execute(&url, "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)");
        assert_eq!(execute(&url, "SELECT sum(x) FROM t").trim(), "3");
        if server().data_dir().is_some() {
            // The benchmark reads statement counts from pg_stat_statements.
            execute(&url, "CREATE EXTENSION pg_stat_statements");
            assert_eq!(execute(&url, "SELECT count(*) > 0 FROM pg_stat_statements").trim(), "t");
        }
        let other = server().fresh_database();
        assert_ne!(other, url);
        assert_eq!(execute(&other, "SELECT count(*) FROM pg_tables WHERE tablename = 't'").trim(), "0");
    }

    #[test]
    fn urls_name_another_database() {
        assert_eq!(with_database("postgres://u@h:5/postgres", "x"), "postgres://u@h:5/x");
        assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
        assert_eq!(with_database("postgresql://u:p@h/db?sslmode=disable", "x"), "postgresql://u:p@h/x?sslmode=disable");
    }
}
