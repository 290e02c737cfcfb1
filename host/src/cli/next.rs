//! `wasmcron next 'EXPR'`: the next fire times of a cron expression, one
//! RFC 3339 timestamp a line, with the zone's offset.

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::schedule::{self, Schedule};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A cron expression (5 or 6 fields), a macro such as @daily, or @every DURATION.
    pub expr: String,
    /// IANA time zone the expression is evaluated in.
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// Start after this instant (RFC 3339); default now.
    #[arg(long)]
    pub from: Option<String>,
    /// How many fire times to print.
    #[arg(short = 'n', default_value_t = 5)]
    pub count: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let zone = schedule::parse_timezone(&args.tz).map_err(|e| anyhow!("--tz {e}"))?;
    let schedule = Schedule::parse(&args.expr, zone).map_err(|e| anyhow!("schedule {:?}: {e}", args.expr))?;
    let from = match &args.from {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .with_context(|| format!("--from {text:?} is not an RFC 3339 time; write e.g. 2026-11-24T09:00:00Z"))?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let fires = schedule.upcoming(from, args.count);
    for fire in &fires {
        println!("{}", fire.with_timezone(&zone).to_rfc3339_opts(SecondsFormat::Secs, false));
    }
    if fires.len() < args.count {
        eprintln!("{:?} has no more fire times (it was searched up to the year 5000)", args.expr);
    }
    Ok(ExitCode::SUCCESS)
}
