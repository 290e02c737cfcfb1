//! `/api/v1/runs`: history (filtered, newest first, by cursor), one run,
//! its output, and cancel and retry.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{NoParams, QueryArgs, RunId};
use super::{ApiError, ApiState};
use crate::record::{RunRecord, RunStatus, Trigger};
use crate::scheduler::CommandError;
use crate::store::RunQuery;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    job: Option<String>,
    status: Option<String>,
    trigger: Option<String>,
    since: Option<String>,
    until: Option<String>,
    scheduled_for: Option<String>,
    q: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

impl Filters {
    fn query(&self) -> Result<RunQuery, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!("limit: {limit} is out of range; give 1 to {MAX_LIMIT}")));
        }
        let before = match &self.cursor {
            None => None,
            Some(cursor) => Some(cursor.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "cursor: {cursor:?} is not a cursor; pass `next_cursor` from the previous page"
                ))
            })?),
        };
        Ok(RunQuery {
            job: self.job.clone(),
            status: parse("status", &self.status)?,
            trigger: parse("trigger", &self.trigger)?,
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            scheduled_for: time("scheduled_for", &self.scheduled_for)?,
            search: self.q.as_deref().map(str::trim).filter(|q| !q.is_empty()).map(str::to_owned),
            before,
            limit,
        })
    }
}

fn parse<T: std::str::FromStr<Err = String>>(name: &str, text: &Option<String>) -> Result<Option<T>, ApiError> {
    text.as_deref().map(str::parse).transpose().map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
}

fn time(name: &str, text: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    text.as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t).map(|t| t.to_utc()).map_err(|e| {
                ApiError::bad_request(format!("{name}: {t:?} is not an RFC 3339 time ({e}); e.g. 2026-12-01T09:00:00Z"))
            })
        })
        .transpose()
}

/// A run as the API shows it: the record without its output (that is
/// `/output`).
#[derive(Debug, Serialize)]
pub struct RunBody {
    pub id: i64,
    pub job: String,
    pub status: RunStatus,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub attempt: u32,
    pub trigger: Trigger,
    pub scheduled_for: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub fuel_used: Option<u64>,
    pub module_sha256: Option<String>,
    pub output_bytes: u64,
    pub output_dropped: u64,
    pub parent_run: Option<i64>,
}

impl From<RunRecord> for RunBody {
    fn from(run: RunRecord) -> Self {
        use crate::record::format_time;
        RunBody {
            id: run.id,
            job: run.job,
            status: run.status,
            exit_code: run.exit_code,
            error: run.error,
            attempt: run.attempt,
            trigger: run.trigger,
            scheduled_for: format_time(run.scheduled_for),
            started_at: run.started_at.map(format_time),
            ended_at: run.ended_at.map(format_time),
            fuel_used: run.fuel_used,
            module_sha256: run.module_sha256,
            output_bytes: (run.stdout.len() + run.stderr.len()) as u64,
            output_dropped: run.output_dropped,
            parent_run: run.parent_run,
        }
    }
}

#[derive(Debug, Serialize)]
struct Page {
    runs: Vec<RunBody>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    next_cursor: Option<String>,
}

pub async fn list(State(state): State<ApiState>, QueryArgs(filters): QueryArgs<Filters>) -> Result<Response, ApiError> {
    let mut query = filters.query()?;
    let limit = query.limit as usize;
    query.limit += 1; // one more, to know whether there is a next page
    let mut runs = state.store.runs(query).await?;
    let more = runs.len() > limit;
    runs.truncate(limit);
    let next_cursor = more.then(|| runs.last().map(|run| run.id.to_string())).flatten();
    Ok(Json(Page { runs: runs.into_iter().map(RunBody::from).collect(), next_cursor }).into_response())
}

async fn find(state: &ApiState, id: i64) -> Result<RunRecord, ApiError> {
    state.store.run(id).await?.ok_or_else(|| CommandError::NoSuchRun(id).into())
}

pub async fn show(
    State(state): State<ApiState>,
    RunId(id): RunId,
    _: QueryArgs<NoParams>,
) -> Result<Response, ApiError> {
    Ok(Json(RunBody::from(find(&state, id).await?)).into_response())
}

#[derive(Debug, Serialize)]
struct Output {
    id: i64,
    status: RunStatus,
    /// False while the run is pending or running: output is recorded when it ends.
    complete: bool,
    stdout: String,
    stderr: String,
    output_dropped: u64,
}

pub async fn output(
    State(state): State<ApiState>,
    RunId(id): RunId,
    _: QueryArgs<NoParams>,
) -> Result<Response, ApiError> {
    let run = find(&state, id).await?;
    Ok(Json(Output {
        id: run.id,
        status: run.status,
        complete: !matches!(run.status, RunStatus::Pending | RunStatus::Running),
        stdout: String::from_utf8_lossy(&run.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&run.stderr).into_owned(),
        output_dropped: run.output_dropped,
    })
    .into_response())
}

#[derive(Debug, Serialize)]
struct Cancelling {
    id: i64,
}

/// A pending or delayed run is cancelled at once; a running one is
/// stopped, and recorded `cancelled` when its guest has stopped.
pub async fn cancel(
    State(state): State<ApiState>,
    RunId(id): RunId,
    _: QueryArgs<NoParams>,
) -> Result<Response, ApiError> {
    state.handle.cancel(id).await?;
    Ok((StatusCode::ACCEPTED, Json(Cancelling { id })).into_response())
}

#[derive(Debug, Serialize)]
struct Retried {
    id: i64,
    parent_run: i64,
}

pub async fn retry(
    State(state): State<ApiState>,
    RunId(id): RunId,
    _: QueryArgs<NoParams>,
) -> Result<Response, ApiError> {
    let new = state.handle.retry(id).await?;
    let location = HeaderValue::try_from(format!("/api/v1/runs/{new}")).expect("digits");
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(Retried { id: new, parent_run: id }))
        .into_response())
}
