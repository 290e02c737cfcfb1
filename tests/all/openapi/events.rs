//! The event stream: what it sends is the documented event types, each
//! with data of the documented schema; `?job=` narrows it; it ends when
//! the host stops.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::Value;
use wasmcron::scheduler::SchedulerConfig;

use super::checker::media_type;
use super::document::Document;
use super::host::{ADMIN, Host, request};
use super::{admin, exit0, job};
use crate::support::ECHO;

/// Events of a Server-Sent Events text: (type, data) of each.
fn parse_events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let (mut kind, mut data) = (None, Vec::new());
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    kind = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            (!data.is_empty()).then(|| (kind.unwrap_or_else(|| "message".into()), data.join("\n")))
        })
        .collect()
}

/// How the events of `text` break `events`, the documented data schema of each type.
pub fn sse_violations(document: &Document, events: &Value, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (kind, data) in parse_events(text) {
        let Some(schema) = events.get(&kind) else {
            problems.push(format!("event type {kind:?} is not documented"));
            continue;
        };
        let data: Value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{kind} data {data:?}: {e}"));
        if data.get("stage").is_some_and(|stage| *stage != *kind) {
            problems.push(format!("event {kind} has stage {}", data["stage"]));
        }
        problems.extend(document.violations(schema, &data).into_iter().map(|v| format!("{kind}: {v}")));
    }
    problems
}

/// Reads the events of a stream as they come.
struct Events {
    body: Body,
    text: String,
}

impl Events {
    /// The next event, or none once the stream has ended (10 s at most).
    async fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                if let Some(event) = parse_events(&block).pop() {
                    return Some(event);
                }
                continue; // a keep-alive comment
            }
            let frame =
                tokio::time::timeout(Duration::from_secs(10), self.body.frame()).await.expect("an event within 10 s");
            let data = frame?.expect("the stream reads").into_data().unwrap_or_default();
            self.text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_sends_the_documented_events() {
    let document = Document::served();
    let host = Host::new(SchedulerConfig::default(), |sandbox| {
        job(sandbox, "echo", ECHO, "");
        job(sandbox, "tick", &exit0(), "schedule = \"@every 1s\"");
    })
    .await;
    host.start().await;
    let operation = document.operation_for("GET", "/api/v1/events").unwrap();
    let media = &operation.response(200).unwrap()["content"]["text/event-stream"];
    let open = async |uri: &str| {
        let response = host.respond(admin("GET", uri)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(media_type(response.headers()).as_deref(), Some("text/event-stream"));
        Events { body: response.into_body(), text: String::new() }
    };
    let (mut all, mut echo) = (open("/api/v1/events").await, open("/api/v1/events?job=echo").await);
    let run = host.send(request("POST", "/api/v1/jobs/echo/trigger", Some(ADMIN), "hi")).await.json()["id"].clone();

    let check = |kind: &str, data: &str| {
        let problems = sse_violations(&document, &media["x-sse-events"], &format!("event: {kind}\ndata: {data}\n\n"));
        assert!(problems.is_empty(), "event {kind} {data}: {problems:?}");
        serde_json::from_str::<Value>(data).unwrap()
    };
    let expected: BTreeSet<String> =
        ["fired", "recorded", "started", "ended", "echo recorded", "echo started", "echo ended"]
            .map(String::from)
            .into();
    let mut kinds = BTreeSet::new();
    while !kinds.is_superset(&expected) {
        let (kind, data) = all.next().await.expect("the stream goes on while the host runs");
        let data = check(&kind, &data);
        if data["run_id"] == run {
            kinds.insert(format!("echo {kind}"));
        } else {
            kinds.insert(kind);
        }
    }
    loop {
        let (kind, data) = echo.next().await.expect("the stream goes on while the host runs");
        let data = check(&kind, &data);
        assert_eq!(data["job"], "echo", "?job=echo sends only echo's events");
        if kind == "ended" && data["run_id"] == run {
            break;
        }
    }
    host.stop().await;
    while let Some((kind, data)) = all.next().await {
        check(&kind, &data);
    }
}
