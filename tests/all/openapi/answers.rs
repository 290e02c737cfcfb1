//! Every answer the API gives, held to the document: one host taken
//! through its life — built and not started, running (each refusal of
//! each operation, then jobs, triggers, the full queue, cancel, retry,
//! history, a reload), and stopped — and at the end, every documented
//! answer that nothing provoked, unless `UNPROVOKED` says why.

use std::time::Duration;

use axum::body::Body;
use serde_json::Value;
use wasmcron::scheduler::SchedulerConfig;

use super::checker::{Checker, media_type};
use super::document::{Document, Operation};
use super::host::{ADMIN, Host, READ, request};
use super::{PROBE, admin, exit0, job};
use crate::support::ECHO;

/// Documented answers no test here provokes, and why (`*`: of every operation).
const UNPROVOKED: &[(&str, u16, &str)] = &[
    ("*", 500, "internal is a handler's panic: a bug"),
    ("GET /api/v1/runs", 503, "store_unavailable needs a store failing its reads"),
    ("GET /api/v1/runs/{id}", 503, "store_unavailable needs a store failing its reads"),
    ("GET /api/v1/runs/{id}/output", 503, "store_unavailable needs a store failing its reads"),
    ("GET /api/v1/hosts", 503, "store_unavailable needs a shared store failing its reads (this host is on SQLite)"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_the_api_gives_is_documented() {
    let document = Document::served();
    let config = SchedulerConfig { max_queued: 1, grace: Duration::from_secs(1), ..SchedulerConfig::default() };
    let host = Host::new(config, |sandbox| {
        job(sandbox, "echo", ECHO, "[limits]\npayload = \"64B\"");
        job(sandbox, "daily", &exit0(), "schedule = \"0 30 2 * * *\"\ntimezone = \"Europe/London\"");
        std::fs::write(sandbox.jobs().join("gone.wat"), exit0()).unwrap();
        sandbox.declare("broken", "nonsense = 1");
    })
    .await;
    let mut checker = Checker::new(&document, &host);
    before_start(&mut checker).await;
    host.start().await;
    for operation in document.operations() {
        refusals(&mut checker, &operation).await;
    }
    jobs(&mut checker).await;
    dashboard(&mut checker).await;
    let ended = triggers(&mut checker).await;
    runs(&mut checker, &ended).await;
    after_reload(&mut checker, &host, &ended).await;
    host.stop().await;
    after_stop(&mut checker, ended.hello).await;
    outside_the_routes(&host, &document).await;

    let unprovoked: Vec<String> = document
        .operations()
        .iter()
        .flat_map(|op| op.statuses().into_iter().map(|status| (op.name(), status)))
        .filter(|answer| !checker.provoked.contains(answer))
        .filter(|(name, status)| !UNPROVOKED.iter().any(|(n, s, _)| (*n == "*" || n == name) && s == status))
        .map(|(name, status)| format!("{name} {status}"))
        .collect();
    assert!(
        unprovoked.is_empty(),
        "documented answers no test provoked (provoke them, or list them in UNPROVOKED): {unprovoked:?}"
    );
}

/// A host built and not started: not ready, and says so.
async fn before_start(checker: &mut Checker<'_>) {
    checker.expect(request("GET", "/healthz", None, Body::empty()), 200).await;
    checker.expect_error(request("GET", "/readyz", None, Body::empty()), 503, "not_ready").await;
    let view = checker.expect(admin("GET", "/api/v1/jobs"), 200).await.json();
    assert_eq!(view["ready"], false);
    for command in ["trigger", "pause", "resume"] {
        checker.expect_error(admin("POST", &format!("/api/v1/jobs/echo/{command}")), 503, "not_ready").await;
    }
}

/// Without a token, with another, with the read-only one, with a
/// malformed path segment, with an unknown query parameter.
async fn refusals(checker: &mut Checker<'_>, operation: &Operation<'_>) {
    let (method, path) = (operation.method.as_str(), operation.example_path());
    let name = operation.name();
    let answer = checker.send(request(method, &path, None, Body::empty())).await;
    assert_eq!(answer.status == 401, operation.secured(), "{name} without a token: {}", answer.status);
    if operation.secured() {
        checker
            .expect_error(request(method, &path, Some("not-this-hosts-token-0123"), Body::empty()), 401, "unauthorized")
            .await;
        let mut basic = request(method, &path, None, Body::empty());
        basic.headers_mut().insert("authorization", format!("Basic {ADMIN}").parse().unwrap());
        checker.expect_error(basic, 401, "unauthorized").await;
        let answer = checker.send(request(method, &path, Some(READ), Body::empty())).await;
        assert_eq!(
            answer.status == 403,
            operation.response(403).is_some(),
            "{name} with the read-only token: {}",
            answer.status
        );
    }
    for parameter in operation.parameters_in("path") {
        let malformed = if parameter["schema"]["type"] == "integer" { "not-a-number" } else { "%FF" };
        let uri = operation.path_with(parameter["name"].as_str(), malformed);
        checker.expect_error(admin(method, &uri), 400, "bad_request").await;
    }
    if operation.secured() || !operation.query_names().is_empty() {
        checker.expect_error(admin(method, &format!("{path}?{PROBE}=1")), 400, "bad_request").await;
    }
}

/// The jobs view, one job, pause and resume.
async fn jobs(checker: &mut Checker<'_>) {
    checker.expect(request("GET", "/readyz", None, Body::empty()), 200).await;
    let view = checker.expect(admin("GET", "/api/v1/jobs"), 200).await.json();
    let names: Vec<&str> = view["jobs"].as_array().unwrap().iter().map(|job| job["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["broken", "daily", "echo", "gone"]);
    let daily = checker.expect(admin("GET", "/api/v1/jobs/daily"), 200).await.json();
    assert_eq!(daily["next_fires"].as_array().unwrap().len(), 5, "{daily}");
    let broken = checker.expect(admin("GET", "/api/v1/jobs/broken"), 200).await.json();
    assert!(broken["load_error"].as_str().unwrap().contains("nonsense"), "{broken}");
    checker.expect_error(admin("GET", "/api/v1/jobs/nope"), 404, "unknown_job").await;
    for path in ["/login", "/logout"] {
        let mut cross = request("POST", path, None, Body::empty());
        cross.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
        checker.expect_error(cross, 403, "cross_site").await;
    }
    for (command, paused) in [("pause", true), ("resume", false)] {
        let answer = checker.expect(admin("POST", &format!("/api/v1/jobs/daily/{command}")), 200).await.json();
        assert_eq!(answer, serde_json::json!({ "job": "daily", "paused": paused, "reason": null }));
        for job in ["nope", "broken"] {
            checker.expect_error(admin("POST", &format!("/api/v1/jobs/{job}/{command}")), 404, "unknown_job").await;
        }
    }
}

/// The dashboard's page for a logged-in browser, and its files: one
/// unchanged since the browser's copy, one that does not exist.
async fn dashboard(checker: &mut Checker<'_>) {
    let mut logged_in = request("GET", "/", None, Body::empty());
    logged_in.headers_mut().insert("cookie", format!("wasmcron_session={ADMIN}").parse().unwrap());
    let page = checker.expect(logged_in, 200).await;
    assert!(String::from_utf8_lossy(&page.body).contains("/assets/app.js"), "the page loads the app");
    checker.expect(request("GET", "/login?error=invalid", None, Body::empty()), 200).await;
    let script = checker.expect(request("GET", "/assets/app.js", None, Body::empty()), 200).await;
    let etag = script.headers["etag"].clone();
    let mut again = request("GET", "/assets/app.js", None, Body::empty());
    again.headers_mut().insert("if-none-match", etag);
    checker.expect(again, 304).await;
    checker.expect(request("GET", "/assets/app.css", None, Body::empty()), 200).await;
    checker.expect(request("GET", "/assets/icon.svg", None, Body::empty()), 200).await;
    checker.expect_error(request("GET", "/assets/nope.js", None, Body::empty()), 404, "no_asset").await;
}

/// Runs that ended, by what they are for.
struct Ended {
    /// A run of `echo` with the payload "hello".
    hello: i64,
    /// A run of `gone`, the job removed by `after_reload`.
    gone: i64,
}

/// Waits (10 s at most) until run `id` has ended; its record.
async fn ended(checker: &mut Checker<'_>, id: i64) -> Value {
    for _ in 0..500 {
        let run = checker.expect(admin("GET", &format!("/api/v1/runs/{id}")), 200).await.json();
        if !matches!(run["status"].as_str(), Some("pending" | "running")) {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("run {id} did not end within 10 s");
}

async fn trigger(checker: &mut Checker<'_>, uri: &str, body: &[u8], status: u16) -> Value {
    let answer = checker.expect(request("POST", uri, Some(ADMIN), body.to_vec()), status).await;
    let accepted = answer.json();
    if status < 300 {
        let location = answer.headers["location"].to_str().unwrap();
        assert_eq!(location, format!("/api/v1/runs/{}", accepted["id"]));
    }
    accepted
}

/// Trigger, idempotency, the full queue, cancel and retry, and each refusal.
async fn triggers(checker: &mut Checker<'_>) -> Ended {
    let uri = "/api/v1/jobs/echo/trigger";
    let hello = trigger(checker, uri, b"hello", 202).await["id"].as_i64().unwrap();
    assert_eq!(ended(checker, hello).await["status"], "succeeded");
    let output = checker.expect(admin("GET", &format!("/api/v1/runs/{hello}/output")), 200).await.json();
    assert_eq!((&output["stdout"], &output["complete"]), (&"hello".into(), &true.into()));
    let gone = trigger(checker, "/api/v1/jobs/gone/trigger", b"", 202).await["id"].as_i64().unwrap();
    ended(checker, gone).await;
    trigger(checker, &format!("{uri}?at=2020-01-01T00:00:00Z"), b"", 202).await;

    let keyed = |key: &str| {
        let mut request = request("POST", uri, Some(ADMIN), Body::from("keyed"));
        request.headers_mut().insert("idempotency-key", key.parse().unwrap());
        request
    };
    let first = checker.expect(keyed("order-17"), 202).await.json();
    let again = checker.expect(keyed("order-17"), 200).await;
    assert_eq!(again.headers["location"].to_str().unwrap(), format!("/api/v1/runs/{}", first["id"]));
    assert_eq!((&again.json()["id"], &again.json()["created"]), (&first["id"], &false.into()));
    checker.expect_error(keyed(&"k".repeat(201)), 400, "bad_request").await;
    checker.expect_error(keyed("  "), 400, "bad_request").await;

    for query in ["in=soon", "in=1m&at=2026-12-01T09:00:00Z", "at=tomorrow"] {
        checker.expect_error(admin("POST", &format!("{uri}?{query}")), 400, "bad_request").await;
    }
    for job in ["nope", "broken"] {
        checker.expect_error(admin("POST", &format!("/api/v1/jobs/{job}/trigger")), 404, "unknown_job").await;
    }
    let large = vec![b'x'; 100];
    let mut declared = request("POST", uri, Some(ADMIN), large.clone());
    declared.headers_mut().insert("content-length", "100".parse().unwrap());
    checker.expect_error(declared, 413, "payload_too_large").await;
    checker.expect_error(request("POST", uri, Some(ADMIN), large), 413, "payload_too_large").await;

    // --max-queued 1: one run waiting, the next refused.
    let delayed = trigger(checker, &format!("{uri}?in=1h"), b"", 202).await["id"].as_i64().unwrap();
    let output = checker.expect(admin("GET", &format!("/api/v1/runs/{delayed}/output")), 200).await.json();
    assert_eq!((&output["status"], &output["complete"]), (&"pending".into(), &false.into()));
    checker.expect_error(admin("POST", &format!("{uri}?in=1h")), 429, "queue_full").await;
    checker.expect_error(admin("POST", &format!("/api/v1/runs/{hello}/retry")), 429, "queue_full").await;
    checker.expect_error(admin("POST", &format!("/api/v1/runs/{delayed}/retry")), 409, "run_not_ended").await;
    checker.expect_error(admin("POST", &format!("/api/v1/runs/{hello}/cancel")), 409, "run_ended").await;
    let cancelling = checker.expect(admin("POST", &format!("/api/v1/runs/{delayed}/cancel")), 202).await.json();
    assert_eq!(cancelling["id"], delayed);
    checker.expect_error(admin("POST", &format!("/api/v1/runs/{delayed}/cancel")), 409, "run_ended").await;

    let retried = checker.expect(admin("POST", &format!("/api/v1/runs/{hello}/retry")), 202).await;
    let retry = retried.json();
    assert_eq!(retried.headers["location"].to_str().unwrap(), format!("/api/v1/runs/{}", retry["id"]));
    assert_eq!(retry["parent_run"], hello);
    let run = ended(checker, retry["id"].as_i64().unwrap()).await;
    assert_eq!((&run["parent_run"], &run["trigger"]), (&hello.into(), &"manual".into()));
    for command in ["cancel", "retry"] {
        checker.expect_error(admin("POST", &format!("/api/v1/runs/999999/{command}")), 404, "no_such_run").await;
    }
    Ended { hello, gone }
}

/// History, one run, output, and the API's own document.
async fn runs(checker: &mut Checker<'_>, ended: &Ended) {
    let page = checker.expect(admin("GET", "/api/v1/runs?limit=1"), 200).await.json();
    let cursor = page["next_cursor"].as_str().expect("more than one run: a next page").to_owned();
    let older = checker.expect(admin("GET", &format!("/api/v1/runs?limit=1&cursor={cursor}")), 200).await.json();
    assert!(older["runs"][0]["id"].as_i64() < page["runs"][0]["id"].as_i64());
    let filtered = "/api/v1/runs?job=echo&status=succeeded&trigger=manual&since=2020-01-01T00:00:00Z&until=2100-01-01T00:00:00%2B01:00";
    let page = checker.expect(admin("GET", filtered), 200).await.json();
    assert!(page["runs"].as_array().unwrap().iter().any(|run| run["id"] == ended.hello), "{page}");
    for query in ["limit=0", "limit=501", "limit=x", "status=done", "trigger=cron", "since=yesterday", "cursor=abc"] {
        checker.expect_error(admin("GET", &format!("/api/v1/runs?{query}")), 400, "bad_request").await;
    }
    for tail in ["", "/output"] {
        checker.expect_error(admin("GET", &format!("/api/v1/runs/999999{tail}")), 404, "no_such_run").await;
    }
    let scrape = checker.expect(request("GET", "/metrics", Some(READ), Body::empty()), 200).await;
    let scrape = String::from_utf8(scrape.body).unwrap();
    assert!(scrape.contains("wasmcron_build_info{version="), "{scrape}");
    let served = checker.expect(admin("GET", "/api/v1/openapi.json"), 200).await.json();
    assert_eq!(served, checker.document.root);
    let stream = checker.expect(admin("GET", "/api/v1/events?job=echo"), 200).await;
    assert_eq!(media_type(&stream.headers).as_deref(), Some("text/event-stream"));
}

/// A job's payload limit lowered and another job removed: their old runs
/// cannot be retried.
async fn after_reload(checker: &mut Checker<'_>, host: &Host, ended: &Ended) {
    host.sandbox.declare("echo", "[limits]\npayload = \"2B\"");
    std::fs::remove_file(host.sandbox.jobs().join("gone.wat")).unwrap();
    host.wait_for_view("the reload", |view| {
        let echo = view.jobs.iter().find(|job| job.name == "echo");
        echo.is_some_and(|echo| echo.payload_limit == 2) && !view.jobs.iter().any(|job| job.name == "gone")
    })
    .await;
    let retry = |id: i64| admin("POST", &format!("/api/v1/runs/{id}/retry"));
    checker.expect_error(retry(ended.hello), 413, "payload_too_large").await;
    checker.expect_error(retry(ended.gone), 404, "unknown_job").await;
}

/// A stopped host: not ready, and every command refused.
async fn after_stop(checker: &mut Checker<'_>, run: i64) {
    checker.expect_error(request("GET", "/readyz", None, Body::empty()), 503, "not_ready").await;
    for command in ["trigger", "pause", "resume"] {
        checker.expect_error(admin("POST", &format!("/api/v1/jobs/echo/{command}")), 503, "not_ready").await;
    }
    for command in ["cancel", "retry"] {
        checker.expect_error(admin("POST", &format!("/api/v1/runs/{run}/{command}")), 503, "shutting_down").await;
    }
    checker.expect(admin("GET", "/api/v1/runs"), 200).await;
}

/// No route, and a route asked with a method it does not take: the Error shape too.
async fn outside_the_routes(host: &Host, document: &Document) {
    let error = &document.root["components"]["schemas"]["Error"];
    for (method, uri, status, code) in [
        ("GET", "/api/v1/nope", 404, "no_route"),
        ("GET", "/nope", 404, "no_route"),
        ("DELETE", "/api/v1/jobs", 405, "method_not_allowed"),
    ] {
        let answer = host.send(admin(method, uri)).await;
        assert_eq!(answer.status.as_u16(), status, "{method} {uri}");
        let body = answer.json();
        assert_eq!(body["error"]["code"], code);
        let problems = document.violations(error, &body);
        assert!(problems.is_empty(), "{method} {uri}: {problems:?}");
    }
}
