//! The examples that reach other systems (docs/writing-jobs.md, "Reaching
//! other systems"), run as bundled against servers the test starts on
//! loopback: the Rust webhook alert (wasi:http), the Python REST summary
//! (componentize-py, wasi:http), the JavaScript cache (componentize-js,
//! fetch), the Rust SMTP digest (wasi:sockets TCP); and the Go log
//! summary, which needs no network. Each runs from a copy of its jobs.d
//! declaration with the loopback placeholder pointed at the test's server.

mod servers;

use serde_json::Value;

use crate::support::{Sandbox, guests, repo_root};
use servers::{Answer, HttpServer, SmtpServer};

/// Copies `jobs.d/JOB.toml` into the sandbox, its `../plugins` paths made
/// absolute and each `(from, to)` replaced — each must occur, so a changed
/// declaration fails here rather than silently reaching its placeholder.
fn declare_bundled(sandbox: &Sandbox, job: &str, replacements: &[(&str, &str)]) {
    guests(); // builds the plugins the declarations point at
    let mut toml = std::fs::read_to_string(repo_root().join(format!("jobs.d/{job}.toml"))).unwrap();
    for (from, to) in replacements {
        assert!(toml.contains(from), "jobs.d/{job}.toml no longer has {from:?}");
        toml = toml.replace(from, to);
    }
    let plugins = format!("\"{}/plugins", repo_root().display());
    sandbox.declare(job, &toml.replace("\"../plugins", &plugins));
}

/// Runs JOB once with `payload` as its stdin; the record and the exit code.
fn once(sandbox: &Sandbox, job: &str, payload: &str) -> (Value, i32) {
    let file = sandbox.path(&format!("{job}-payload.txt"));
    std::fs::write(&file, payload).unwrap();
    let output = sandbox.wasmcron(&["once", job, "--json", "--payload", file.to_str().unwrap()]).output().unwrap();
    let record = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("no record: {}", crate::support::describe(&output)));
    (record, output.status.code().unwrap())
}

fn json(status: u16, body: &str) -> Answer {
    (status, vec![("content-type", "application/json".into())], body.as_bytes().to_vec())
}

const PLACEHOLDER: &str = "http://127.0.0.1:8787";

/// Stores the webhook's URL as the host's `alert-webhook` credential
/// (STATE/credentials), where the bundled declaration's [secrets] look.
fn webhook_credential(sandbox: &Sandbox, url: &str) {
    let credentials = sandbox.state().join("credentials");
    std::fs::create_dir_all(&credentials).unwrap();
    std::fs::write(credentials.join("alert-webhook"), format!("{url}\n")).unwrap();
}

#[test]
fn the_webhook_gets_the_alert_as_json_when_p95_is_over_the_threshold() {
    let server = HttpServer::start(|request| match request.target.as_str() {
        "/hooks/alerts" => json(200, r#"{"ok":true}"#),
        _ => json(500, r#"{"ok":false,"error":"broken"}"#),
    });
    let sandbox = Sandbox::new();
    let origin = server.origin();
    declare_bundled(&sandbox, "webhook", &[(PLACEHOLDER, &origin)]);
    webhook_credential(&sandbox, &format!("{origin}/hooks/alerts"));

    let (record, code) = once(&sandbox, "webhook", "120\n200\n");
    assert_eq!((record["status"].as_str(), code), (Some("succeeded"), 0), "{record}");
    assert!(server.received().is_empty(), "under the threshold nothing is posted");

    let (record, code) = once(&sandbox, "webhook", "100\n900\n950\n");
    assert_eq!((record["status"].as_str(), code), (Some("succeeded"), 0), "{record}");
    assert!(record["stdout"].as_str().unwrap().contains("alert posted to the webhook (HTTP 200)"), "{record}");
    let received = server.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let post = &received[0];
    assert_eq!((post.method.as_str(), post.header("content-type")), ("POST", Some("application/json")));
    let alert: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(alert["p95_ms"], 950.0);
    assert_eq!(alert["threshold_ms"], 250.0);
    assert_eq!(alert["samples"], 3);
    assert_eq!(alert["run_id"], record["id"].to_string().as_str(), "{alert}");
    assert_eq!(alert["text"], "webhook: p95 latency 950.0 ms is above 250.0 ms");

    // A webhook that refuses the alert fails the run (so it is retried); its URL is never printed.
    webhook_credential(&sandbox, &format!("{origin}/hooks/broken"));
    let (record, code) = once(&sandbox, "webhook", "900\n");
    assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{record}");
    let stderr = record["stderr"].as_str().unwrap();
    assert!(stderr.contains("the webhook refused the alert: HTTP 500 Internal Server Error"), "{stderr}");
    assert!(!format!("{record}").contains("/hooks/broken"), "the webhook's URL is a credential: {record}");
}

#[test]
fn a_webhook_outside_the_grant_is_denied_and_never_reached() {
    let server = HttpServer::start(|_| json(200, "{}"));
    let sandbox = Sandbox::new();
    // The URL moves to the test's server; the grant stays on the placeholder's port.
    declare_bundled(&sandbox, "webhook", &[]);
    webhook_credential(&sandbox, &format!("{}/hooks/alerts", server.origin()));
    let (record, code) = once(&sandbox, "webhook", "900\n");
    assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{record}");
    // The guest sees http-request-denied (the host reads the body wstd writes
    // before it awaits the answer, then refuses), and the host's note names it.
    let stderr = record["stderr"].as_str().unwrap();
    assert!(stderr.contains("webhook: the host denied the request to ALERT_WEBHOOK: grant"), "{stderr}");
    let note = format!("network: denied {0}: not granted; add \"{0}\" to [network] allow", server.origin());
    assert!(stderr.contains(&note), "{stderr}");
    let denied = format!("denied {}", server.origin());
    assert!(record["error"].as_str().unwrap().contains(&denied), "the record names the destination: {record}");
    assert!(server.received().is_empty());
}

#[test]
fn the_python_job_summarises_what_the_api_served() {
    let tickets = std::sync::Mutex::new(vec!["open", "closed", "open"]);
    let server = HttpServer::start(move |request| {
        assert_eq!(request.target, "/api/tickets?state=all");
        let mut tickets = tickets.lock().unwrap();
        let body: Vec<Value> = tickets.iter().map(|s| serde_json::json!({ "status": s })).collect();
        tickets.push("open"); // the next run sees one more
        json(200, &serde_json::json!({ "items": body }).to_string())
    });
    let sandbox = Sandbox::new();
    declare_bundled(&sandbox, "py-rest", &[(PLACEHOLDER, &server.origin())]);

    let (record, code) = once(&sandbox, "py-rest", "");
    assert_eq!((record["status"].as_str(), code), (Some("succeeded"), 0), "{record}");
    let expected = format!("py-rest: 3 items from {} (first run); by status: closed 1, open 2\n", server.origin());
    assert_eq!(record["stdout"], expected.as_str());
    let (record, _) = once(&sandbox, "py-rest", "");
    let expected =
        format!("py-rest: 4 items from {} (+1 since the last run); by status: closed 1, open 3\n", server.origin());
    assert_eq!(record["stdout"], expected.as_str(), "the count is kept between runs");
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|r| r.method == "GET" && r.header("accept") == Some("application/json")));
}

#[test]
fn the_python_job_fails_clearly_when_denied_and_on_an_answer_that_is_not_a_list() {
    let server = HttpServer::start(|_| json(200, r#"{"total": 3}"#));
    let sandbox = Sandbox::new();
    declare_bundled(&sandbox, "py-rest", &[(PLACEHOLDER, &server.origin())]);
    let (record, code) = once(&sandbox, "py-rest", "");
    assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("answered JSON that is not a list of objects"), "{record}");

    // The URL moves to the test's server; the grant stays on the placeholder's port.
    let url = format!("API_URL = \"{}/api/tickets\"", server.origin());
    declare_bundled(&sandbox, "py-rest", &[("API_URL = \"http://127.0.0.1:8787/api/tickets?state=all\"", &url)]);
    let (record, code) = once(&sandbox, "py-rest", "");
    assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{record}");
    let expected = format!("the host denied the request to {}: grant it", server.origin());
    assert!(record["error"].as_str().unwrap().contains(&expected), "{record}");
    assert_eq!(server.received().len(), 1, "the denied request never reached the server");
}

#[test]
fn the_javascript_job_caches_with_fetch_and_revalidates_with_its_etag() {
    let server = HttpServer::start(|request| match (request.target.as_str(), request.header("if-none-match")) {
        ("/rates.json", Some("\"rates-1\"")) => (304, vec![("etag", "\"rates-1\"".into())], Vec::new()),
        ("/rates.json", _) => {
            let mut answer = json(200, r#"{"EUR": 1.0, "GBP": 0.86, "USD": 1.16}"#);
            answer.1.push(("etag", "\"rates-1\"".into()));
            answer
        }
        _ => json(404, "{}"),
    });
    let sandbox = Sandbox::new();
    declare_bundled(&sandbox, "js-cache", &[(PLACEHOLDER, &server.origin())]);

    let (record, code) = once(&sandbox, "js-cache", "");
    assert_eq!((record["status"].as_str(), code), (Some("succeeded"), 0), "{record}");
    let expected = format!("js-cache: cached 3 entries from {} (etag \"rates-1\")\n", server.origin());
    assert_eq!(record["stdout"], expected.as_str());
    let (record, _) = once(&sandbox, "js-cache", "");
    let expected = format!("js-cache: {} unchanged (etag \"rates-1\")\n", server.origin());
    assert_eq!(record["stdout"], expected.as_str(), "{record}");
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].header("if-none-match"), None, "nothing cached yet");
    assert_eq!(received[1].header("if-none-match"), Some("\"rates-1\""), "the cached copy's ETag is sent");

    declare_bundled(&sandbox, "js-cache", &[(PLACEHOLDER, &server.origin()), ("/rates.json", "/gone.json")]);
    let (record, code) = once(&sandbox, "js-cache", "");
    assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{record}");
    assert!(record["error"].as_str().unwrap().contains("answered HTTP 404; the cached copy is kept"), "{record}");

    // The URL moves to the test's server; the grant stays on the placeholder's port.
    let url = format!("SOURCE_URL = \"{}/rates.json\"", server.origin());
    declare_bundled(&sandbox, "js-cache", &[("SOURCE_URL = \"http://127.0.0.1:8787/rates.json\"", &url)]);
    let (record, code) = once(&sandbox, "js-cache", "");
    assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains(&format!("fetching {} failed", server.origin())), "{record}");
    assert!(error.contains(&format!("denied {}", server.origin())), "the record names the destination: {record}");
    assert_eq!(server.received().len(), 3, "the denied request never reached the server");
}

#[test]
fn the_smtp_digest_delivers_its_mail_to_every_recipient() {
    let server = SmtpServer::start(None);
    let sandbox = Sandbox::new();
    let recipients = "MAIL_TO = \"ops@example.org, oncall@example.org\"";
    declare_bundled(
        &sandbox,
        "smtp-digest",
        &[("127.0.0.1:2525", &server.addr.to_string()), ("MAIL_TO = \"ops@example.org\"", recipients)],
    );

    let (record, code) = once(&sandbox, "smtp-digest", "");
    assert_eq!((record["status"].as_str(), code), (Some("succeeded"), 0), "{record}");
    let mails = server.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!((mail.ehlo.as_str(), mail.from.as_str()), ("wasmcron", "wasmcron@example.org"));
    assert_eq!(mail.to, ["ops@example.org", "oncall@example.org"]);
    assert!(mail.quit, "the session ends with QUIT");
    assert!(mail.data.contains("\r\nSubject: Nightly digest for "), "{}", mail.data);
    assert!(mail.data.contains(&format!("X-Wasmcron-Run: smtp-digest {}\r\n", record["id"])), "{}", mail.data);
    let body = mail.data.split_once("\r\n\r\n").unwrap().1;
    assert!(body.starts_with("Files in /reports:\r\n"), "{body}");
    assert!(body.contains("  orders.csv: "), "{body}");
    assert!(body.ends_with("3 files, 107 bytes\r\n"), "the same totals as the report example: {body}");

    // A payload is the digest; a line starting with "." arrives intact (dot-stuffing).
    let (record, _) = once(&sandbox, "smtp-digest", "all quiet\n.hidden was cleaned\n");
    assert_eq!(record["status"], "succeeded", "{record}");
    let mail = server.mails().pop().unwrap();
    assert!(mail.data.ends_with("\r\n\r\nall quiet\r\n.hidden was cleaned\r\n"), "{}", mail.data);
}

#[test]
fn the_smtp_digest_fails_with_the_servers_reply_on_a_refused_recipient() {
    let server = SmtpServer::start(Some("ops@example.org"));
    let sandbox = Sandbox::new();
    declare_bundled(&sandbox, "smtp-digest", &[("127.0.0.1:2525", &server.addr.to_string())]);
    let (record, code) = once(&sandbox, "smtp-digest", "digest\n");
    assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{record}");
    let stderr = record["stderr"].as_str().unwrap();
    let expected = "SMTP protocol error after RCPT TO: expected 250, the server said \"550 no such mailbox here\"";
    assert!(stderr.contains(expected), "{stderr}");
    assert!(server.mails().iter().all(|mail| mail.data.is_empty()), "no message was sent");
}

#[test]
fn the_smtp_digest_cannot_connect_outside_its_tcp_grant() {
    let server = SmtpServer::start(None);
    let sandbox = Sandbox::new();
    // The server moves to the test's port; the grant stays on tcp://127.0.0.1:2525.
    let env = format!("SMTP_SERVER = \"{}\"", server.addr);
    declare_bundled(&sandbox, "smtp-digest", &[("SMTP_SERVER = \"127.0.0.1:2525\"", &env)]);
    let (record, code) = once(&sandbox, "smtp-digest", "digest\n");
    assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{record}");
    let stderr = record["stderr"].as_str().unwrap();
    assert!(stderr.contains(&format!("connecting to SMTP_SERVER {}: ", server.addr)), "{stderr}");
    assert!(record["error"].as_str().unwrap().contains(&format!("denied tcp://{}", server.addr)), "{record}");
    assert!(server.mails().is_empty(), "no connection reached the server");
}

#[test]
fn the_go_log_summary_counts_levels_and_fails_over_max_errors() {
    let sandbox = Sandbox::new();
    declare_bundled(&sandbox, "go-logs", &[]);
    let (record, code) = once(&sandbox, "go-logs", "");
    assert_eq!((record["status"].as_str(), code), (Some("succeeded"), 0), "{record}");
    let stdout = record["stdout"].as_str().unwrap();
    assert!(
        stdout.starts_with("go-logs: 10 lines from 2 files in /logs: DEBUG 1, INFO 4, WARN 2, ERROR 3, FATAL 0\n"),
        "{stdout}"
    );
    assert!(stdout.contains("  2x upstream timeout\n"), "{stdout}");

    let errors = "ERROR disk full\n".repeat(6) + "[warning] slow\n";
    let (record, code) = once(&sandbox, "go-logs", &errors);
    assert_eq!((record["status"].as_str(), code), (Some("failed"), 1), "{record}");
    assert!(record["stdout"].as_str().unwrap().contains("7 lines from the payload: DEBUG 0, INFO 0, WARN 1, ERROR 6"));
    assert!(record["stderr"].as_str().unwrap().contains("ALERT: 6 error lines, more than MAX_ERRORS=5"), "{record}");
}
