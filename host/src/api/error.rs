//! The API's one error shape, `{"error": {"code", "message"}}` with the
//! status it means, and the extractors that answer bad input with it
//! instead of axum's plain-text rejections.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::scheduler::CommandError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, for programs: `unknown_job`, `queue_full`, …
    pub code: &'static str,
    /// For people: what was wrong and what to do.
    pub message: String,
    /// Seconds, for `429` and `503`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A store that failed a read or write: the detail goes to the log,
    /// the caller hears only that it may try again.
    pub fn store(error: &dyn std::fmt::Display) -> Self {
        tracing::warn!(%error, "the store failed an API request");
        ApiError {
            retry_after: Some(5),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store cannot be reached right now; try again later (the host's log says why)",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        let message = error.to_string();
        let (status, code) = match &error {
            CommandError::UnknownJob(_) => (StatusCode::NOT_FOUND, "unknown_job"),
            CommandError::NoSuchRun(_) => (StatusCode::NOT_FOUND, "no_such_run"),
            CommandError::RunEnded { .. } => (StatusCode::CONFLICT, "run_ended"),
            CommandError::RunNotEnded { .. } => (StatusCode::CONFLICT, "run_not_ended"),
            CommandError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            CommandError::QueueFull { .. } => {
                return ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", message)
                };
            }
            CommandError::Store(detail) => return ApiError::store(detail),
            CommandError::ShuttingDown => {
                return ApiError {
                    retry_after: Some(5),
                    ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
                };
            }
        };
        ApiError::new(status, code, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::store(&error)
    }
}

/// `Path`, answering a malformed segment with a JSON `400`.
pub struct PathArg<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathArg<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathArg(value)),
            Err(rejection) => Err(ApiError::bad_request(format!("{}: {}", parts.uri.path(), rejection.body_text()))),
        }
    }
}

/// `Query`, answering an unknown or malformed parameter with a JSON `400`.
pub struct QueryArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match Query::<T>::try_from_uri(&parts.uri) {
            Ok(Query(value)) => Ok(QueryArgs(value)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}
