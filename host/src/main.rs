//! The `wasmcron` binary: parse the command line, install logging, run, and
//! turn the result into an exit code, printing any error once.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use wasmcron::cli::{self, Cli, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        EnvFilter::try_from_env("WASMCRON_LOG").unwrap_or_else(|_| EnvFilter::new(cli.command.default_log_filter()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // The journal stamps every line with its own time: not twice.
    match (cli.globals.log_format, wasmcron::systemd::logs_to_journal()) {
        (LogFormat::Text, false) => logs.init(),
        (LogFormat::Text, true) => logs.without_time().init(),
        (LogFormat::Json, false) => logs.json().flatten_event(true).init(),
        (LogFormat::Json, true) => logs.json().flatten_event(true).without_time().init(),
    }
    match cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(cli::exit_code(&error))
        }
    }
}
