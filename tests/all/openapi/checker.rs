//! Holds each answer of the API to the document: its status must be one
//! the operation documents, with the documented headers, media type and
//! body (an error's code among the codes the response lists), and every
//! (operation, status) seen is kept, to tell which documented answers no
//! test provoked.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, header};
use serde_json::Value;

use super::document::{Document, Operation};
use super::host::{Answer, Host};

pub struct Checker<'a> {
    pub document: &'a Document,
    host: &'a Host,
    /// (operation name, status) of every answer checked.
    pub provoked: BTreeSet<(String, u16)>,
}

impl<'a> Checker<'a> {
    pub fn new(document: &'a Document, host: &'a Host) -> Self {
        Checker { document, host, provoked: BTreeSet::new() }
    }

    /// Sends `request` and checks the answer against the document. An event
    /// stream's body is not read (it does not end): the answer's is empty.
    pub async fn send(&mut self, request: Request<Body>) -> Answer {
        let (method, uri) = (request.method().to_string(), request.uri().clone());
        let operation = self
            .document
            .operation_for(&method, uri.path())
            .unwrap_or_else(|| panic!("{method} {uri}: no operation of the document answers it"));
        let response = self.host.respond(request).await;
        let answer = if media_type(response.headers()) == Some("text/event-stream".into()) {
            let (parts, _) = response.into_parts();
            Answer { status: parts.status, headers: parts.headers, body: Vec::new() }
        } else {
            self.host.read(response).await
        };
        let problems = conformance(self.document, &operation, &answer);
        assert!(
            problems.is_empty(),
            "{method} {uri} answered {}, not as the document says:\n  {}\nbody: {}",
            answer.status,
            problems.join("\n  "),
            String::from_utf8_lossy(&answer.body)
        );
        self.provoked.insert((operation.name(), answer.status.as_u16()));
        answer
    }

    /// `send`, and the answer must have `status`.
    pub async fn expect(&mut self, request: Request<Body>, status: u16) -> Answer {
        let what = format!("{} {}", request.method(), request.uri());
        let answer = self.send(request).await;
        assert_eq!(answer.status.as_u16(), status, "{what}: {}", String::from_utf8_lossy(&answer.body));
        answer
    }

    /// `send`, and the answer must be an error with `status` and `code`.
    pub async fn expect_error(&mut self, request: Request<Body>, status: u16, code: &str) -> Answer {
        let what = format!("{} {}", request.method(), request.uri());
        let answer = self.expect(request, status).await;
        assert_eq!(answer.json()["error"]["code"], code, "{what}: {}", String::from_utf8_lossy(&answer.body));
        answer
    }
}

/// Headers of every HTTP answer, not documented per response.
const PLAIN_HEADERS: &[&str] =
    &["content-type", "content-length", "cache-control", "transfer-encoding", "date", "vary"];

/// The media type of a message, without parameters.
pub fn media_type(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim().to_owned())
}

/// Every way `answer` differs from what `operation` documents.
fn conformance(document: &Document, operation: &Operation, answer: &Answer) -> Vec<String> {
    let status = answer.status.as_u16();
    let Some(response) = operation.response(status) else {
        return vec![format!(
            "{} does not document {status} (it documents {:?})",
            operation.name(),
            operation.statuses()
        )];
    };
    let mut problems = Vec::new();
    let documented = response.get("headers").and_then(Value::as_object);
    for name in answer.headers.keys().map(|name| name.as_str()).filter(|name| !PLAIN_HEADERS.contains(name)) {
        if !documented.is_some_and(|headers| headers.keys().any(|d| d.eq_ignore_ascii_case(name))) {
            problems.push(format!("header {name} is not in the document"));
        }
    }
    for (name, header) in documented.into_iter().flatten() {
        let header = document.resolve(header);
        match answer.headers.get(name.as_str()).map(|value| value.to_str().unwrap_or_default()) {
            None if header["required"] == true => problems.push(format!("header {name} is missing")),
            None => {}
            Some(text) => {
                let schema = &header["schema"];
                let value = match schema["type"].as_str() {
                    Some("integer") => text.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(text)),
                    _ => Value::from(text),
                };
                problems.extend(document.violations(schema, &value).into_iter().map(|v| format!("header {name}: {v}")));
            }
        }
    }
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        return problems;
    };
    let Some(media) = media_type(&answer.headers) else {
        problems.push(format!("no Content-Type; the document says {:?}", content.keys().collect::<Vec<_>>()));
        return problems;
    };
    let Some(documented) = content.get(&media) else {
        problems.push(format!("Content-Type {media}; the document says {:?}", content.keys().collect::<Vec<_>>()));
        return problems;
    };
    if media != "application/json" {
        return problems;
    }
    let body: Value = match serde_json::from_slice(&answer.body) {
        Ok(body) => body,
        Err(error) => {
            problems.push(format!("the body is not JSON: {error}"));
            return problems;
        }
    };
    problems.extend(document.violations(&documented["schema"], &body));
    let codes = error_codes(document, documented);
    if let Some(code) = body["error"]["code"].as_str()
        && !codes.is_empty()
        && !codes.contains(code)
    {
        problems.push(format!("error code {code:?} is not one the response lists ({codes:?})"));
    }
    problems
}

/// The error codes a documented error response lists in its examples.
pub fn error_codes(document: &Document, media: &Value) -> BTreeSet<String> {
    let named = media.get("examples").and_then(Value::as_object).into_iter().flatten();
    let values = named.map(|(_, example)| &document.resolve(example)["value"]).chain(media.get("example"));
    values.filter_map(|value| value["error"]["code"].as_str().map(str::to_owned)).collect()
}
