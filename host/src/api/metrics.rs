//! `GET /metrics`, the Prometheus scrape (any token; Prometheus sends the
//! read-only one), and the middleware that counts every answer by route
//! template and status. The metrics themselves are `crate::metrics`.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::error::{NoParams, QueryArgs};
use crate::metrics::{CONTENT_TYPE, Metrics, UNMATCHED_ROUTE};

pub async fn scrape(State(state): State<ApiState>, _: QueryArgs<NoParams>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], state.metrics.render()).into_response()
}

/// Counts each request once its answer is ready (a stream's, once it
/// starts), labelled by the route template it matched — never the raw
/// path, which a client could vary without end.
pub async fn count(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned());
    let response = next.run(request).await;
    metrics.http_request(route.as_deref().unwrap_or(UNMATCHED_ROUTE), response.status().as_u16());
    response
}
