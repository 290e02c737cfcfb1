//! `wasmcron pause JOB` and `wasmcron resume JOB`: a paused job does not
//! fire (its fires are not recorded) until resumed. With a host running,
//! it is asked over its API, and its jobs view shows the change at once;
//! with none, the flag is written to the store, where the next host start
//! (or a running host, at the job's next fire) reads it.

use std::process::ExitCode;

use reqwest::Method;

use super::client::{Client, Failure};
use super::{CONFIG_ERROR, Globals};
use crate::config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job's name.
    pub job: String,
}

#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    #[command(flatten)]
    pub job: Args,
    /// Why: shown beside the job while it is paused (`wasmcron jobs`, the dashboard).
    #[arg(long)]
    pub reason: Option<String>,
}

pub fn pause(globals: &Globals, args: PauseArgs) -> anyhow::Result<ExitCode> {
    match crate::scheduler::pause_reason(args.reason.as_deref().unwrap_or("")) {
        Ok(reason) => run(globals, args.job, true, reason),
        Err(why) => {
            eprintln!("error: --reason: {why}");
            Ok(ExitCode::from(CONFIG_ERROR))
        }
    }
}

pub fn run(globals: &Globals, args: Args, paused: bool, reason: Option<String>) -> anyhow::Result<ExitCode> {
    let done = |how: &str| {
        println!("{} {}{how}", args.job, if paused { "paused" } else { "resumed" });
        Ok(ExitCode::SUCCESS)
    };
    // A host that ran here left its token: ask it first.
    if let Ok(client) = Client::new(globals) {
        let path = format!("/api/v1/jobs/{}/{}", args.job, if paused { "pause" } else { "resume" });
        let (headers, body) = match &reason {
            Some(reason) => (
                vec![("content-type", "application/json".to_owned())],
                serde_json::to_vec(&serde_json::json!({ "reason": reason }))?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        match super::block_on(client.send(Method::POST, &path, &[], &headers, body))? {
            Ok(_) => return done(""),
            Err(Failure::NoHost { .. }) => {}
            Err(failure) => return Ok(failure.report(None)),
        }
    }
    let loaded = config::load_dir(&globals.jobs)?;
    if !loaded.jobs.iter().any(|j| j.name == args.job) {
        eprintln!("error: no job named {:?} in {}; see `wasmcron jobs`", args.job, globals.jobs.display());
        return Ok(ExitCode::from(CONFIG_ERROR));
    }
    let url = globals.store_url()?;
    super::block_on(async { url.open().await?.set_paused(args.job.clone(), paused, reason).await })??;
    done(" (no host is running: recorded for its next start)")
}
