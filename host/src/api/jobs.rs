//! `/api/v1/jobs`: the jobs view, one job, and what can be done to a job:
//! trigger it, pause it, resume it.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};

use super::error::{NoParams, PathArg, QueryArgs};
use super::{ApiError, ApiState};
use crate::record::format_time;
use crate::scheduler::{CommandError, JobView, TriggerRequest, Triggered};
use crate::units;

/// Fires listed for one job.
const NEXT_FIRES: usize = 5;
/// The longest idempotency key taken.
const MAX_KEY_LENGTH: usize = 200;

pub async fn list(State(state): State<ApiState>, _: QueryArgs<NoParams>) -> Response {
    Json(state.handle.jobs().borrow().clone()).into_response()
}

#[derive(Serialize)]
struct JobDetail {
    #[serde(flatten)]
    job: JobView,
    /// The next fires, in UTC (none while paused or for a triggered-only job).
    next_fires: Vec<String>,
}

pub async fn show(
    State(state): State<ApiState>,
    PathArg(name): PathArg<String>,
    _: QueryArgs<NoParams>,
) -> Result<Response, ApiError> {
    let job = find(&state, &name)?;
    let next_fires = match (&job.schedule, job.next_fire) {
        (Some(text), Some(first)) if !job.paused => crate::schedule::parse_timezone(&job.timezone)
            .ok()
            .and_then(|zone| crate::schedule::Schedule::parse(text, zone).ok())
            .map(|schedule| {
                std::iter::once(first).chain(schedule.upcoming(first, NEXT_FIRES - 1)).map(format_time).collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    Ok(Json(JobDetail { job, next_fires }).into_response())
}

fn find(state: &ApiState, name: &str) -> Result<JobView, ApiError> {
    let view = state.handle.jobs();
    let view = view.borrow();
    view.jobs
        .iter()
        .find(|job| job.name == name)
        .cloned()
        .ok_or_else(|| CommandError::UnknownJob(name.to_owned()).into())
}

/// A loaded job, able to take commands: one that never loaded is unknown
/// to the scheduler, and a host not ready answers `503`.
fn loaded(state: &ApiState, name: &str) -> Result<JobView, ApiError> {
    let ready = state.handle.jobs().borrow().ready;
    if !ready {
        return Err(ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the host is starting or shutting down; try again shortly",
            )
        });
    }
    let job = find(state, name)?;
    if job.module_sha256.is_none() {
        let error = job.load_error.unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_job",
            format!("job {name:?} is not loaded: {error}"),
        ));
    }
    Ok(job)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// Start after this long (`30s`, `10m`, `2h`).
    #[serde(rename = "in")]
    after: Option<String>,
    /// Start at this instant (RFC 3339).
    at: Option<String>,
}

impl When {
    fn resolve(&self) -> Result<Option<DateTime<Utc>>, ApiError> {
        match (&self.after, &self.at) {
            (Some(_), Some(_)) => Err(ApiError::bad_request("give `in` or `at`, not both")),
            (Some(after), None) => {
                let after = units::parse_duration(after).map_err(|e| ApiError::bad_request(format!("in: {e}")))?;
                let after = chrono::Duration::from_std(after).map_err(|_| ApiError::bad_request("in: too far"))?;
                Ok(Some(Utc::now() + after))
            }
            (None, Some(at)) => DateTime::parse_from_rfc3339(at).map(|at| Some(at.to_utc())).map_err(|e| {
                ApiError::bad_request(format!(
                    "at: {at:?} is not an RFC 3339 time ({e}); write e.g. 2026-12-01T09:00:00Z"
                ))
            }),
            (None, None) => Ok(None),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Accepted {
    pub id: i64,
    pub job: String,
    /// False when an earlier request with the same `Idempotency-Key` made the run.
    pub created: bool,
}

/// `POST /api/v1/jobs/{job}/trigger`: the body is the payload. Answered
/// `202` once the run is durably recorded; `200` with the first run for a
/// repeated `Idempotency-Key`.
pub async fn trigger(
    State(state): State<ApiState>,
    PathArg(name): PathArg<String>,
    QueryArgs(when): QueryArgs<When>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request = match checked(&state, name.clone(), &when, &headers, body).await {
        Ok(request) => request,
        Err(error) => {
            // Refused here, before the scheduler (which counts its own).
            state.metrics.trigger_refused(error.code);
            return Err(error);
        }
    };
    let key = request.key.clone();
    let triggered = match (state.handle.trigger(request).await, key) {
        // A full queue takes no new run, but a repeat of one it took is
        // still answered with that run.
        (Err(CommandError::QueueFull { queued }), Some(key)) => {
            match state.store.keyed_run(name.clone(), key, Utc::now()).await? {
                Some(id) => Triggered { run_id: id, created: false },
                None => {
                    state.metrics.trigger_refused(CommandError::QueueFull { queued }.code());
                    return Err(CommandError::QueueFull { queued }.into());
                }
            }
        }
        (answer, _) => answer?,
    };
    let status = if triggered.created { StatusCode::ACCEPTED } else { StatusCode::OK };
    let location = HeaderValue::try_from(format!("/api/v1/runs/{}", triggered.run_id)).expect("digits");
    let body = Accepted { id: triggered.run_id, job: name, created: triggered.created };
    Ok((status, [(header::LOCATION, location)], Json(body)).into_response())
}

/// The trigger as the scheduler takes it, once the API's own checks pass:
/// a loaded job on a ready host, a good time and key, a payload in bounds.
async fn checked(
    state: &ApiState,
    name: String,
    when: &When,
    headers: &HeaderMap,
    body: Body,
) -> Result<TriggerRequest, ApiError> {
    let job = loaded(state, &name)?;
    let at = when.resolve()?;
    let key = idempotency_key(headers)?;
    let payload = read_payload(&job, headers, body).await?;
    Ok(TriggerRequest { job: name, payload, at, key })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key =
        value.to_str().ok().map(str::trim).filter(|key| !key.is_empty() && key.len() <= MAX_KEY_LENGTH).ok_or_else(
            || {
                ApiError::bad_request(format!(
                    "Idempotency-Key: give 1 to {MAX_KEY_LENGTH} printable ASCII characters (a UUID, say)"
                ))
            },
        )?;
    Ok(Some(key.to_owned()))
}

/// Reads the body up to the job's payload limit, never past it: a
/// `Content-Length` beyond it is refused before any byte is read.
async fn read_payload(job: &JobView, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    let limit = job.payload_limit;
    let too_large = |size: String| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the payload is {size} bytes; job {:?} accepts at most {limit} (`[limits] payload` in its declaration)",
                job.name
            ),
        )
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(length) = declared.filter(|length| *length > limit) {
        return Err(too_large(length.to_string()));
    }
    match Limited::new(body, limit as usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large(format!("more than {limit}"))),
        Err(error) => Err(ApiError::bad_request(format!("the request body could not be read: {error}"))),
    }
}

#[derive(Debug, Serialize)]
struct Paused {
    job: String,
    paused: bool,
    /// The reason the pause was given, if any (none on resume).
    reason: Option<String>,
}

/// The optional body of a pause.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    reason: Option<String>,
}

pub async fn pause(
    state: State<ApiState>,
    name: PathArg<String>,
    _: QueryArgs<NoParams>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let PauseBody { reason } = if body.iter().all(u8::is_ascii_whitespace) {
        PauseBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            ApiError::bad_request(format!("the body must be JSON like {{\"reason\": \"…\"}}, or empty: {error}"))
        })?
    };
    let reason = crate::scheduler::pause_reason(reason.as_deref().unwrap_or("")).map_err(ApiError::bad_request)?;
    set_paused(state, name, true, reason).await
}

pub async fn resume(
    state: State<ApiState>,
    name: PathArg<String>,
    _: QueryArgs<NoParams>,
) -> Result<Response, ApiError> {
    set_paused(state, name, false, None).await
}

async fn set_paused(
    State(state): State<ApiState>,
    PathArg(name): PathArg<String>,
    paused: bool,
    reason: Option<String>,
) -> Result<Response, ApiError> {
    loaded(&state, &name)?;
    state.handle.pause(&name, paused, reason.clone()).await?;
    Ok(Json(Paused { job: name, paused, reason }).into_response())
}
