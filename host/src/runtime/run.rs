//! One run of a compiled job: build its WASI context from the declaration
//! alone (deny by default), instantiate, call, and classify how it ended.
//!
//! Strategy: the guest runs as a future on the caller's tokio runtime (wasm
//! executes on a fiber and yields at every epoch tick). Two things stop it:
//! the epoch callback traps a guest that is executing wasm once the run's
//! `RunControl` says stop, and a `select!` drops the call outright when the
//! deadline passes or a cancel arrives while the guest is parked in a host
//! call (a `poll_oneoff` sleep, say) and executes no wasm at all.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::Runtime;
use super::compile::{CompiledJob, GuestKind};
use super::control::{RunControl, StopReason};
use super::network::NetGuard;
use super::outcome::RunOutcome;
use super::output::{self, Echo};
use super::secrets;
use super::state::{GuestState, MemoryLimiter, WasiP2};
use super::world::{JobApi, JobContext, JobHost};
use crate::config::{DirMode, JobSpec};
use crate::record::{Trigger, format_time};

/// Who, when and why: the facts a guest sees as `WASMCRON_*` variables.
#[derive(Clone)]
pub struct RunContext {
    pub run_id: i64,
    pub attempt: u32,
    pub scheduled_at: DateTime<Utc>,
    pub trigger: Trigger,
    pub payload: Vec<u8>,
    /// Echo captured output to the host's stdout/stderr as it arrives.
    pub echo: bool,
    /// Key-value state and queueing for job-world guests; without it their
    /// calls return an error.
    pub host: Option<Arc<dyn JobHost>>,
}

impl RunContext {
    /// A first, manual run due now, with `payload`, no echo and no job-world host.
    pub fn manual(run_id: i64, payload: Vec<u8>) -> Self {
        RunContext {
            run_id,
            attempt: 1,
            scheduled_at: Utc::now(),
            trigger: Trigger::Manual,
            payload,
            echo: false,
            host: None,
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub outcome: RunOutcome,
    pub fuel_used: Option<u64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub output_dropped: u64,
    /// Destinations (`scheme://host:port`) the network grants refused, sorted.
    pub network_denied: Vec<String>,
}

impl Runtime {
    /// Runs `compiled` (compiled by this runtime) once as `job` describes,
    /// until it ends or `control` stops it. Never panics on guest
    /// behaviour; every end is a `RunOutcome`.
    pub async fn run(
        &self,
        compiled: &CompiledJob,
        job: &JobSpec,
        context: &RunContext,
        control: &RunControl,
    ) -> RunReport {
        // Only this runtime's ticker advances its engines' epochs: a job
        // compiled by another runtime could spin here unchecked.
        debug_assert!(Engine::same(compiled.engine(), &self.engines(compiled.metered).engine));
        // Keeps the epochs ticking until the run ends, or its future is dropped.
        let _ticking = self.ticker.running();
        let (out_echo, err_echo) = if context.echo { (Echo::Stdout, Echo::Stderr) } else { (Echo::None, Echo::None) };
        // Secrets first: a missing one fails the run before the guest starts.
        let resolved = secrets::resolve_blocking(job, &self.credentials).await;
        let redactor = resolved.as_ref().ok().and_then(|r| r.redactor());
        let (stdout, stderr) = output::pipes(job.limits.output, out_echo, err_echo, redactor.clone());
        let net = NetGuard::new(job.network.clone(), stderr.clone());
        let built = resolved.and_then(|resolved| {
            let mut builder = wasi_builder(job, context, &stdout, &stderr, &net)?;
            resolved.apply(&mut builder)?;
            Ok((builder, resolved))
        });
        let (outcome, fuel_used) = match built {
            // `_secrets` holds the run's secret files until the guest is done.
            Ok((builder, _secrets)) => execute(compiled, builder, job, context, &stderr, &net, control).await,
            Err(error) => (RunOutcome::Failed { exit_code: None, error }, None),
        };
        let network_denied = net.denied();
        let outcome = note_denials(outcome, &network_denied);
        let outcome = secrets::redact_outcome(outcome, redactor.as_deref());
        let (stdout, out_dropped) = stdout.take();
        let (stderr, err_dropped) = stderr.take();
        RunReport { outcome, fuel_used, stdout, stderr, output_dropped: out_dropped + err_dropped, network_denied }
    }
}

fn wasi_builder(
    job: &JobSpec,
    context: &RunContext,
    stdout: &output::CapturedPipe,
    stderr: &output::CapturedPipe,
    net: &Arc<NetGuard>,
) -> Result<WasiCtxBuilder, String> {
    let mut builder = WasiCtxBuilder::new();
    builder.arg(&job.name).args(&job.args).envs(&job.env);
    builder
        .env("WASMCRON_JOB", &job.name)
        .env("WASMCRON_RUN_ID", context.run_id.to_string())
        .env("WASMCRON_ATTEMPT", context.attempt.to_string())
        .env("WASMCRON_SCHEDULED_AT", format_time(context.scheduled_at))
        .env("WASMCRON_TRIGGER", context.trigger.as_str());
    builder.stdin(MemoryInputPipe::new(context.payload.clone()));
    builder.stdout(stdout.clone()).stderr(stderr.clone());
    // Sockets are offered to every component, and each use is checked
    // against the grants (and noted if refused); UDP is not offered.
    let guard = net.clone();
    builder.allow_tcp(true).allow_udp(false).allow_ip_name_lookup(true).socket_addr_check(move |address, use_| {
        let allowed = guard.check_socket(address, use_);
        Box::pin(async move { allowed })
    });
    for dir in &job.dirs {
        let perms = match dir.mode {
            DirMode::ReadOnly => FsPerms::ReadOnly,
            DirMode::ReadWrite => FsPerms::ReadWrite,
        };
        builder
            .preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|e| format!("cannot open {} for the guest as {}: {e:#}", dir.host.display(), dir.guest))?;
    }
    Ok(builder)
}

async fn execute(
    compiled: &CompiledJob,
    mut builder: WasiCtxBuilder,
    job: &JobSpec,
    context: &RunContext,
    stderr: &output::CapturedPipe,
    net: &Arc<NetGuard>,
    control: &RunControl,
) -> (RunOutcome, Option<u64>) {
    match &compiled.kind {
        GuestKind::Command(pre) => {
            let state = GuestState { wasi: builder.build_p1(), limiter: MemoryLimiter::new(job.limits.memory) };
            let mut store = Store::new(pre.module().engine(), state);
            let result = match prepare(&mut store, job, control) {
                Ok(()) => {
                    let call = async {
                        let instance = pre.instantiate_async(&mut store).await?;
                        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                        start.call_async(&mut store, ()).await
                    };
                    guard(call, control).await
                }
                Err(e) => Ended::Finished(Err(e)),
            };
            finish(result, &store, job, control)
        }
        GuestKind::Component(pre) => {
            let wasi = WasiP2::new(builder.build(), net.clone(), None);
            let state = GuestState { wasi, limiter: MemoryLimiter::new(job.limits.memory) };
            let mut store = Store::new(pre.engine(), state);
            let result = match prepare(&mut store, job, control) {
                Ok(()) => {
                    let call = async {
                        let command = pre.instantiate_async(&mut store).await?;
                        match command.wasi_cli_run().call_run(&mut store).await? {
                            Ok(()) => Ok(()),
                            Err(()) => Err(wasmtime::Error::new(wasmtime_wasi::I32Exit(1))),
                        }
                    };
                    guard(call, control).await
                }
                Err(e) => Ended::Finished(Err(e)),
            };
            finish(result, &store, job, control)
        }
        GuestKind::Job(pre) => {
            let api = context.host.clone().map(|host| JobApi {
                host,
                job: job.name.clone(),
                run_id: context.run_id,
                log: stderr.clone(),
                used: Default::default(),
            });
            let wasi = WasiP2::new(builder.build(), net.clone(), api);
            let state = GuestState { wasi, limiter: MemoryLimiter::new(job.limits.memory) };
            let mut store = Store::new(pre.engine(), state);
            let job_context = JobContext {
                job: job.name.clone(),
                run_id: context.run_id,
                attempt: context.attempt,
                trigger: context.trigger.as_str().to_owned(),
                scheduled_at: format_time(context.scheduled_at),
            };
            let result = match prepare(&mut store, job, control) {
                Ok(()) => {
                    let call = async {
                        let guest = pre.instantiate_async(&mut store).await?;
                        match guest.call_run(&mut store, &job_context, &context.payload).await? {
                            Ok(()) => Ok(()),
                            Err(message) => Err(wasmtime::Error::new(GuestError(message))),
                        }
                    };
                    guard(call, control).await
                }
                Err(e) => Ended::Finished(Err(e)),
            };
            finish(result, &store, job, control)
        }
    }
}

/// A failed run's error names what the network refused it, if anything:
/// the usual reason a job that reaches out fails.
fn note_denials(outcome: RunOutcome, denied: &[String]) -> RunOutcome {
    match outcome {
        RunOutcome::Failed { exit_code, error } if !denied.is_empty() => {
            let error = format!("{error}\n(network: denied {}; see [network] allow)", denied.join(", "));
            RunOutcome::Failed { exit_code, error }
        }
        other => other,
    }
}

/// The error a job-world guest returned from `run`.
#[derive(Debug)]
pub(crate) struct GuestError(pub String);

impl std::fmt::Display for GuestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GuestError {}

fn prepare<W: Send + 'static>(
    store: &mut Store<GuestState<W>>,
    job: &JobSpec,
    control: &RunControl,
) -> wasmtime::Result<()> {
    store.limiter(|state| &mut state.limiter);
    if let Some(fuel) = job.limits.fuel {
        store.set_fuel(fuel)?;
    }
    let control = control.clone();
    store.epoch_deadline_callback(move |_| {
        Ok(match control.check(tokio::time::Instant::now()) {
            Some(_) => UpdateDeadline::Interrupt,
            // Yield at every tick so one spinning guest cannot hog a worker.
            None => UpdateDeadline::Yield(1),
        })
    });
    store.set_epoch_deadline(1);
    Ok(())
}

enum Ended {
    Finished(wasmtime::Result<()>),
    Stopped(StopReason),
}

/// Drives `call` until it finishes, the deadline passes or a cancel comes.
async fn guard(call: impl Future<Output = wasmtime::Result<()>>, control: &RunControl) -> Ended {
    tokio::select! {
        result = call => Ended::Finished(result),
        () = control.cancelled() => Ended::Stopped(control.stop(StopReason::Cancelled)),
        () = tokio::time::sleep_until(control.deadline()) => Ended::Stopped(control.stop(StopReason::TimedOut)),
    }
}

fn finish<W>(
    ended: Ended,
    store: &Store<GuestState<W>>,
    job: &JobSpec,
    control: &RunControl,
) -> (RunOutcome, Option<u64>) {
    let fuel_used = job.limits.fuel.map(|limit| limit.saturating_sub(store.get_fuel().unwrap_or(0)));
    let outcome = match ended {
        Ended::Finished(Ok(())) => RunOutcome::Succeeded,
        Ended::Finished(Err(error)) => match RunOutcome::from_error(&error, control.stopped()) {
            RunOutcome::Failed { exit_code: None, error } => {
                let error = match store.data().limiter.refused {
                    Some(asked) => format!(
                        "{error}\n(the guest asked for {asked} bytes of linear memory; limits.memory is {} bytes)",
                        job.limits.memory
                    ),
                    None => error,
                };
                RunOutcome::Failed { exit_code: None, error }
            }
            other => other,
        },
        Ended::Stopped(reason) => RunOutcome::from_stop(reason),
    };
    (outcome, fuel_used)
}
