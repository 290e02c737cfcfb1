//! `GET /metrics`, the Prometheus scrape (any token; Prometheus sends the
//! read-only one), and the middleware that counts every answer by route
//! template and status. The metrics themselves are `crate::metrics`.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::error::{NoParams, QueryArgs, StoreFailed};
use crate::events::{HostEvent, Observer};
use crate::metrics::{CONTENT_TYPE, Metrics, UNMATCHED_ROUTE};

pub async fn scrape(State(state): State<ApiState>, _: QueryArgs<NoParams>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], state.metrics.render()).into_response()
}

/// Counts each request once its answer is ready (a stream's, once it
/// starts), labelled by the route template it matched — never the raw
/// path, which a client could vary without end; and a store read of the
/// API's own that failed, as the scheduler counts its own.
pub async fn count(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned());
    let response = next.run(request).await;
    metrics.http_request(route.as_deref().unwrap_or(UNMATCHED_ROUTE), response.status().as_u16());
    if response.extensions().get::<StoreFailed>().is_some() {
        metrics.observe_host(&HostEvent::StoreFailed);
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tokio::sync::watch;
    use tower::ServiceExt;

    use super::*;
    use crate::api::ApiError;
    use crate::scheduler::{CommandError, JobsView};

    /// The API's own failed store read counts once; a scheduler command
    /// the store refused was counted by the scheduler, not again here.
    #[tokio::test]
    async fn a_failed_store_read_of_the_apis_own_is_counted_once() {
        let metrics = Arc::new(Metrics::new(watch::channel(JobsView::default()).1));
        let app = Router::new()
            .route("/read", get(|| async { ApiError::store(&"disk I/O error") }))
            .route("/command", get(|| async { ApiError::from(CommandError::Store("disk I/O error".into())) }))
            .layer(axum::middleware::from_fn_with_state(metrics.clone(), count));
        let errors = || {
            let text = metrics.render();
            let line = text.lines().find(|line| line.starts_with("wasmcron_store_errors_total ")).map(str::to_owned);
            line.expect("the counter is served").rsplit(' ').next().unwrap().to_owned()
        };
        for (path, after) in [("/command", "0"), ("/read", "1"), ("/command", "1")] {
            let answer =
                app.clone().oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(answer.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(errors(), after, "after GET {path}");
        }
    }
}
