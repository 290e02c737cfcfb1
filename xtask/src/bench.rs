//! `cargo xtask bench`: the performance suite and its peers, in one run.
//!
//! Runs the suite, `wasmcron-bench --json` (the `bench/` crate, built in
//! release mode with the `wasmcron` whose `wasmcron run` its memory and
//! trigger sections start), then the alternatives a user would pick instead, on the same trivial job
//! (`bench/trivial.wat`, or `bench/trivial.rs` natively), one run after
//! another and then as many at once as there are cores:
//!
//! - `wasmtime run` started once per run — cron plus the wasmtime CLI —
//!   with its defaults, and with the module precompiled (`.cwasm`);
//! - a native process started once per run — what cron does.
//!
//! The bare wasmtime instantiate-and-call loop is measured inside
//! `wasmcron-bench` (section `floor`). Each peer is reported beside
//! wasmcron's throughput as a ratio. The report is also written to
//! `target/bench/report.json`.
//!
//! Options: `--quick` (small sizes, for the test suite), `--wasmcron PATH`
//! and `--bench PATH` (built `wasmcron` and `wasmcron-bench` binaries
//! instead of building them), `--wasmtime PATH`,
//! `--no-install` (skip the wasmtime CLI peer if it is not installed
//! rather than `cargo install` it into target/peers, ~10 minutes once),
//! `--runs N` (runs per peer, default 2000).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::{cargo, repo_root, run};

/// The wasmtime CLI release matching the library wasmcron embeds.
const WASMTIME_VERSION: &str = "48.0.8";

struct Options {
    quick: bool,
    wasmcron: Option<PathBuf>,
    bench: Option<PathBuf>,
    wasmtime: Option<PathBuf>,
    install: bool,
    runs: usize,
}

fn options(args: &[String]) -> Result<Options> {
    let mut options = Options { quick: false, wasmcron: None, bench: None, wasmtime: None, install: true, runs: 2000 };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--no-install" => options.install = false,
            "--wasmcron" => options.wasmcron = Some(value("--wasmcron")?.into()),
            "--bench" => options.bench = Some(value("--bench")?.into()),
            "--wasmtime" => options.wasmtime = Some(value("--wasmtime")?.into()),
            "--runs" => options.runs = value("--runs")?.parse().context("--runs takes a number")?,
            other => bail!("unknown option {other:?}; see the top of xtask/src/bench.rs"),
        }
    }
    if options.quick && options.runs == 2000 {
        options.runs = 20;
    }
    ensure!(options.runs > 0, "--runs must be at least 1");
    Ok(options)
}

pub fn bench(args: &[String]) -> Result<()> {
    let options = options(args)?;
    let root = repo_root();
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;

    let (wasmcron, bench) = binaries(&options, &root)?;
    eprintln!("xtask: building the SHA-256 kernel");
    run(Command::new("rustup").args(["target", "add", "wasm32-wasip1"]).stdout(Stdio::null()))?;
    run(Command::new("bash").arg(root.join("plugins/build.sh")).arg("hash-kernel"))?;
    eprintln!("xtask: building the test probe as a component (the outbound section's guest)");
    run(Command::new("cargo")
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(root.join("tests/guests/Cargo.toml"))
        .env_remove("CARGO_TARGET_DIR"))?;
    let native = out.join("trivial");
    run(Command::new("rustc").args(["-O", "-o"]).arg(&native).arg(root.join("bench/trivial.rs")))?;

    eprintln!("xtask: running {}", bench.display());
    let mut suite = Command::new(&bench);
    suite.current_dir(&root).args(["--json", "--wasmcron"]).arg(&wasmcron).stderr(Stdio::inherit());
    if options.quick {
        suite.arg("--quick");
    }
    let output = suite.output().with_context(|| format!("running {}", bench.display()))?;
    ensure!(output.status.success(), "wasmcron-bench failed ({})", output.status);
    let mut report: Value = serde_json::from_slice(&output.stdout).context("reading wasmcron-bench --json")?;

    let trivial = root.join("bench/trivial.wat");
    let mut peers = Vec::new();
    match wasmtime_cli(&options, &root)? {
        Some(wasmtime) => {
            let cwasm = out.join("trivial.cwasm");
            run(Command::new(&wasmtime).arg("compile").arg(&trivial).arg("-o").arg(&cwasm))?;
            let mut cli = Command::new(&wasmtime);
            cli.arg("run").arg(&trivial);
            peers.push(measure("wasmtime run, once per run (CLI defaults)", cli, options.runs)?);
            let mut precompiled = Command::new(&wasmtime);
            precompiled.args(["run", "--allow-precompiled"]).arg(&cwasm);
            peers.push(measure("wasmtime run, once per run, precompiled .cwasm", precompiled, options.runs)?);
        }
        None => eprintln!("xtask: no wasmtime CLI (--no-install); its peer rows are left out"),
    }
    peers.push(measure("native process, once per run", Command::new(&native), options.runs)?);

    let figure = |id: &str| {
        report["figures"].as_array().and_then(|f| f.iter().find(|f| f["id"] == id)).and_then(|f| f["value"].as_f64())
    };
    let bare = figure("per_run.bare").map(|us| 1e6 / us).context("the report has no per_run.bare")?;
    let serial = figure("throughput.c1").context("the report has no throughput.c1")?;
    let best = figure("throughput.best").context("the report has no throughput.best")?;
    let mut rows = vec![json!({
        "peer": "bare wasmtime instantiate-and-call loop, in process (no records)",
        "serial_runs_per_s": bare, "parallel_runs_per_s": null,
    })];
    rows.extend(
        peers
            .iter()
            .map(|p| json!({ "peer": p.name, "serial_runs_per_s": p.serial, "parallel_runs_per_s": p.parallel })),
    );
    for row in &mut rows {
        row["wasmcron_serial_ratio"] = json!(serial / row["serial_runs_per_s"].as_f64().unwrap_or(f64::NAN));
        row["wasmcron_best_ratio"] =
            json!(best / row["parallel_runs_per_s"].as_f64().or(row["serial_runs_per_s"].as_f64()).unwrap_or(f64::NAN));
    }
    report["peers"] = json!({
        "runs": options.runs,
        "wasmcron_serial_runs_per_s": serial,
        "wasmcron_best_runs_per_s": best,
        "rows": rows,
    });
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report)?)?;

    println!("{}", table(&report));
    println!(
        "Peers ({} runs each; wasmcron: {serial:.0} runs/s at max_running 1, {best:.0} at its best):\n",
        options.runs
    );
    println!(
        "| peer | one at a time | {} at once | wasmcron ÷ peer, one at a time | wasmcron best ÷ peer best |",
        cores()
    );
    println!("|---|---|---|---|---|");
    for row in report["peers"]["rows"].as_array().expect("built above") {
        let rate = |v: &Value| v.as_f64().map_or("—".to_owned(), |r| format!("{r:.0} runs/s"));
        let ratio = |v: &Value| v.as_f64().map_or("—".to_owned(), |r| format!("{r:.2}×"));
        println!(
            "| {} | {} | {} | {} | {} |",
            row["peer"].as_str().unwrap_or("?"),
            rate(&row["serial_runs_per_s"]),
            rate(&row["parallel_runs_per_s"]),
            ratio(&row["wasmcron_serial_ratio"]),
            ratio(&row["wasmcron_best_ratio"]),
        );
    }
    eprintln!("\nxtask: report written to {}", out.join("report.json").display());
    Ok(())
}

/// The `wasmcron` and `wasmcron-bench` binaries: as given, or built in
/// release mode (whichever was not given, in one cargo run).
fn binaries(options: &Options, root: &Path) -> Result<(PathBuf, PathBuf)> {
    let binaries = [("wasmcron", &options.wasmcron), ("wasmcron-bench", &options.bench)];
    let to_build: Vec<&str> = binaries.iter().filter(|(_, given)| given.is_none()).map(|(name, _)| *name).collect();
    if !to_build.is_empty() {
        eprintln!("xtask: building {} (release)", to_build.join(" and "));
        run(cargo().args(["build", "--release"]).args(to_build.iter().flat_map(|name| ["--package", name])))?;
    }
    let [wasmcron, bench] =
        binaries.map(|(name, given)| given.clone().unwrap_or_else(|| root.join("target/release").join(name)));
    Ok((wasmcron, bench))
}

/// The suite's own figures as a Markdown table.
fn table(report: &Value) -> String {
    let mut text = String::from("| figure | target | measured | met | detail |\n|---|---|---|---|---|\n");
    for figure in report["figures"].as_array().into_iter().flatten() {
        let unit = figure["unit"].as_str().unwrap_or("");
        let (target, met) = match (figure["target"]["bound"].as_str(), figure["target"]["limit"].as_f64()) {
            (Some(bound), Some(limit)) => (
                format!("{} {limit} {unit}", if bound == "at_most" { "≤" } else { "≥" }),
                if figure["target"]["met"] == true { "yes" } else { "**no**" },
            ),
            _ => (String::new(), ""),
        };
        text.push_str(&format!(
            "| {} | {target} | {:.3} {unit} | {met} | {} |\n",
            figure["figure"].as_str().unwrap_or("?"),
            figure["value"].as_f64().unwrap_or(f64::NAN),
            figure["detail"].as_str().unwrap_or(""),
        ));
    }
    text
}

struct Peer {
    name: &'static str,
    serial: f64,
    parallel: f64,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Starts `command` `runs` times one after another, then `runs` times
/// spread over one thread per core; checks every run printed "ok".
fn measure(name: &'static str, mut command: Command, runs: usize) -> Result<Peer> {
    eprintln!("xtask: peer: {name}");
    command.stdin(Stdio::null()).stderr(Stdio::null());
    let once = |command: &mut Command| -> Result<()> {
        let output = command.output().with_context(|| format!("running {command:?}"))?;
        ensure!(output.status.success() && output.stdout == b"ok\n", "{command:?} did not print ok: {output:?}");
        Ok(())
    };
    once(&mut command)?; // warm caches (the wasmtime CLI's compile cache, the page cache)
    let started = Instant::now();
    for _ in 0..runs {
        once(&mut command)?;
    }
    let serial = runs as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let threads = cores();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let mut command = clone_command(&command);
                let share = runs / threads + usize::from(t < runs % threads);
                scope.spawn(move || (0..share).try_for_each(|_| once(&mut command)))
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a peer thread panicked"))?)
    })?;
    let parallel = runs as f64 / elapsed_nonzero(started);
    Ok(Peer { name, serial, parallel })
}

fn elapsed_nonzero(started: Instant) -> f64 {
    started.elapsed().max(Duration::from_nanos(1)).as_secs_f64()
}

fn clone_command(command: &Command) -> Command {
    let mut clone = Command::new(command.get_program());
    clone.args(command.get_args()).stdin(Stdio::null()).stderr(Stdio::null());
    clone
}

/// The wasmtime CLI: `--wasmtime`, else on PATH, else in target/peers,
/// else installed there with cargo (unless `--no-install`).
fn wasmtime_cli(options: &Options, root: &Path) -> Result<Option<PathBuf>> {
    if let Some(path) = &options.wasmtime {
        return Ok(Some(path.clone()));
    }
    let on_path = Command::new("wasmtime").arg("--version").output().is_ok_and(|o| o.status.success());
    if on_path {
        return Ok(Some("wasmtime".into()));
    }
    let installed = root.join("target/peers/bin/wasmtime");
    if installed.exists() {
        return Ok(Some(installed));
    }
    if !options.install {
        return Ok(None);
    }
    eprintln!("xtask: installing the wasmtime CLI {WASMTIME_VERSION} into target/peers (once; about 10 minutes)");
    run(cargo()
        .args(["install", "wasmtime-cli", "--locked", "--version", WASMTIME_VERSION, "--root"])
        .arg(root.join("target/peers")))?;
    Ok(Some(installed))
}
