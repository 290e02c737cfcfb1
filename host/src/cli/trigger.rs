//! `wasmcron trigger JOB`, `wasmcron cancel RUN` and `wasmcron retry RUN`:
//! commands to the running host, over its HTTP API.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::client::{Client, Failure};
use super::{FAILED, Globals};
use crate::units;

#[derive(Debug, clap::Args)]
pub struct TriggerArgs {
    /// The job's name.
    pub job: String,
    /// A file whose bytes are the guest's stdin (`-` reads our stdin).
    #[arg(long, value_name = "FILE|-")]
    pub payload: Option<PathBuf>,
    /// Start the run after this long (`30s`, `10m`, `2h`) instead of now.
    #[arg(long = "in", value_name = "DUR", value_parser = duration, conflicts_with = "at")]
    pub after: Option<String>,
    /// Start the run at this instant (RFC 3339, e.g. 2026-12-01T09:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = instant)]
    pub at: Option<String>,
    /// An idempotency key: the same key for the same job within 24 hours
    /// gets the first run instead of a new one.
    #[arg(long)]
    pub key: Option<String>,
    /// Wait for the run to end; print its output and exit as `once` does.
    #[arg(long)]
    pub wait: bool,
}

fn duration(text: &str) -> Result<String, String> {
    units::parse_duration(text).map(|_| text.to_owned())
}

fn instant(text: &str) -> Result<String, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|_| text.to_owned())
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e}); write e.g. 2026-12-01T09:00:00Z"))
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The run's id (see `wasmcron runs`).
    pub run: i64,
}

pub fn trigger(globals: &Globals, args: TriggerArgs) -> anyhow::Result<ExitCode> {
    let payload = super::once::read_payload(args.payload.as_deref())?;
    let client = Client::new(globals)?;
    super::block_on(async {
        let mut query = Vec::new();
        if let Some(after) = args.after {
            query.push(("in", after));
        }
        if let Some(at) = args.at {
            query.push(("at", at));
        }
        let headers: Vec<_> = args.key.iter().map(|key| ("Idempotency-Key", key.clone())).collect();
        let path = format!("/api/v1/jobs/{}/trigger", args.job);
        let (status, body) = match client.send(Method::POST, &path, &query, &headers, payload).await {
            Ok(answer) => answer,
            Err(failure) => return Ok(failure.report(Some(&args.job))),
        };
        let id = body["id"].as_i64().unwrap_or_default();
        println!("{id}");
        if status == StatusCode::OK {
            eprintln!("(run {id} already had this key: it was triggered before)");
        }
        if !args.wait {
            return Ok(ExitCode::SUCCESS);
        }
        match wait(&client, id).await {
            Ok(code) => Ok(code),
            Err(failure) => Ok(failure.report(None)),
        }
    })?
}

/// Waits for run `id` to end, passes its output through, and exits 0 only
/// if it succeeded.
async fn wait(client: &Client, id: i64) -> Result<ExitCode, Failure> {
    let mut pause = Duration::from_millis(20);
    let run = loop {
        let run = client.get(&format!("/api/v1/runs/{id}")).await?;
        if !matches!(run["status"].as_str(), Some("pending" | "running")) {
            break run;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    };
    let output = client.get(&format!("/api/v1/runs/{id}/output")).await?;
    let text = |value: &Value| value.as_str().unwrap_or("").to_owned();
    let _ = std::io::stdout().write_all(text(&output["stdout"]).as_bytes());
    let _ = std::io::stderr().write_all(text(&output["stderr"]).as_bytes());
    let status = text(&run["status"]);
    if status == "succeeded" {
        return Ok(ExitCode::SUCCESS);
    }
    let error = run["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default();
    eprintln!("wasmcron: run {id} of {} {status}{error}", text(&run["job"]));
    Ok(ExitCode::from(FAILED))
}

pub fn cancel(globals: &Globals, args: RunArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(globals)?;
    super::block_on(async {
        match client.send(Method::POST, &format!("/api/v1/runs/{}/cancel", args.run), &[], &[], Vec::new()).await {
            Ok(_) => {
                println!("run {} cancelled", args.run);
                ExitCode::SUCCESS
            }
            Err(failure) => failure.report(None),
        }
    })
}

pub fn retry(globals: &Globals, args: RunArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(globals)?;
    super::block_on(async {
        match client.send(Method::POST, &format!("/api/v1/runs/{}/retry", args.run), &[], &[], Vec::new()).await {
            Ok((_, body)) => {
                println!("{}", body["id"].as_i64().unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(failure) => failure.report(None),
        }
    })
}
