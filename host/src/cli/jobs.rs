//! `wasmcron jobs`: each job's schedule, next fire, last outcome and pause
//! state, and every declaration or module that fails to load.

use std::io::Write;
use std::process::ExitCode;

use chrono::Utc;
use serde::Serialize;

use super::Globals;
use crate::record::format_time;
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct JobRow {
    name: String,
    schedule: Option<String>,
    timezone: String,
    next_fire: Option<String>,
    enabled: bool,
    paused: bool,
    last_run: Option<LastRun>,
    /// Why this job's files do not load (as this command finds them now).
    error: Option<String>,
    /// The module version a host has in service, and the error of its last
    /// reload attempt if that failed (the older version then stays).
    in_service: Option<String>,
    host_load_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct LastRun {
    id: i64,
    status: String,
    ended_at: Option<String>,
}

pub fn run(globals: &Globals, args: Args) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new()?;
    let has_state = globals.state.join(crate::store::DATABASE_FILE).exists();
    let cache = if has_state { super::compile_cache(globals) } else { None };
    let registry = Registry::load(&runtime, &globals.jobs, cache.as_ref())?;
    let store = has_state.then(|| Store::open(&globals.state)).transpose()?;
    let states = store.as_ref().map(Store::job_states).transpose()?.unwrap_or_default();
    let outcomes = store.as_ref().map(Store::last_outcomes).transpose()?.unwrap_or_default();
    let now = Utc::now();

    let mut rows: Vec<JobRow> = registry
        .jobs
        .iter()
        .map(|job| {
            let spec = &job.spec;
            let paused = states.get(&spec.name).is_some_and(|s| s.paused);
            let next = spec.schedule.as_ref().filter(|_| spec.enabled && !paused).and_then(|s| s.next_after(now));
            JobRow {
                name: spec.name.clone(),
                schedule: spec.schedule.as_ref().map(|s| s.text().to_owned()),
                timezone: spec.timezone.to_string(),
                next_fire: next.map(|t| t.with_timezone(&spec.timezone).to_rfc3339()),
                enabled: spec.enabled,
                paused,
                last_run: outcomes.iter().find(|r| r.job == spec.name).map(|r| LastRun {
                    id: r.id,
                    status: r.status.as_str().into(),
                    ended_at: r.ended_at.map(format_time),
                }),
                error: None,
                in_service: states.get(&spec.name).and_then(|s| s.module_sha256.clone()),
                host_load_error: states.get(&spec.name).and_then(|s| s.load_error.clone()),
            }
        })
        .collect();
    for error in &registry.errors {
        let name = error.file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let state = states.get(&name);
        rows.push(JobRow {
            in_service: state.and_then(|s| s.module_sha256.clone()),
            host_load_error: state.and_then(|s| s.load_error.clone()),
            name,
            schedule: None,
            timezone: String::new(),
            next_fire: None,
            enabled: false,
            paused: false,
            last_run: None,
            error: Some(error.to_string()),
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));

    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "{:<20} {:<28} {:<26} {:<22} STATE", "JOB", "SCHEDULE", "NEXT FIRE", "LAST RUN")?;
    for row in &rows {
        if let Some(error) = &row.error {
            writeln!(out, "{:<20} LOAD ERROR: {error}", row.name)?;
            if let Some(sha) = &row.in_service {
                writeln!(out, "{:<20}   (the host keeps the version it has in service, module {})", "", &sha[..12])?;
            }
            continue;
        }
        let schedule = match &row.schedule {
            Some(text) if row.timezone != "UTC" => format!("{text} ({})", row.timezone),
            Some(text) => text.clone(),
            None => "triggered only".into(),
        };
        let last = row.last_run.as_ref().map(|r| format!("#{} {}", r.id, r.status)).unwrap_or_else(|| "-".into());
        let state = if !row.enabled {
            "disabled"
        } else if row.paused {
            "paused"
        } else {
            "active"
        };
        writeln!(
            out,
            "{:<20} {:<28} {:<26} {:<22} {state}",
            row.name,
            schedule,
            row.next_fire.as_deref().unwrap_or("-"),
            last
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
