//! The `wasmcron` binary: parse the command line, install logging, run, and
//! turn the result into an exit code, printing any error once.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use wasmcron::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("WASMCRON_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(cli::CONFIG_ERROR)
        }
    }
}
