//! The control plane: an HTTP API under `/api/v1` (JSON), `/healthz`,
//! `/readyz`, `/metrics` (Prometheus) and the dashboard (`/`, `/login`,
//! `/assets/…`; see [`dashboard`]), served by axum on `--listen`.
//!
//! [`app`] builds the router from [`routes`], one table of every route,
//! which the OpenAPI document (`openapi.json`, served at
//! `/api/v1/openapi.json`) is checked against by a test; [`serve`] runs it
//! on a listener until shutdown. Handlers reach the scheduler only through
//! its [`Handle`] and read history from the store. Every route but the
//! probes (`/healthz`, `/readyz`) needs a bearer token (see [`auth`]);
//! errors are `{"error": {"code", "message"}}` (see [`ApiError`]). Every
//! answer is counted in the metrics, by route template and status.

pub mod auth;
mod dashboard;
mod error;
mod events;
mod hosts;
mod jobs;
mod metrics;
mod runs;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use tokio::sync::watch;

pub use auth::{Access, Tokens};
pub use error::ApiError;
pub use events::EventFeed;

use crate::events::Observer;
use crate::metrics::Metrics;
use crate::scheduler::{Handle, Scheduler};
use crate::store::Store;

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What every handler reaches.
#[derive(Clone)]
pub struct ApiState {
    pub handle: Handle,
    pub store: Arc<dyn Store>,
    pub tokens: Arc<Tokens>,
    pub events: EventFeed,
    /// What `/metrics` serves; the API counts its own answers there too.
    pub metrics: Arc<Metrics>,
    /// Turns true when the host stops: open event streams end.
    pub closing: watch::Receiver<bool>,
}

impl ApiState {
    /// Attaches what the API serves of every run — the live event stream
    /// and the metrics — to `scheduler` as its observers, and gives the
    /// state the API's handlers reach. The host and the tests' in-process
    /// host wire the API the same way through this.
    pub fn observing(
        scheduler: Scheduler,
        handle: Handle,
        store: Arc<dyn Store>,
        tokens: Arc<Tokens>,
        closing: watch::Receiver<bool>,
    ) -> (Scheduler, ApiState) {
        let events = EventFeed::default();
        let metrics = Arc::new(Metrics::new(handle.jobs()));
        let observers: Vec<Arc<dyn Observer>> = vec![Arc::new(events.clone()), metrics.clone()];
        let scheduler = scheduler.with_observers(observers);
        (scheduler, ApiState { handle, store, tokens, events, metrics, closing })
    }
}

/// Every route: its method, its path (axum syntax, as in the OpenAPI
/// document) and its handler. `app` is built from this table alone.
pub fn routes() -> Vec<(&'static str, &'static str, MethodRouter<ApiState>)> {
    vec![
        ("GET", "/", get(dashboard::index)),
        ("GET", "/login", get(dashboard::login)),
        ("GET", "/assets/{file}", get(dashboard::asset)),
        ("GET", "/healthz", get(healthz)),
        ("GET", "/readyz", get(readyz)),
        ("GET", "/api/v1/openapi.json", get(openapi)),
        ("GET", "/api/v1/jobs", get(jobs::list)),
        ("GET", "/api/v1/jobs/{job}", get(jobs::show)),
        ("POST", "/api/v1/jobs/{job}/trigger", post(jobs::trigger)),
        ("POST", "/api/v1/jobs/{job}/pause", post(jobs::pause)),
        ("POST", "/api/v1/jobs/{job}/resume", post(jobs::resume)),
        ("GET", "/api/v1/runs", get(runs::list)),
        ("GET", "/api/v1/runs/{id}", get(runs::show)),
        ("GET", "/api/v1/runs/{id}/output", get(runs::output)),
        ("POST", "/api/v1/runs/{id}/cancel", post(runs::cancel)),
        ("POST", "/api/v1/runs/{id}/retry", post(runs::retry)),
        ("GET", "/api/v1/events", get(events::stream)),
        ("GET", "/api/v1/hosts", get(hosts::list)),
        ("GET", "/api/v1/session", get(session::show)),
        ("POST", "/login", post(session::login)),
        ("POST", "/logout", post(session::logout)),
        ("GET", "/metrics", get(metrics::scrape)),
    ]
}

/// The routes anyone may call, with no token: the probes a supervisor or
/// load balancer polls, and the dashboard's login and logout.
fn is_open(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/login" | "/logout" | "/" | "/assets/{file}")
}

/// The router, apart from any server: tests drive it with `oneshot`.
pub fn app(state: ApiState) -> Router {
    let (open, guarded): (Vec<_>, Vec<_>) = routes().into_iter().partition(|(_, path, _)| is_open(path));
    let api = guarded.into_iter().fold(Router::new(), |router, (_, path, route)| router.route(path, route));
    let api = api.route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::authorize));
    open.into_iter()
        .fold(api, |router, (_, path, route)| router.route(path, route))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(error::panicked))
        // Outermost: a panic's 500 is counted too.
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), metrics::count))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets
/// requests in progress finish for up to `grace`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stopped, stop) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopped.send(());
    });
    let server = std::future::IntoFuture::into_future(server);
    tokio::pin!(server);
    tokio::select! {
        served = &mut server => served,
        _ = async { let _ = stop.await; tokio::time::sleep(grace).await } => {
            tracing::warn!("HTTP requests still open after the grace period: closed");
            Ok(())
        }
    }
}

/// Alive: answers as long as the process does.
async fn healthz() -> Response {
    axum::Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// Ready: the scheduler runs (jobs loaded, recovered) and the store takes writes.
async fn readyz(axum::extract::State(state): axum::extract::State<ApiState>) -> Response {
    let view = state.handle.jobs();
    let view = view.borrow();
    let reason = if !view.ready {
        Some("the host is starting (loading jobs, recovering from the last stop) or shutting down")
    } else if view.store.failing.is_some() {
        Some("the store does not take writes; see the host's log and `store` in /api/v1/jobs")
    } else {
        None
    };
    match reason {
        None => axum::Json(serde_json::json!({ "status": "ready" })).into_response(),
        Some(reason) => {
            ApiError { retry_after: Some(1), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", reason) }
                .into_response()
        }
    }
}

async fn openapi(_: error::QueryArgs<error::NoParams>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!("no route {method} {}; the routes are listed in /api/v1/openapi.json", uri.path()),
    )
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}; see /api/v1/openapi.json", uri.path()),
    )
}
