//! The API target: generated requests — any route, any method, path
//! segments, query parameters, headers and bodies, good and bad — sent to
//! the real router of an in-process host (the SQLite store in a temp
//! folder, the real runtime and scheduler, two small jobs). An answer is
//! never a `5xx`, and an `/api/` error is the documented JSON shape with a
//! code and a message. Payloads over a job's limit are a `413`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::{Arbitrary, Result, Unstructured};
use axum::Router;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::api::{self, ApiState, Tokens};
use crate::clock::Clock;
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::store::StoreUrl;

const ADMIN: &str = "fuzz-admin-token";
const READ: &str = "fuzz-read-token";
/// The payload limit of the job `small`.
const SMALL_PAYLOAD: usize = 64;

struct Host {
    tokio: tokio::runtime::Runtime,
    app: Router,
    /// Held, so that open event streams stay open.
    _closing: tokio::sync::watch::Sender<bool>,
    _folder: tempfile::TempDir,
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
        let folder = tempfile::tempdir().expect("a temp folder");
        let (app, closing) = tokio.block_on(start(folder.path()));
        Host { tokio, app, _closing: closing, _folder: folder }
    })
}

/// Builds and starts the host as `wasmcron run` wires it, on `folder`.
async fn start(folder: &std::path::Path) -> (Router, tokio::sync::watch::Sender<bool>) {
    let (jobs, state) = (folder.join("jobs.d"), folder.join("state"));
    std::fs::create_dir_all(&jobs).expect("jobs folder");
    std::fs::write(jobs.join("hello.wat"), r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
        .expect("a module");
    std::fs::write(
        jobs.join("small.toml"),
        format!("module = \"hello.wat\"\n[limits]\npayload = \"{SMALL_PAYLOAD}B\""),
    )
    .expect("a declaration");
    let store = StoreUrl::resolve(None, &state).expect("a store URL").open().await.expect("the store opens");
    let runtime = Arc::new(Runtime::new().expect("the runtime starts"));
    let registry = Registry::load(&runtime, &jobs, None).expect("jobs load");
    assert!(registry.errors.is_empty(), "{:?}", registry.errors);
    let config = SchedulerConfig { max_queued: 16, grace: Duration::from_secs(1), ..SchedulerConfig::default() };
    let (scheduler, handle) = Scheduler::new(runtime, store.clone(), Clock::System, config, registry.jobs);
    let (closing, closed) = tokio::sync::watch::channel(false);
    let tokens = Arc::new(Tokens::new(ADMIN, READ));
    let (scheduler, state) = ApiState::observing(scheduler, handle.clone(), store, tokens, closed);
    tokio::spawn(async move { scheduler.run(std::future::pending()).await.expect("the scheduler runs") });
    let mut view = handle.jobs();
    view.wait_for(|view| view.ready).await.expect("the scheduler gets ready");
    (api::app(state), closing)
}

/// One generated request, sent, and its answer checked.
pub fn api_request(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let Ok(generated) = request(&mut input) else { return };
    let Some((request, description, oversized)) = generated else { return };
    let host = host();
    host.tokio.block_on(async {
        let response = host.app.clone().oneshot(request).await.expect("a Router never fails");
        check(response, &description, oversized).await;
    });
}

async fn check(response: axum::response::Response, description: &str, oversized: bool) {
    let status = response.status();
    assert!(!status.is_server_error(), "{status} for {description}");
    let json = response.headers().get("content-type").is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if description.contains(" /api/v1/events") && status.is_success() {
        return; // an event stream: it does not end
    }
    let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .unwrap_or_else(|_| panic!("the body of {description} did not end within 10 s"))
        .expect("the body reads")
        .to_bytes();
    if status.is_client_error() && json && !description.starts_with("HEAD ") {
        let value: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{status}: the error body is not JSON ({e}) for {description}: {body:?}"));
        let (code, message) = (&value["error"]["code"], &value["error"]["message"]);
        assert!(
            code.as_str().is_some_and(|c| !c.is_empty()) && message.as_str().is_some_and(|m| !m.is_empty()),
            "{status} without a code and message for {description}: {value}"
        );
    }
    if oversized {
        assert!(!status.is_success(), "{status}: a payload over the job's limit was taken, for {description}");
    }
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
const SEGMENTS: &[&str] =
    &["hello", "small", "nope", "1", "0", "-1", "99999999999999999999", "%20", "a%2Fb", "..", "x y"];
const KEYS: &[&str] =
    &["job", "status", "trigger", "since", "until", "scheduled_for", "q", "limit", "cursor", "in", "at", "token", "x"];
const VALUES: &[&str] = &[
    "hello",
    "failed",
    "succeeded",
    "manual",
    "2026-12-01T09:00:00Z",
    "2026-13-01T09:00:00Z",
    "30s",
    "99999999999999999999d",
    "0",
    "501",
    "50",
    "-1",
    "%ZZ",
    "",
    "a+b",
];

/// A request and a line describing it, or `None` when the input does not
/// make a valid HTTP request (that is the HTTP library's to refuse).
fn request(input: &mut Unstructured) -> Result<Option<(Request<Body>, String, bool)>> {
    let routes = api::routes();
    let (method, template, _) = &routes[input.choose_index(routes.len())?];
    let method = if input.ratio(1, 8)? { METHODS[input.choose_index(METHODS.len())?] } else { *method };
    let mut path = String::new();
    for part in template.split('/').filter(|part| !part.is_empty()) {
        path.push('/');
        if part.starts_with('{') {
            path.push_str(&segment(input)?);
        } else {
            path.push_str(part);
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    let mut pairs = Vec::new();
    for _ in 0..input.int_in_range(0..=4)? {
        let key = pick_or_arbitrary(input, KEYS)?;
        let value = pick_or_arbitrary(input, VALUES)?;
        pairs.push(format!("{}={}", encode(&key), encode(&value)));
    }
    let uri = if pairs.is_empty() { path.clone() } else { format!("{path}?{}", pairs.join("&")) };
    let mut builder = Request::builder().method(method).uri(&uri);
    match input.int_in_range(0u8..=5)? {
        0 => {}
        1 => builder = builder.header("authorization", format!("Bearer {READ}")),
        2 => builder = builder.header("authorization", String::arbitrary(input)?),
        _ => builder = builder.header("authorization", format!("Bearer {ADMIN}")),
    }
    if input.ratio(1, 4)? {
        builder = builder.header("idempotency-key", String::arbitrary(input)?);
    }
    if input.ratio(1, 6)? {
        builder = builder.header("content-length", String::arbitrary(input)?);
    }
    if input.ratio(1, 6)? {
        builder = builder.header("cookie", String::arbitrary(input)?);
    }
    let body = match input.int_in_range(0u8..=3)? {
        0 => Vec::new(),
        1 => vec![b'x'; input.int_in_range(0..=4 * SMALL_PAYLOAD)?],
        2 => br#"{"reason": "fuzz"}"#.to_vec(),
        _ => input.arbitrary::<Vec<u8>>()?,
    };
    let description = format!("{method} {uri} with a {}-byte body", body.len());
    // A trigger of `small` that carries more than its limit.
    let oversized =
        method == "POST" && template.ends_with("/trigger") && path.contains("/small/") && body.len() > SMALL_PAYLOAD;
    Ok(builder.body(Body::from(body)).ok().map(|request| (request, description, oversized)))
}

fn segment(input: &mut Unstructured) -> Result<String> {
    Ok(if input.ratio(1, 4)? {
        encode(&String::arbitrary(input)?)
    } else {
        SEGMENTS[input.choose_index(SEGMENTS.len())?].to_owned()
    })
}

fn pick_or_arbitrary(input: &mut Unstructured, values: &[&str]) -> Result<String> {
    Ok(if input.ratio(1, 4)? {
        String::arbitrary(input)?
    } else {
        values[input.choose_index(values.len())?].to_owned()
    })
}

/// Percent-encodes all but unreserved characters (and leaves `%` alone
/// sometimes, so bad escapes are sent too).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'%' | b'+' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
