//! `wasmcron jobs`: each job's schedule, next fire, last outcome and pause
//! state, and every declaration or module that fails to load — the jobs
//! view a running host publishes, built here from the files and the store.

use std::io::Write;
use std::process::ExitCode;

use chrono::Utc;

use super::Globals;
use crate::record::format_time;
use crate::registry::Registry;
use crate::scheduler::{JobView, JobsView, LastRun, StoreHealth};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the jobs view as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(globals: &Globals, args: Args) -> anyhow::Result<ExitCode> {
    let view = build_view(globals)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &view)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "{:<20} {:<28} {:<26} {:<22} STATE", "JOB", "SCHEDULE", "NEXT FIRE", "LAST RUN")?;
    for job in &view.jobs {
        render(&mut out, job)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The jobs view from the files as they are now and what the store holds.
fn build_view(globals: &Globals) -> anyhow::Result<JobsView> {
    let runtime = globals.runtime()?;
    let url = globals.store_url()?;
    let has_store = url.exists();
    let cache = if has_store { super::compile_cache(globals) } else { None };
    let registry = Registry::load(&runtime, &globals.jobs, cache.as_ref())?;
    let names: Vec<String> = registry.jobs.iter().map(|job| job.spec.name.clone()).collect();
    let (states, outcomes) = if has_store {
        super::block_on(async {
            let store = url.open_existing().await?;
            anyhow::Ok((store.job_states().await?, store.last_outcomes(names).await?))
        })??
    } else {
        Default::default()
    };
    let now = Utc::now();
    let mut jobs: Vec<JobView> = registry
        .jobs
        .iter()
        .map(|job| {
            let spec = &job.spec;
            let state = states.get(&spec.name).cloned().unwrap_or_default();
            let next = spec.schedule.as_ref().filter(|_| spec.enabled && !state.paused).and_then(|s| s.next_after(now));
            JobView {
                name: spec.name.clone(),
                schedule: spec.schedule.as_ref().map(|s| s.text().to_owned()),
                schedule_text: spec.schedule.as_ref().map(|s| s.describe()),
                timezone: spec.timezone.to_string(),
                enabled: spec.enabled,
                paused: state.paused,
                paused_reason: state.paused_reason,
                next_fire: next,
                last_run: outcomes.iter().find(|r| r.job == spec.name).map(LastRun::from),
                load_error: state.load_error,
                module_sha256: state.module_sha256,
                in_flight: Vec::new(),
                queued: 0,
                payload_limit: spec.limits.payload,
            }
        })
        .collect();
    for error in &registry.errors {
        let name = error.job().to_owned();
        let state = states.get(&name).cloned().unwrap_or_default();
        jobs.push(JobView {
            module_sha256: state.module_sha256,
            paused: state.paused,
            paused_reason: state.paused_reason,
            load_error: Some(error.to_string()),
            name,
            ..JobView::default()
        });
    }
    jobs.sort_by(|a, b| a.name.cmp(&b.name));
    // Read from the files and the store: no scheduler answers for it.
    Ok(JobsView { ready: false, jobs, store: StoreHealth::healthy(), queue: None })
}

fn render(out: &mut impl Write, job: &JobView) -> std::io::Result<()> {
    if let Some(error) = job.load_error.as_ref().filter(|_| job.schedule.is_none() && job.timezone.is_empty()) {
        writeln!(out, "{:<20} LOAD ERROR: {error}", job.name)?;
        if let Some(sha) = &job.module_sha256 {
            let short = sha.get(..12).unwrap_or(sha);
            writeln!(out, "{:<20}   (the host keeps the version it has in service, module {short})", "")?;
        }
        return Ok(());
    }
    let schedule = match &job.schedule {
        Some(text) if job.timezone != "UTC" => format!("{text} ({})", job.timezone),
        Some(text) => text.clone(),
        None => "triggered only".into(),
    };
    let last = job.last_run.as_ref().map(|r| format!("#{} {}", r.id, r.status)).unwrap_or_else(|| "-".into());
    let state = if !job.enabled {
        "disabled"
    } else if job.paused {
        "paused"
    } else {
        "active"
    };
    let next = match (job.next_fire, job.timezone.parse::<chrono_tz::Tz>()) {
        (Some(at), Ok(zone)) => at.with_timezone(&zone).to_rfc3339(),
        (Some(at), Err(_)) => format_time(at),
        (None, _) => "-".into(),
    };
    writeln!(out, "{:<20} {:<28} {:<26} {:<22} {state}", job.name, schedule, next, last)?;
    if let Some(reason) = job.paused_reason.as_ref().filter(|_| job.paused) {
        writeln!(out, "{:<20}   paused: {reason}", "")?;
    }
    if let Some(error) = &job.load_error {
        writeln!(out, "{:<20}   the host's last reload failed, keeping this version: {error}", "")?;
    }
    Ok(())
}
