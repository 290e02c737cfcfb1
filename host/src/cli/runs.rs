//! `wasmcron runs` and `wasmcron logs RUN`: run history, read straight from
//! the store, so they work with or without a host running.

use std::io::Write;
use std::process::ExitCode;

use super::{CONFIG_ERROR, Globals};
use crate::record::{RunRecord, RunStatus};
use crate::store::RunQuery;

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Only runs of this job.
    #[arg(long)]
    pub job: Option<String>,
    /// Only runs with this status (succeeded, failed, timed_out, out_of_fuel,
    /// cancelled, abandoned, skipped, missed, pending, running).
    #[arg(long, value_parser = parse_status)]
    pub status: Option<RunStatus>,
    /// How many runs, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print a JSON array of run records.
    #[arg(long)]
    pub json: bool,
}

fn parse_status(text: &str) -> Result<RunStatus, String> {
    text.parse()
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The run's id (see `wasmcron runs`).
    pub run: i64,
}

pub fn runs(globals: &Globals, args: RunsArgs) -> anyhow::Result<ExitCode> {
    let query = RunQuery { job: args.job.clone(), status: args.status, limit: args.limit, ..RunQuery::default() };
    let url = globals.store_url()?;
    let runs = super::block_on(async { url.open_existing().await?.runs(query).await })??;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &runs)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        eprintln!("no runs recorded{}", args.job.map(|j| format!(" for {j}")).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:>6}  {:<20} {:<11} {:<9} {:>3}  {:<20} {:>9}  NOTE",
        "ID", "JOB", "STATUS", "TRIGGER", "TRY", "SCHEDULED (UTC)", "TOOK"
    )?;
    for run in &runs {
        writeln!(
            out,
            "{:>6}  {:<20} {:<11} {:<9} {:>3}  {:<20} {:>9}  {}",
            run.id,
            run.job,
            run.status.as_str(),
            run.trigger.as_str(),
            run.attempt,
            run.scheduled_for.format("%Y-%m-%d %H:%M:%S"),
            took(run),
            note(run)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn logs(globals: &Globals, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let url = globals.store_url()?;
    let run = super::block_on(async { url.open_existing().await?.run(args.run).await })??;
    let Some(run) = run else {
        eprintln!("error: no run {} in {url}; list runs with `wasmcron runs`", args.run);
        return Ok(ExitCode::from(CONFIG_ERROR));
    };
    std::io::stdout().write_all(&run.stdout)?;
    std::io::stderr().write_all(&run.stderr)?;
    if matches!(run.status, RunStatus::Pending | RunStatus::Running) {
        eprintln!("(run {} is {}; its output is recorded when it ends)", run.id, run.status);
    }
    Ok(ExitCode::SUCCESS)
}

fn took(run: &RunRecord) -> String {
    match (run.started_at, run.ended_at) {
        (Some(start), Some(end)) => {
            let ms = (end - start).num_milliseconds();
            if ms < 10_000 { format!("{ms}ms") } else { format!("{:.1}s", ms as f64 / 1000.0) }
        }
        (Some(_), None) => "…".into(),
        _ => "-".into(),
    }
}

fn note(run: &RunRecord) -> String {
    let mut note = run.error.as_deref().unwrap_or("").lines().last().unwrap_or("").to_owned();
    if note.chars().count() > 60 {
        note = note.chars().take(59).collect::<String>() + "…";
    }
    note
}
