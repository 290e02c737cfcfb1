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

/// Marks a response that failed on the API's own store read, for the
/// metrics middleware (`store_errors_total`); the scheduler counts its own.
#[derive(Debug, Clone, Copy)]
pub struct StoreFailed;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, for programs: `unknown_job`, `queue_full`, …
    pub code: &'static str,
    /// For people: what was wrong and what to do.
    pub message: String,
    /// Seconds, for `429` and `503`.
    pub retry_after: Option<u64>,
    /// The store failed this request's own read or write.
    pub store_failed: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None, store_failed: false }
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
            store_failed: true,
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
        if self.store_failed {
            response.extensions_mut().insert(StoreFailed);
        }
        response
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        let (message, code) = (error.to_string(), error.code());
        let status = match &error {
            CommandError::UnknownJob(_) | CommandError::NoSuchRun(_) => StatusCode::NOT_FOUND,
            CommandError::RunEnded { .. } | CommandError::RunNotEnded { .. } => StatusCode::CONFLICT,
            CommandError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            CommandError::QueueFull { .. } => {
                return ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
                };
            }
            // Counted by the scheduler, whose write it was.
            CommandError::Store(detail) => return ApiError { store_failed: false, ..ApiError::store(detail) },
            CommandError::ShuttingDown => {
                return ApiError {
                    retry_after: Some(5),
                    ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
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

/// The query of a route that takes no parameters: any is a `400`, as on
/// the routes that take some.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// A run id from the path: a whole number, or a `400` that says so.
pub struct RunId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for RunId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let PathArg(params) =
            PathArg::<std::collections::BTreeMap<String, String>>::from_request_parts(parts, state).await?;
        let text = params.get("id").map(String::as_str).unwrap_or_default();
        text.parse().map(RunId).map_err(|_| {
            ApiError::bad_request(format!("{text:?} is not a run id; run ids are whole numbers (see GET /api/v1/runs)"))
        })
    }
}

/// A handler that panicked: a `500` in the usual shape, and the detail
/// only in the log.
pub fn panicked(detail: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = detail
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| detail.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(detail, "an API handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the host failed to answer this request; its log says why",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_a_json_500_without_its_detail() {
        let response = panicked(Box::new("index out of bounds: secret detail".to_owned()));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("secret"), "{body}");
    }

    #[test]
    fn command_errors_map_to_their_statuses() {
        let cases = [
            (CommandError::UnknownJob("x".into()), StatusCode::NOT_FOUND, "unknown_job"),
            (CommandError::QueueFull { queued: 3 }, StatusCode::TOO_MANY_REQUESTS, "queue_full"),
            (
                CommandError::Store("disk I/O error at /secret/path".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
            ),
            (CommandError::ShuttingDown, StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        ];
        for (error, status, code) in cases {
            let api = ApiError::from(error);
            assert_eq!((api.status, api.code), (status, code));
            assert!(!api.message.contains("/secret/path"), "store detail stays in the log: {}", api.message);
        }
        assert_eq!(ApiError::from(CommandError::QueueFull { queued: 3 }).retry_after, Some(1));
    }
}
