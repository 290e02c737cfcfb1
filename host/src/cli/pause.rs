//! `wasmcron pause JOB` and `wasmcron resume JOB`: a paused job does not
//! fire (its fires are not recorded) until resumed; a running host reads
//! the flag at each fire, so no restart is needed.

use std::process::ExitCode;

use super::{CONFIG_ERROR, Globals};
use crate::config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job's name.
    pub job: String,
}

pub fn run(globals: &Globals, args: Args, paused: bool) -> anyhow::Result<ExitCode> {
    let loaded = config::load_dir(&globals.jobs)?;
    if !loaded.jobs.iter().any(|j| j.name == args.job) {
        eprintln!("error: no job named {:?} in {}; see `wasmcron jobs`", args.job, globals.jobs.display());
        return Ok(ExitCode::from(CONFIG_ERROR));
    }
    let url = globals.store_url()?;
    super::block_on(async { url.open().await?.set_paused(args.job.clone(), paused).await })??;
    println!("{} {}", args.job, if paused { "paused" } else { "resumed" });
    Ok(ExitCode::SUCCESS)
}
