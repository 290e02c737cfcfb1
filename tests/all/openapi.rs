//! The OpenAPI document (`host/src/api/openapi.json`, served at
//! `/api/v1/openapi.json`) kept true to the API: it names every route of
//! `wasmcron::api::routes()` and no other; each of its operations is
//! routed and takes exactly the query parameters it documents; every
//! answer an in-process host gives — success, each error the tests can
//! provoke, before start and after stop — is a documented status with the
//! documented headers and body; the event stream sends the documented
//! events; its own examples fit its schemas; and the README's API
//! reference lists every operation.

mod answers;
mod checker;
mod document;
mod events;
mod host;

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use serde_json::Value;
use wasmcron::scheduler::SchedulerConfig;

use crate::support::{ECHO, Sandbox, fixture, repo_root};
use checker::Checker;
use document::{Document, encode, example_of};
use host::{ADMIN, Host, request};

/// A query parameter no route takes.
const PROBE: &str = "openapi_probe";

fn job(sandbox: &Sandbox, name: &str, wat: &str, toml: &str) {
    std::fs::write(sandbox.jobs().join(format!("{name}.wat")), wat).unwrap();
    sandbox.declare(name, toml);
}

fn exit0() -> String {
    std::fs::read_to_string(fixture("exit0.wat")).unwrap()
}

fn admin(method: &str, uri: &str) -> axum::http::Request<Body> {
    request(method, uri, Some(ADMIN), Body::empty())
}

/// The names a `400` for an unknown query parameter says the route takes
/// (serde's "unknown field `x`, expected one of `a`, `b`").
fn taken_names(message: &str) -> BTreeSet<String> {
    let expected =
        message.split_once("expected").unwrap_or_else(|| panic!("not an unknown-field message: {message}")).1;
    expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

#[test]
fn the_document_is_openapi_3_1_and_names_every_route_and_no_other() {
    let document = Document::served();
    assert_eq!(document.root["openapi"], "3.1.0");
    let routes: BTreeSet<(String, String)> =
        wasmcron::api::routes().into_iter().map(|(method, path, _)| (method.to_owned(), path.to_owned())).collect();
    let documented: BTreeSet<(String, String)> =
        document.operations().iter().map(|op| (op.method.clone(), op.path.clone())).collect();
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    assert!(undocumented.is_empty(), "routes missing from openapi.json: {undocumented:?}");
    let unrouted: Vec<_> = documented.difference(&routes).collect();
    assert!(unrouted.is_empty(), "operations in openapi.json that routes() does not have: {unrouted:?}");

    let mut ids = BTreeSet::new();
    for operation in document.operations() {
        let id =
            operation.spec["operationId"].as_str().unwrap_or_else(|| panic!("{}: no operationId", operation.name()));
        assert!(ids.insert(id.to_owned()), "operationId {id} twice");
        let in_template: BTreeSet<&str> =
            operation.path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
        let in_parameters: BTreeSet<&str> =
            operation.parameters_in("path").iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(in_template, in_parameters, "{}: path parameters", operation.name());
        for parameter in operation.parameters() {
            assert!(
                parameter["in"] != "path" || parameter["required"] == true,
                "{}: path parameters are required",
                operation.name()
            );
            example_of(parameter); // each has one, to build requests from
        }
    }
}

#[test]
fn the_documents_examples_fit_its_schemas() {
    let document = Document::served();
    let mut checked = 0;
    let mut stack = vec![("".to_owned(), &document.root)];
    while let Some((at, value)) = stack.pop() {
        match value {
            Value::Object(object) => {
                if let Some(schema) = object.get("schema") {
                    let examples = object.get("example").into_iter().chain(
                        object
                            .get("examples")
                            .and_then(Value::as_object)
                            .into_iter()
                            .flatten()
                            .map(|(_, example)| &document.resolve(example)["value"]),
                    );
                    for example in examples {
                        let problems = match object.get("x-sse-events") {
                            Some(events) => events::sse_violations(&document, events, example.as_str().expect("text")),
                            None => document.violations(schema, example),
                        };
                        assert!(
                            problems.is_empty(),
                            "{at}: the example {example} does not fit:\n  {}",
                            problems.join("\n  ")
                        );
                        checked += 1;
                    }
                }
                stack.extend(object.iter().map(|(key, value)| (format!("{at}/{key}"), value)));
            }
            Value::Array(items) => stack.extend(items.iter().enumerate().map(|(i, v)| (format!("{at}/{i}"), v))),
            _ => {}
        }
    }
    assert!(checked > 30, "only {checked} examples found");
}

#[test]
fn the_readme_api_reference_lists_every_operation() {
    let document = Document::served();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let (_, section) =
        readme.split_once("\n### API reference\n").expect("README.md has a section \"### API reference\"");
    let section = section.split("\n#").next().unwrap_or_default();
    let mut listed = BTreeMap::new();
    for line in section.lines().filter(|line| line.starts_with('|')) {
        let cells: Vec<String> = line.trim_matches('|').split('|').map(|c| c.trim().replace('`', "")).collect();
        if cells[0] == "Method" || cells[0].starts_with("---") {
            continue;
        }
        let statuses: BTreeSet<u16> = cells
            .last()
            .unwrap()
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|number| number.parse().ok())
            .filter(|status| (200..300).contains(status))
            .collect();
        listed.insert(format!("{} {}", cells[0], cells[1]), statuses);
    }
    for operation in document.operations() {
        let success: BTreeSet<u16> = operation.statuses().into_iter().filter(|s| (200..300).contains(s)).collect();
        let row = listed.remove(&operation.name());
        let row = row.unwrap_or_else(|| panic!("README.md's API reference does not list {}", operation.name()));
        assert_eq!(row, success, "README.md's API reference: the success statuses of {}", operation.name());
    }
    assert!(listed.is_empty(), "README.md's API reference lists operations the document does not: {listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operation_is_routed_and_takes_exactly_its_documented_parameters() {
    let document = Document::served();
    let host = Host::new(SchedulerConfig::default(), |sandbox| job(sandbox, "report", ECHO, "")).await;
    host.start().await;
    let mut checker = Checker::new(&document, &host);
    for operation in document.operations() {
        let (method, path) = (operation.method.as_str(), operation.example_path());
        let answer = checker.send(admin(method, &path)).await;
        // A JSON error's code; null for any other body (`/metrics` is text).
        let code =
            serde_json::from_slice::<Value>(&answer.body).map_or(Value::Null, |body| body["error"]["code"].clone());
        assert!(
            answer.status != 405 && !(answer.status == 404 && code == "no_route"),
            "{}: {method} {path} is not routed: {}",
            operation.name(),
            String::from_utf8_lossy(&answer.body)
        );
        // Each documented parameter, with its example, is taken.
        for parameter in operation.parameters_in("query") {
            let uri = format!("{path}?{}={}", parameter["name"].as_str().unwrap(), encode(&example_of(parameter)));
            let answer = checker.send(admin(method, &uri)).await;
            assert_ne!(answer.status, 400, "{method} {uri}: {}", String::from_utf8_lossy(&answer.body));
        }
        for parameter in operation.parameters_in("header") {
            let mut with_header = admin(method, &path);
            let name = parameter["name"].as_str().unwrap();
            let header = axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            with_header.headers_mut().insert(header, example_of(parameter).parse().unwrap());
            let answer = checker.send(with_header).await;
            assert_ne!(answer.status, 400, "{method} {path} with {name}: {}", String::from_utf8_lossy(&answer.body));
        }
        // And no other: a route refuses another, and one that takes query
        // parameters names the ones it takes.
        let uri = format!("{path}?{PROBE}=1");
        let answer = checker.send(admin(method, &uri)).await;
        let documented = operation.query_names();
        let message = if answer.status == 400 {
            answer.json()["error"]["message"].as_str().unwrap().to_owned()
        } else {
            String::new()
        };
        if documented.is_empty() && !operation.secured() {
            // The probes (`/healthz`, `/readyz`) take anything.
            assert!(
                !message.contains("unknown field"),
                "{}: takes query parameters it does not document: {message}",
                operation.name()
            );
        } else if documented.is_empty() {
            // Every route that needs a token refuses what it does not take.
            assert_eq!(answer.status, 400, "{method} {uri} took an unknown query parameter");
            assert!(message.contains("there are no fields"), "{}: {message}", operation.name());
        } else {
            assert_eq!(answer.status, 400, "{method} {uri} took an unknown query parameter");
            assert_eq!(
                taken_names(&message),
                documented,
                "{}: the query parameters it takes ({message})",
                operation.name()
            );
        }
    }
    host.stop().await;
}
