//! `wasmcron check`: load every declaration and compile every module, list
//! every error, and exit 1 if there was any. Warnings (a component built
//! to use a network its declaration does not grant) do not fail it.

use std::process::ExitCode;

use super::{FAILED, Globals};
use crate::registry::Registry;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(globals: &Globals, _args: Args) -> anyhow::Result<ExitCode> {
    let runtime = globals.runtime()?;
    // No cache: a check compiles every module, as a first load would.
    let registry = Registry::load(&runtime, &globals.jobs, None)?;
    for job in &registry.jobs {
        let schedule = match &job.spec.schedule {
            Some(schedule) => schedule.to_string(),
            None => "no schedule (runs when triggered)".into(),
        };
        println!("ok     {:<24} {:<22} {}", job.spec.name, job.compiled.kind_name(), schedule);
        for warning in job.network_warnings() {
            println!("warn   {:<24} {warning}", job.spec.name);
        }
    }
    for error in &registry.errors {
        eprintln!("error  {error}");
    }
    let summary =
        format!("{} job(s) ok, {} error(s) in {}", registry.jobs.len(), registry.errors.len(), globals.jobs.display());
    if registry.errors.is_empty() {
        println!("{summary}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{summary}");
        Ok(ExitCode::from(FAILED))
    }
}
