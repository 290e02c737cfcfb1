//! `cargo xtask`: developer tasks that take more than one cargo command.
//!
//!   cargo xtask start   build the example plugins and the host, check the
//!                       bundled jobs.d, and start the host on it
//!   cargo xtask plugins build the example plugins only
//!   cargo xtask bench   the performance suite beside its peers (see bench.rs)
//!
//! Missing toolchains (wasm targets, clang and wasi-libc, Zig) are
//! installed first by `.ci/install-toolchains`, so `start` works on a fresh
//! machine with only the stable Rust toolchain.

mod bench;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().cloned().unwrap_or_else(|| "help".into());
    let result = match task.as_str() {
        "start" => start(),
        "plugins" => build_plugins(),
        "bench" => bench::bench(&args[1..]),
        "help" | "--help" | "-h" => {
            println!(
                "usage: cargo xtask start | plugins | bench [--quick] [--wasmcron PATH] [--bench PATH] [--wasmtime PATH] [--no-install] [--runs N]"
            );
            Ok(())
        }
        other => Err(anyhow::anyhow!("unknown task {other:?}; try `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the repository").to_owned()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(repo_root());
    command
}

fn run(command: &mut Command) -> Result<()> {
    let status = command.status().with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// Installs missing toolchains, then builds every example plugin into the
/// paths jobs.d names.
fn build_plugins() -> Result<()> {
    eprintln!("xtask: checking the plugins' toolchains");
    run(Command::new("bash").arg(repo_root().join(".ci/install-toolchains")))?;
    eprintln!("xtask: building the example plugins");
    run(Command::new("bash").arg(repo_root().join("plugins/build.sh")))
}

fn start() -> Result<()> {
    build_plugins()?;
    eprintln!("xtask: building wasmcron");
    run(cargo().args(["build", "--package", "wasmcron"]))?;
    let wasmcron = repo_root().join("target/debug/wasmcron");
    let wasmcron = || {
        let mut command = Command::new(&wasmcron);
        command.current_dir(repo_root());
        command
    };
    eprintln!("\n$ wasmcron check");
    run(wasmcron().arg("check"))?;
    eprintln!("\n$ wasmcron run");
    eprintln!("xtask: the host runs in the foreground; Ctrl-C stops it. In another terminal:");
    eprintln!(
        "xtask:   target/debug/wasmcron runs      target/debug/wasmcron jobs      target/debug/wasmcron logs ID\n"
    );
    // Ctrl-C reaches the host (same process group); its own exit code is ours.
    let status = wasmcron().arg("run").status().context("starting wasmcron run")?;
    if !status.success() {
        bail!("wasmcron run exited with {status}");
    }
    Ok(())
}
