//! `wasmcron run`: the host, in the foreground. Loads and compiles jobs.d,
//! recovers from the last stop, fires jobs until SIGINT or SIGTERM, then
//! lets running guests finish within the grace period, cancels the rest,
//! flushes the store and exits 0 (3 if it could not ride out a failure).
//! Jobs reload as their files change. Under systemd it speaks the notify
//! protocol (see `systemd`).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;

use super::{Globals, RuntimeFailure};
use tokio::sync::watch;

use crate::api::{self, ApiState, Tokens};
use crate::clock::Clock;
use crate::registry::Registry;
use crate::runtime::CredentialDirs;
use crate::scheduler::{ReloadConfig, Scheduler, SchedulerConfig};
use crate::store::Retention;
use crate::systemd::Notifier;
use crate::units;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Guests running at once, across all jobs.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub max_running: u32,
    /// On shutdown, how long running guests may take before they are cancelled.
    #[arg(long, default_value = "15s", value_parser = duration)]
    pub grace: Duration,
    /// Triggered runs accepted and waiting to start, at most; a trigger
    /// beyond it is refused ("try again later"), never dropped.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_queued: u32,
    /// Runs kept per job; older ones are pruned every `--prune-every`.
    #[arg(long, default_value_t = 1000)]
    pub keep_runs: u32,
    /// How often history is pruned to `--keep-runs`, `--keep-for` and
    /// `--keep-failed-for`.
    #[arg(long, default_value = "1h", value_parser = prune_every)]
    pub prune_every: Duration,
    /// Age after which successful, skipped and missed runs are pruned.
    #[arg(long, default_value = "30d", value_parser = duration)]
    pub keep_for: Duration,
    /// Age after which runs that did not succeed are pruned.
    #[arg(long, default_value = "90d", value_parser = duration)]
    pub keep_failed_for: Duration,
    /// On a shared (PostgreSQL) store: how long a claimed run holds without
    /// its lease renewed (every third of it). A host silent for longer,
    /// paused or cut off, loses its runs to the others and stops them.
    #[arg(long, default_value = "30s", value_parser = lease)]
    pub lease: Duration,
    /// On a shared store: this host's name in the hosts table.
    /// Default: the machine's host name and this process's id.
    #[arg(long, env = "WASMCRON_HOST_NAME")]
    pub host_name: Option<String>,
    /// How long file changes must settle before jobs are reloaded.
    #[arg(long, default_value = "75ms", value_parser = duration)]
    pub debounce: Duration,
}

/// `--prune-every`: at least a second, so pruning never crowds out runs.
fn prune_every(text: &str) -> Result<Duration, String> {
    let every = duration(text)?;
    if every < Duration::from_secs(1) {
        return Err(format!("{text:?} is too often to prune history; give 1s or more (the default is 1h)"));
    }
    Ok(every)
}

/// `--lease`: long enough for a renewal a third of the way through to
/// survive a slow round trip.
fn lease(text: &str) -> Result<Duration, String> {
    let lease = duration(text)?;
    if lease < Duration::from_secs(3) {
        return Err(format!("{text:?} is too short for a lease; give 3s or more (the default is 30s)"));
    }
    Ok(lease)
}

/// `HOSTNAME-PID`: tells apart hosts on one machine, as in the tests.
fn default_host_name() -> String {
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let machine = machine.trim();
    format!("{}-{}", if machine.is_empty() { "wasmcron" } else { machine }, std::process::id())
}

/// How long requests in progress may take once the host has stopped.
const HTTP_GRACE: Duration = Duration::from_secs(2);

/// Binds the API's address now, so that a taken port fails the start.
fn bind(listen: &str) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(listen).with_context(|| {
        format!("--listen {listen}: cannot listen there; is another wasmcron host running? pass --listen HOST:PORT")
    })?;
    listener.set_nonblocking(true).context("serving the HTTP API")?;
    let address = listener.local_addr().context("serving the HTTP API")?;
    if !address.ip().is_loopback() {
        tracing::warn!(%address, "the API listens beyond this machine over plain HTTP: put it behind a TLS-terminating \
            reverse proxy (see the README), and keep STATE/token secret");
    }
    tracing::info!(%address, "HTTP API listening");
    Ok(listener)
}

fn duration(text: &str) -> Result<Duration, String> {
    units::parse_duration(text)
}

pub fn run(globals: &Globals, args: Args) -> anyhow::Result<ExitCode> {
    let tokio =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    // Caught from the start: a SIGTERM while jobs load or the host recovers
    // is acted on as soon as the scheduler runs (a clean stop, exit 0),
    // rather than killing the process by the signal's default action.
    let signal = {
        let _entered = tokio.enter();
        shutdown_signal().context("installing the SIGINT and SIGTERM handlers")?
    };
    let notifier = Notifier::from_env().map(Arc::new);
    let stopping = notifier.clone();
    let shutdown = async move {
        signal.await;
        if let Some(notifier) = stopping {
            notifier.stopping();
        }
    };
    let tokens = Arc::new(Tokens::load_or_create(&globals.state, globals.supplied_token()?)?);
    let listener = bind(&globals.listen)?;
    let url = globals.store_url()?;
    let store = tokio.block_on(url.open())?;
    let cache = super::compile_cache(globals).map(Arc::new);
    let runtime = Arc::new(globals.runtime()?.with_credentials(CredentialDirs::from_env(&globals.state)));
    let registry = Registry::load(&runtime, &globals.jobs, cache.as_deref())?;
    let mut reported = BTreeMap::new();
    for error in &registry.errors {
        tracing::error!("{error}");
        reported.insert(error.job().to_owned(), error.to_string());
    }
    for job in &registry.jobs {
        for warning in job.network_warnings() {
            tracing::warn!(job = %job.spec.name, "{warning}");
        }
    }
    if let Err(error) = tokio.block_on(store.record_loads(registry.loads(), Utc::now())) {
        // Only what `wasmcron jobs` shows without a host is behind; the
        // scheduler rides out a failing store on its own.
        tracing::warn!(%error, "could not record the loaded jobs in the store");
    }
    tracing::info!(
        jobs = registry.jobs.len(),
        errors = registry.errors.len(),
        compiled = registry.compiled,
        cached = registry.cached,
        dir = %globals.jobs.display(),
        store = %url,
        "wasmcron host started"
    );

    let config = SchedulerConfig {
        max_running: args.max_running as usize,
        max_queued: args.max_queued as usize,
        grace: args.grace,
        retention: Retention {
            max_count: args.keep_runs,
            max_age: args.keep_for,
            failed_max_age: args.keep_failed_for,
        },
        prune_every: args.prune_every,
        lease: args.lease,
        host_name: args.host_name.clone().unwrap_or_else(default_host_name),
    };
    let reload = ReloadConfig {
        jobs_dir: globals.jobs.clone(),
        cache,
        debounce: args.debounce,
        module_folders: registry.module_folders,
        reported,
    };
    let clock = Clock::from_env().map_err(anyhow::Error::msg)?;
    if let Clock::Skewed(by) = clock {
        tracing::warn!(skew_s = by.num_seconds(), "WASMCRON_CLOCK_SKEW: this host's clock is set off on purpose");
    }
    let (scheduler, handle) = Scheduler::new(runtime, store.clone(), clock, config, registry.jobs);
    let (closing, closed) = watch::channel(false);
    let (scheduler, state) = ApiState::observing(scheduler, handle, store, tokens, closed.clone());
    let mut scheduler = scheduler.with_reload(reload);
    if let Some(notifier) = &notifier {
        if let Some(every) = notifier.watchdog_interval() {
            tracing::info!(every_ms = every.as_millis() as u64, "systemd watchdog: the scheduler pings it");
            scheduler = scheduler.with_watchdog(every, notifier.clone());
        }
        let (notifier, view) = (notifier.clone(), state.handle.jobs());
        tokio.spawn(async move { notifier.follow(view).await });
    }

    let server = {
        let _entered = tokio.enter();
        let listener = tokio::net::TcpListener::from_std(listener).context("serving the HTTP API")?;
        let mut closed = closed;
        let stop = async move {
            let _ = closed.wait_for(|closed| *closed).await;
        };
        tokio.spawn(api::serve(listener, api::app(state), stop, HTTP_GRACE))
    };
    let ran = tokio.block_on(scheduler.run(shutdown));
    // The API answers until the scheduler has drained (commands meanwhile
    // get 503), then finishes the requests in progress.
    let _ = closing.send(true);
    match tokio.block_on(server) {
        Ok(Err(error)) => tracing::warn!(%error, "the HTTP API failed"),
        Err(error) => tracing::warn!(%error, "the HTTP API task failed"),
        Ok(Ok(())) => {}
    }
    ran.map_err(RuntimeFailure)?;
    // Dropping the runtime waits for the store's last commit in flight.
    drop(tokio);
    tracing::info!("wasmcron host stopped");
    Ok(ExitCode::SUCCESS)
}

/// Installs the SIGINT (Ctrl-C) and SIGTERM handlers now; the future
/// resolves at the first of either, including one that came before it
/// was polled. Needs the tokio runtime's context.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut interrupt, mut terminate) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        }
    })
}
