//! `wasmcron run`: the host, in the foreground. Loads and compiles jobs.d,
//! recovers from the last stop, fires jobs until SIGINT or SIGTERM, then
//! lets running guests finish within the grace period, cancels the rest,
//! flushes the store and exits 0.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::Globals;
use crate::clock::Clock;
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::store::{Retention, Store, StoreHandle};
use crate::units;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Guests running at once, across all jobs.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub max_running: u32,
    /// On shutdown, how long running guests may take before they are cancelled.
    #[arg(long, default_value = "15s", value_parser = duration)]
    pub grace: Duration,
    /// Runs kept per job; older ones are pruned hourly.
    #[arg(long, default_value_t = 1000)]
    pub keep_runs: u32,
    /// Age after which successful, skipped and missed runs are pruned.
    #[arg(long, default_value = "30d", value_parser = duration)]
    pub keep_for: Duration,
    /// Age after which runs that did not succeed are pruned.
    #[arg(long, default_value = "90d", value_parser = duration)]
    pub keep_failed_for: Duration,
}

fn duration(text: &str) -> Result<Duration, String> {
    units::parse_duration(text)
}

pub fn run(globals: &Globals, args: Args) -> anyhow::Result<ExitCode> {
    let tokio =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let store = Store::open(&globals.state)?;
    let (store, store_thread) = StoreHandle::spawn(store);
    tokio.block_on(async {
        let runtime = Arc::new(Runtime::new()?);
        let registry = {
            let (runtime, dir) = (runtime.clone(), globals.jobs.clone());
            tokio::task::spawn_blocking(move || Registry::load(&runtime, &dir)).await??
        };
        for error in &registry.errors {
            tracing::error!("{error}");
        }
        tracing::info!(
            jobs = registry.jobs.len(),
            errors = registry.errors.len(),
            dir = %globals.jobs.display(),
            state = %globals.state.display(),
            "wasmcron host started"
        );
        let config = SchedulerConfig {
            max_running: args.max_running as usize,
            grace: args.grace,
            retention: Retention {
                max_count: args.keep_runs,
                max_age: args.keep_for,
                failed_max_age: args.keep_failed_for,
            },
        };
        let scheduler = Scheduler::new(runtime, store, Clock::System, config, registry.jobs);
        scheduler.run(shutdown_signal()).await
    })?;
    drop(tokio); // ends any task still holding a store handle
    store_thread.join().map_err(|_| anyhow::anyhow!("the store thread panicked"))?;
    tracing::info!("wasmcron host stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves at the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
}
