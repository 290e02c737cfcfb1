//! The `wasmcron` command line: options parsed by clap into [`Cli`], one
//! file per subcommand. Each subcommand returns its exit code; errors bubble
//! up to `main`, which prints them once.
//!
//! Exit codes: 0 success, 1 the job or the check failed, 2 usage or
//! configuration error, 3 a runtime failure the host could not ride out
//! (an error wrapped in [`RuntimeFailure`]).

mod backup;
mod bench;
mod check;
mod client;
mod jobs;
mod new;
mod next;
mod once;
mod pause;
mod run;
mod runs;
mod trigger;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Runs WebAssembly jobs on cron schedules, each in a wasmtime sandbox.
#[derive(Debug, Parser)]
#[command(name = "wasmcron", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub globals: Globals,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, clap::Args)]
pub struct Globals {
    /// Folder of job declarations (`NAME.toml`) and bare modules.
    #[arg(long, global = true, env = "WASMCRON_JOBS", default_value = "./jobs.d")]
    pub jobs: PathBuf,
    /// Folder for the compile cache, tokens, and the SQLite database.
    #[arg(long, global = true, env = "WASMCRON_STATE", default_value = "./.wasmcron")]
    pub state: PathBuf,
    /// Where run history and job state are kept: `sqlite:PATH`
    /// [default: sqlite:STATE/wasmcron.db].
    #[arg(long, global = true, env = "WASMCRON_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Address of the HTTP API: where `run` listens and where `trigger`,
    /// `cancel` and `retry` find the host.
    #[arg(long, global = true, env = "WASMCRON_LISTEN", default_value = "127.0.0.1:7878")]
    pub listen: String,
    /// A file holding the admin API token, instead of STATE/token (the
    /// token itself may be given in WASMCRON_TOKEN).
    #[arg(long, global = true, env = "WASMCRON_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Log format on stderr: `text` for people, `json` for machines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The longest a module may take to compile when jobs are loaded
    /// (`run`, a reload, `check`, `once`); one that takes longer is a load
    /// error naming its file and the limit.
    #[arg(long, global = true, env = "WASMCRON_COMPILE_TIMEOUT", default_value = "30s", value_name = "DUR",
          value_parser = crate::units::parse_duration)]
    pub compile_timeout: std::time::Duration,
}

impl Globals {
    /// The runtime every subcommand that compiles starts from.
    pub fn runtime(&self) -> anyhow::Result<crate::runtime::Runtime> {
        Ok(crate::runtime::Runtime::new()?.with_compile_timeout(self.compile_timeout))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The host, in the foreground: fire jobs on schedule until SIGINT/SIGTERM.
    Run(run::Args),
    /// Validate declarations and compile modules; exit 1 on any error.
    Check(check::Args),
    /// Run one job now in the foreground; exit 0 only if it succeeded.
    Once(once::Args),
    /// Print the next fire times of a cron expression.
    Next(next::Args),
    /// List jobs: schedule, next fire, last outcome, pause state, load errors.
    Jobs(jobs::Args),
    /// Start a run of a job on the running host, now or later; prints its id.
    Trigger(trigger::TriggerArgs),
    /// Cancel a run on the running host: a pending one never starts, a running one is stopped.
    Cancel(trigger::RunArgs),
    /// Start a new run (attempt 1, trigger manual) of a run that has ended; prints its id.
    Retry(trigger::RunArgs),
    /// List recorded runs, newest first.
    Runs(runs::RunsArgs),
    /// Print a run's captured stdout and stderr.
    Logs(runs::LogsArgs),
    /// Stop a job from firing until resumed.
    Pause(pause::PauseArgs),
    /// Let a paused job fire again.
    Resume(pause::Args),
    /// Scaffold a job in a language: source, build script, declaration.
    New(new::Args),
    /// Copy the SQLite store to FILE, online: the host may keep running.
    Backup(backup::Args),
    /// Measure a job's module (run time, fuel, output) to size its limits (`--job JOB`).
    Bench(bench::Args),
}

impl Command {
    /// The log filter when `WASMCRON_LOG` is unset: the host reports each
    /// run; one-shot commands keep quiet but for warnings.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Run(_) => "info",
            _ => "warn",
        }
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check::run(&cli.globals, args),
        Command::Once(args) => once::run(&cli.globals, args),
        Command::Next(args) => next::run(args),
        Command::Run(args) => run::run(&cli.globals, args),
        Command::Jobs(args) => jobs::run(&cli.globals, args),
        Command::Trigger(args) => trigger::trigger(&cli.globals, args),
        Command::Cancel(args) => trigger::cancel(&cli.globals, args),
        Command::Retry(args) => trigger::retry(&cli.globals, args),
        Command::Runs(args) => runs::runs(&cli.globals, args),
        Command::Logs(args) => runs::logs(&cli.globals, args),
        Command::Pause(args) => pause::pause(&cli.globals, args),
        Command::Resume(args) => pause::run(&cli.globals, args, false, None),
        Command::New(args) => new::run(&cli.globals, args),
        Command::Bench(args) => bench::run(&cli.globals, args),
        Command::Backup(args) => backup::run(&cli.globals, args),
    }
}

/// The compile cache in the state folder. Best effort: without it, modules
/// are compiled every time.
pub fn compile_cache(globals: &Globals) -> Option<crate::runtime::CompileCache> {
    let dir = globals.state.join("cache");
    crate::runtime::CompileCache::open(&dir)
        .inspect_err(|error| tracing::warn!(dir = %dir.display(), %error, "compile cache unavailable"))
        .ok()
}

/// Exit code for "the job or the check failed".
pub const FAILED: u8 = 1;
/// Exit code for usage and configuration errors.
pub const CONFIG_ERROR: u8 = 2;
/// Exit code for a failure the running host could not ride out.
pub const RUNTIME_FAILURE: u8 = 3;

/// An error that ends a host that was running, as opposed to one that
/// stopped it from starting: exits with [`RUNTIME_FAILURE`].
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct RuntimeFailure(pub anyhow::Error);

/// The exit code for an error that ended a command.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.chain().any(|cause| cause.is::<RuntimeFailure>()) { RUNTIME_FAILURE } else { CONFIG_ERROR }
}

impl Globals {
    /// The admin token an operator supplied (`WASMCRON_TOKEN`, then
    /// `--token-file`), if any.
    pub fn supplied_token(&self) -> anyhow::Result<Option<String>> {
        if let Ok(token) = std::env::var("WASMCRON_TOKEN") {
            return crate::api::auth::validate(&token, "WASMCRON_TOKEN").map(Some);
        }
        let Some(path) = &self.token_file else { return Ok(None) };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--token-file {}: cannot read the file", path.display()))?;
        crate::api::auth::validate(&text, &format!("--token-file {}", path.display())).map(Some)
    }

    /// The store `--store` names, or the default in the state folder.
    pub fn store_url(&self) -> anyhow::Result<crate::store::StoreUrl> {
        Ok(crate::store::StoreUrl::resolve(self.store.as_deref(), &self.state)?)
    }
}

/// Runs `work` to completion on a small runtime of its own: the CLI's
/// one-shot commands reach the store, which is async, this way.
pub fn block_on<T>(work: impl Future<Output = T>) -> anyhow::Result<T> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    Ok(runtime.block_on(work))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_of_the_running_host_exits_3_and_anything_else_2() {
        let failed = anyhow::Error::new(RuntimeFailure(anyhow::anyhow!("the watcher stopped")));
        assert_eq!(exit_code(&failed.context("running the host")), RUNTIME_FAILURE);
        assert_eq!(exit_code(&anyhow::anyhow!("jobs.d: cannot be read")), CONFIG_ERROR);
    }
}
