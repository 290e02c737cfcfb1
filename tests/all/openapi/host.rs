//! A wasmcron host in-process, as `wasmcron run` wires it — the real
//! store in a temp folder, the real runtime, the scheduler with reload on
//! the system clock — with its API as a `Router` that tests call with
//! `oneshot`, no socket between.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::{oneshot, watch};
use tower::ServiceExt;
use wasmcron::api::{self, ApiState, Tokens};
use wasmcron::clock::Clock;
use wasmcron::registry::Registry;
use wasmcron::runtime::Runtime;
use wasmcron::scheduler::{Handle, JobsView, ReloadConfig, Scheduler, SchedulerConfig};
use wasmcron::store::StoreUrl;

use crate::support::Sandbox;

pub const ADMIN: &str = "admin-token-of-the-openapi-tests";
pub const READ: &str = "read-token-of-the-openapi-tests";

/// A host built and not yet started (`start`), or running, or stopped (`stop`).
pub struct Host {
    pub sandbox: Sandbox,
    pub app: Router,
    pub handle: Handle,
    scheduler: Mutex<Option<Scheduler>>,
    running: Mutex<Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
    closing: watch::Sender<bool>,
}

/// One answer, its body read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Host {
    /// A host on the jobs `declare` writes into the sandbox's jobs folder.
    pub async fn new(config: SchedulerConfig, declare: impl FnOnce(&Sandbox)) -> Host {
        let sandbox = Sandbox::new();
        declare(&sandbox);
        let store = StoreUrl::resolve(None, &sandbox.state()).unwrap().open().await.unwrap();
        let runtime = Arc::new(Runtime::new().unwrap());
        let registry = Registry::load(&runtime, &sandbox.jobs(), None).unwrap();
        let reported: BTreeMap<String, String> =
            registry.errors.iter().map(|error| (error.job().to_owned(), error.to_string())).collect();
        let reload = ReloadConfig {
            jobs_dir: sandbox.jobs(),
            cache: None,
            debounce: Duration::from_millis(50),
            module_folders: registry.module_folders,
            reported,
        };
        let (scheduler, handle) = Scheduler::new(runtime, store.clone(), Clock::System, config, registry.jobs);
        let (closing, closed) = watch::channel(false);
        let tokens = Arc::new(Tokens::new(ADMIN, READ));
        let (scheduler, state) = ApiState::observing(scheduler, handle.clone(), store, tokens, closed);
        let scheduler = scheduler.with_reload(reload);
        let scheduler = Mutex::new(Some(scheduler));
        Host { sandbox, app: api::app(state), handle, scheduler, running: Mutex::default(), closing }
    }

    /// Runs the scheduler on a task of its own, and waits until it is ready.
    pub async fn start(&self) {
        let scheduler = self.scheduler.lock().unwrap().take().expect("started once");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            scheduler.run(async move { _ = stopped.await }).await.unwrap();
        });
        *self.running.lock().unwrap() = Some((stop, task));
        self.wait_for_view("the scheduler to be ready", |view| view.ready).await;
    }

    /// Shuts the scheduler down, waits for it to drain, and ends open event streams.
    pub async fn stop(&self) {
        let (stop, task) = self.running.lock().unwrap().take().expect("running");
        let _ = stop.send(());
        task.await.unwrap();
        let _ = self.closing.send(true);
    }

    /// Waits (10 s at most) until the jobs view satisfies `ready`.
    pub async fn wait_for_view(&self, what: &str, ready: impl Fn(&JobsView) -> bool) {
        let mut view = self.handle.jobs();
        let waited = tokio::time::timeout(Duration::from_secs(10), view.wait_for(|view| ready(view))).await;
        assert!(waited.is_ok_and(|seen| seen.is_ok()), "timed out waiting for {what}");
    }

    /// The answer to `request`, its body not read (for event streams).
    pub async fn respond(&self, request: Request<Body>) -> axum::response::Response {
        self.app.clone().oneshot(request).await.expect("a Router never fails")
    }

    /// The answer to `request`, its body read whole.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        self.read(self.respond(request).await).await
    }

    /// `response`, its body read whole.
    pub async fn read(&self, response: axum::response::Response) -> Answer {
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
            .await
            .expect("the body ends within 10 s")
            .expect("the body reads")
            .to_bytes()
            .to_vec();
        Answer { status: parts.status, headers: parts.headers, body }
    }
}

/// A request with `token` as its bearer token, if any.
pub fn request(method: &str, uri: &str, token: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(body.into()).unwrap()
}
