//! A `wasmcron run` child serving its HTTP API on a local port, as the
//! `trigger` section drives it: started on triggered-only jobs in a folder
//! of its own, waited for until `/readyz` answers, its store opened beside
//! it for reading (as `wasmcron jobs` reads it), and stopped by SIGTERM,
//! as a service manager stops it. A child dropped before [`Host::stop`]
//! (a section that failed) is killed.
//!
//! A child on a shared store (`Host::start_shared`, the `cluster`
//! section's PostgreSQL) has no reader here: its section reads the
//! database with SQL of its own, which it can tell apart from the hosts'.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, Utc};
use wasmcron::record::{RunRecord, RunStatus};
use wasmcron::store::{RunQuery, Store, StoreUrl};

use crate::http::{self, Target};
use crate::suite::TRIVIAL_WAT;

/// How long a child may take to become ready, to drain, or to stop.
const PATIENCE: Duration = Duration::from_secs(120);

pub struct Host {
    process: std::process::Child,
    addr: SocketAddr,
    token: String,
    log: PathBuf,
    // Declared before `reader`, so dropped first: the store's thread ends
    // with its runtime still there.
    store: Option<Arc<dyn Store>>,
    reader: tokio::runtime::Runtime,
}

impl Host {
    /// Starts `wasmcron run` with `run_args`, each of `jobs` a bare trivial
    /// module in `dir/jobs` (beside whatever the caller put there), its
    /// state in `dir/state` and its log in `dir/host.log`; returns once it
    /// is ready (`client` asks it).
    pub fn start(
        wasmcron: &Path,
        dir: &Path,
        jobs: &[&str],
        run_args: &[String],
        client: &tokio::runtime::Runtime,
    ) -> anyhow::Result<Host> {
        let mut host = Host::spawn(wasmcron, dir, jobs, run_args, None, client)?;
        let state = dir.join("state");
        host.store = Some(host.reader.block_on(StoreUrl::resolve(None, &state)?.open_existing())?);
        Ok(host)
    }

    /// As [`start`](Self::start), on the shared store at `store` (`--store`),
    /// with no reader of it here.
    pub fn start_shared(
        wasmcron: &Path,
        dir: &Path,
        jobs: &[&str],
        run_args: &[String],
        store: &str,
        client: &tokio::runtime::Runtime,
    ) -> anyhow::Result<Host> {
        Host::spawn(wasmcron, dir, jobs, run_args, Some(store), client)
    }

    fn spawn(
        wasmcron: &Path,
        dir: &Path,
        jobs: &[&str],
        run_args: &[String],
        store: Option<&str>,
        client: &tokio::runtime::Runtime,
    ) -> anyhow::Result<Host> {
        let (jobs_dir, state, log) = (dir.join("jobs"), dir.join("state"), dir.join("host.log"));
        std::fs::create_dir_all(&jobs_dir)?;
        for job in jobs {
            std::fs::write(jobs_dir.join(format!("{job}.wat")), TRIVIAL_WAT)?;
        }
        let addr = free_port()?;
        // The suite's own log filter, as for the sections in process.
        let filter = std::env::var("WASMCRON_LOG").unwrap_or_else(|_| "warn".into());
        let process = Command::new(wasmcron)
            .arg("run")
            .args(run_args)
            .args(store.map(|url| ["--store", url]).into_iter().flatten())
            .args(["--listen", &addr.to_string(), "--jobs"])
            .arg(&jobs_dir)
            .arg("--state")
            .arg(&state)
            .env("WASMCRON_LOG", filter)
            .env_remove("WASMCRON_TOKEN")
            .env_remove("WASMCRON_TOKEN_FILE")
            .env_remove("WASMCRON_STORE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", wasmcron.display()))?;
        let reader = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut host = Host { process, addr, token: String::new(), log, store: None, reader };
        let started = Instant::now();
        while !client.block_on(http::ready(addr))? {
            host.check_alive()?;
            ensure!(started.elapsed() < PATIENCE, "the host was not ready on {addr} within {PATIENCE:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let token = std::fs::read_to_string(state.join("token")).context("reading the host's STATE/token")?;
        host.token = token.trim().to_owned();
        Ok(host)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The host's admin token.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn pid(&self) -> String {
        self.process.id().to_string()
    }

    /// Where triggers of `job` go, with the host's admin token.
    pub fn target(&self, job: &str) -> anyhow::Result<Target> {
        Target::new(self.addr, job, &self.token)
    }

    fn store(&self) -> anyhow::Result<&Arc<dyn Store>> {
        self.store.as_ref().context("a host on a shared store has no reader here; read its database with SQL")
    }

    /// An error, with the end of the host's log, if the host has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.process.try_wait()? {
            bail!("the host exited ({status}); the end of its log:\n{}", self.log_tail());
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until no run is pending or running.
    pub fn drain(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let mut open = 0;
            for status in [RunStatus::Pending, RunStatus::Running] {
                let query = RunQuery { status: Some(status), limit: 1, ..Default::default() };
                open += self.reader.block_on(self.store()?.runs(query))?.len();
            }
            if open == 0 {
                return Ok(());
            }
            self.check_alive()?;
            ensure!(started.elapsed() < PATIENCE, "the host's runs did not all end within {PATIENCE:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every recorded run of `job`.
    pub fn runs(&self, job: &str) -> anyhow::Result<Vec<RunRecord>> {
        let query = RunQuery { job: Some(job.into()), limit: u32::MAX, ..Default::default() };
        Ok(self.reader.block_on(self.store()?.runs(query))?)
    }

    /// When each run of `job` started (its recorded `started_at`), by run id.
    pub fn started(&self, job: &str) -> anyhow::Result<BTreeMap<i64, DateTime<Utc>>> {
        Ok(self.runs(job)?.into_iter().filter_map(|run| Some((run.id, run.started_at?))).collect())
    }

    /// Stops the host with SIGTERM; it must exit 0.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.store = None;
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.process.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.process.try_wait()? {
                break status;
            }
            ensure!(started.elapsed() < PATIENCE, "the host did not stop within {PATIENCE:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        ensure!(status.success(), "the host exited {status} on SIGTERM; the end of its log:\n{}", self.log_tail());
        Ok(())
    }

    /// Kills the host with SIGKILL, as a machine dying would end it, and reaps it.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.store = None;
        self.process.kill()?;
        self.process.wait()?;
        Ok(())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if matches!(self.process.try_wait(), Ok(None)) {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// A local address nothing listens on now (the host binds it a moment later).
fn free_port() -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(probe.local_addr()?)
}
