//! `wasmcron once JOB`: run one job now, in the foreground, recorded in the
//! state database like any other run. The guest's stdout and stderr pass
//! through to ours (or, with `--json`, the run record is printed instead).
//! Ctrl-C cancels the run, which is then recorded `cancelled`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::Utc;

use super::{CONFIG_ERROR, FAILED, Globals};
use crate::config::{self, JobSpec};
use crate::jobhost::{Queue, StoreJobHost};
use crate::record::{RunStatus, Trigger};
use crate::registry;
use crate::runtime::{CredentialDirs, RunContext, RunControl};
use crate::scheduler;
use crate::store::NewRun;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job's name (its declaration's file stem).
    pub job: String,
    /// Print the run record as JSON instead of the guest's output.
    #[arg(long)]
    pub json: bool,
    /// A file whose bytes are the guest's stdin (`-` reads our stdin).
    #[arg(long, value_name = "FILE|-")]
    pub payload: Option<PathBuf>,
}

pub fn run(globals: &Globals, args: Args) -> anyhow::Result<ExitCode> {
    let (spec, declared) = match find_job(&globals.jobs, &args.job) {
        Ok(found) => found,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(CONFIG_ERROR));
        }
    };
    let payload = read_payload(args.payload.as_deref())?;
    let runtime = globals.runtime()?.with_credentials(CredentialDirs::from_env(&globals.state));
    let cache = super::compile_cache(globals);
    let loaded =
        registry::read_module(&spec).and_then(|bytes| registry::compile(&runtime, &spec, &bytes, cache.as_ref()));
    let compiled = match loaded {
        Ok((job, _)) => job.compiled,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(CONFIG_ERROR));
        }
    };
    let tokio =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let store = tokio.block_on(globals.store_url()?.open())?;
    let started_at = Utc::now();
    let row = NewRun {
        status: RunStatus::Running,
        started_at: Some(started_at),
        module_sha256: Some(compiled.sha256.clone()),
        payload: payload.clone(),
        ..NewRun::pending(&spec.name, Trigger::Manual, started_at)
    };
    let run_id = tokio.block_on(store.insert_runs(vec![row]))?[0];
    let context = RunContext {
        run_id,
        attempt: 1,
        scheduled_at: started_at,
        trigger: Trigger::Manual,
        payload,
        echo: !args.json,
        // Enqueued runs wait as pending rows for the next host start.
        host: Some(Arc::new(StoreJobHost { store: store.clone(), queue: Queue::Pending(declared) })),
    };

    let report = tokio.block_on(async {
        let control = RunControl::new(spec.limits.timeout);
        let on_ctrl_c = control.clone();
        let ctrl_c = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_ctrl_c.cancel();
            }
        });
        let report = runtime.run(&compiled, &spec, &context, &control).await;
        ctrl_c.abort();
        report
    });

    let ended_at = Utc::now();
    let (outcome, finished) = scheduler::finished(report, ended_at);
    tokio.block_on(store.finish_run(run_id, finished))?;
    tracing::info!(job = %spec.name, run_id, attempt = 1, outcome = outcome.status().as_str(),
        duration_ms = (ended_at - started_at).num_milliseconds(), "run ended");

    let record =
        tokio.block_on(store.run(run_id))?.context("the run just recorded is missing from the state database")?;
    if args.json {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, &record)?;
        writeln!(stdout)?;
    } else if !outcome.is_success() {
        let seconds = (ended_at - started_at).num_milliseconds() as f64 / 1000.0;
        eprintln!("wasmcron: run {run_id} of {} {outcome} after {seconds:.2}s", spec.name);
    }
    Ok(if outcome.is_success() { ExitCode::SUCCESS } else { ExitCode::from(FAILED) })
}

/// Finds `name` in the jobs folder, or says why not in one message.
/// Also returns the names of every job declared there.
fn find_job(dir: &std::path::Path, name: &str) -> Result<(JobSpec, BTreeSet<String>), String> {
    config::validate_name(name)?;
    let loaded = config::load_dir(dir)
        .map_err(|e| format!("cannot read the jobs folder {}: {e}; create it or pass --jobs DIR", dir.display()))?;
    let declared: BTreeSet<String> = loaded.jobs.iter().map(|job| job.name.clone()).collect();
    if let Some(spec) = loaded.jobs.into_iter().find(|job| job.name == name) {
        return Ok((spec, declared));
    }
    if let Some(error) = loaded.errors.iter().find(|e| e.job() == name) {
        return Err(error.to_string());
    }
    Err(format!(
        "no job named {name:?} in {}; add {name}.toml (or {name}.wasm) there, or run `wasmcron check` to list the jobs",
        dir.display()
    ))
}

pub(super) fn read_payload(source: Option<&std::path::Path>) -> anyhow::Result<Vec<u8>> {
    let mut payload = Vec::new();
    match source {
        None => {}
        Some(path) if path.as_os_str() == "-" => {
            std::io::stdin().read_to_end(&mut payload).context("reading the payload from stdin")?;
        }
        Some(path) => {
            payload =
                std::fs::read(path).with_context(|| format!("--payload {}: cannot read the file", path.display()))?;
        }
    }
    if payload.len() > MAX_PAYLOAD {
        bail!("the payload is {} bytes; the most a run accepts is {MAX_PAYLOAD}", payload.len());
    }
    Ok(payload)
}

/// Payloads are held in memory and stored; keep them modest.
const MAX_PAYLOAD: usize = 16 << 20;
