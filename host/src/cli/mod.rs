//! The `wasmcron` command line: options parsed by clap into [`Cli`], one
//! file per subcommand. Each subcommand returns its exit code; errors bubble
//! up to `main`, which prints them once.
//!
//! Exit codes: 0 success, 1 the job or the check failed, 2 usage or
//! configuration error.

mod check;
mod next;
mod once;

use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Folder for the SQLite database and compile cache.
    #[arg(long, global = true, env = "WASMCRON_STATE", default_value = "./.wasmcron")]
    pub state: PathBuf,
    /// Address of the control plane (used by the daemon).
    #[arg(long, global = true, env = "WASMCRON_LISTEN", default_value = "127.0.0.1:7878")]
    pub listen: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate declarations and compile modules; exit 1 on any error.
    Check(check::Args),
    /// Run one job now in the foreground; exit 0 only if it succeeded.
    Once(once::Args),
    /// Print the next fire times of a cron expression.
    Next(next::Args),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check::run(&cli.globals, args),
        Command::Once(args) => once::run(&cli.globals, args),
        Command::Next(args) => next::run(args),
    }
}

/// Exit code for "the job or the check failed".
pub const FAILED: u8 = 1;
/// Exit code for usage and configuration errors.
pub const CONFIG_ERROR: u8 = 2;
