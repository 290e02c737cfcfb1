//! `wasmcron-bench`: wasmcron's performance suite, as a program of its own
//! beside the product. It links the `wasmcron` library and drives the real
//! host path — scheduler, store, sandbox — in this process, and a real
//! `wasmcron run` child (`--wasmcron`) for the idle host's memory and for
//! triggers over its HTTP API, and several sharing one PostgreSQL database
//! (`wasmcron-test-pg`'s throwaway server) for the cluster. See
//! `suite` for the sections; `cargo xtask bench` runs this beside its peers.
//!
//! Exit codes: 0 the suite ran (met targets or not: the report says), 1 a
//! section failed, 2 a usage or setup error, found before any section ran.

mod child;
mod cluster;
mod daemon;
mod floor;
mod history;
mod http;
mod kernel;
mod memory;
mod observe;
mod outbound;
mod report;
mod sandbox;
mod soak;
mod suite;
mod trigger;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use suite::{Section, Setup};

/// wasmcron's performance suite: figures beside the targets wasmcron holds
/// itself to, as a Markdown table or JSON.
#[derive(Debug, Parser)]
#[command(name = "wasmcron-bench", version, about)]
struct Args {
    /// Sections to run (comma-separated); all of them but `soak` by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// `max_running` caps for the throughput section (comma-separated);
    /// by default 1, 4, 16, 64 and 256 (with --quick, 1 and 8).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..=512))]
    concurrency: Vec<u16>,
    /// Small sizes, for checking the suite works; the numbers mean little.
    #[arg(long)]
    quick: bool,
    /// The SHA-256 kernel built to wasm, for the `kernel` section.
    #[arg(long, value_name = "FILE", default_value = "plugins/target/wasm32-wasip1/release/hash-kernel.wasm")]
    kernel: PathBuf,
    /// The test probe built as a component, for the `outbound` section.
    #[arg(long, value_name = "FILE", default_value = "tests/guests/target/wasm32-wasip2/release/probe.wasm")]
    probe: PathBuf,
    /// The `wasmcron` binary whose `wasmcron run` the `memory` and
    /// `trigger` sections measure [default: `wasmcron` beside this program].
    #[arg(long, value_name = "PATH")]
    wasmcron: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The host's own warnings (a store write that failed, say), as `wasmcron` shows them.
    let filter = EnvFilter::try_from_env("WASMCRON_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(if error.chain().any(|cause| cause.is::<Setup>()) { 2 } else { 1 })
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let wasmcron = match args.wasmcron {
        Some(path) => path,
        None => std::env::current_exe().context("locating this program")?.with_file_name("wasmcron"),
    };
    let options = suite::Options {
        sections: if args.only.is_empty() { Section::ALL.to_vec() } else { args.only },
        quick: args.quick,
        kernel: args.kernel,
        probe: args.probe,
        wasmcron,
        concurrency: args.concurrency.iter().map(|&n| usize::from(n)).collect(),
    };
    let report = suite::run(&options, |section| eprintln!("wasmcron-bench: {} …", section.name()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_markdown());
    }
    Ok(())
}
