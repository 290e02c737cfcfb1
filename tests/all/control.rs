//! The control plane end to end: the real `wasmcron run` on a real
//! loopback socket, driven over HTTP and by the CLI's `trigger`, `cancel`
//! and `retry`, with the state database checked after each.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use wasmcron::record::{RunRecord, RunStatus, Trigger};

use crate::api::{Answer, Api, send};
use crate::daemon::Host;
use crate::support::{ECHO, Sandbox, all_runs, describe, text, versioned, wait_for};

/// Asserts the JSON error shape and its code.
fn assert_error(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], code, "{}", answer.body);
    let message = answer.body["error"]["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "an error says what was wrong: {}", answer.body);
}

fn run_of(sandbox: &Sandbox, id: i64) -> RunRecord {
    all_runs(sandbox).into_iter().find(|r| r.id == id).unwrap_or_else(|| panic!("run {id} is not recorded"))
}

#[test]
fn a_trigger_hands_its_payload_to_the_guest_and_the_cli_waits_for_the_outcome() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("echo.wat"), ECHO).unwrap();
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);

    // Over HTTP: 202, the run's id and where to find it.
    let answer = api.post("/api/v1/jobs/echo/trigger", b"hello over http");
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let id = answer.body["id"].as_i64().unwrap();
    assert_eq!(answer.headers["location"], format!("/api/v1/runs/{id}").as_str());
    let run = api.wait_status(id, |s| s == "succeeded", Duration::from_secs(20));
    assert_eq!((run["trigger"].as_str(), run["attempt"].as_i64()), (Some("manual"), Some(1)));
    let output = api.get(&format!("/api/v1/runs/{id}/output"));
    assert_eq!(output.body["stdout"], "hello over http");

    // By the CLI, with --wait: the guest's output and the exit code of `once`.
    let payload = sandbox.path("payload.txt");
    std::fs::write(&payload, "hello from a file").unwrap();
    let listen = ["--listen", host.listen.as_str()];
    let out = sandbox
        .wasmcron(&["trigger", "echo", "--payload", payload.to_str().unwrap(), "--wait"])
        .args(listen)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = text(&out.stdout);
    let (id_line, echoed) = stdout.split_once('\n').expect("the run id, then the guest's output");
    let cli_run: i64 = id_line.trim().parse().unwrap_or_else(|_| panic!("prints the run id first: {stdout:?}"));
    assert_eq!(echoed, "hello from a file");
    let record = run_of(&sandbox, cli_run);
    assert_eq!(
        (record.status, record.trigger, record.stdout.as_slice()),
        (RunStatus::Succeeded, Trigger::Manual, b"hello from a file".as_slice())
    );

    // An unknown job: the CLI says so and exits 1.
    let out = sandbox.wasmcron(&["trigger", "nope"]).args(listen).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text(&out.stderr).contains("no job named \"nope\""), "{}", describe(&out));
    host.stop();
}

#[test]
fn with_no_host_running_trigger_says_so_and_suggests_once() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("echo.wat"), ECHO).unwrap();
    // A host ran once here (it wrote the token), and is gone.
    std::fs::create_dir_all(sandbox.state()).unwrap();
    std::fs::write(sandbox.state().join("token"), "0123456789abcdef0123456789abcdef\n").unwrap();
    let port = crate::support::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let out = sandbox.wasmcron(&["trigger", "echo", "--listen", &listen]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("no wasmcron host answers at http://{listen}")), "{stderr}");
    assert!(stderr.contains("wasmcron once echo"), "{stderr}");
}

#[test]
fn a_delayed_run_does_not_start_early_and_starts_after_a_restart() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("echo.wat"), ECHO).unwrap();
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    let listen = ["--listen", host.listen.as_str()];

    // One due while the host runs, one due while it is down.
    let soon = api.post("/api/v1/jobs/echo/trigger?in=2s", b"soon");
    assert_eq!(soon.status, StatusCode::ACCEPTED, "{}", soon.body);
    let soon = soon.body["id"].as_i64().unwrap();
    let out = sandbox.wasmcron(&["trigger", "echo", "--in", "6s"]).args(listen).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let later: i64 = text(&out.stdout).trim().parse().unwrap();
    assert_eq!(api.run(later)["status"], "pending");

    let run = api.wait_status(soon, |s| s == "succeeded", Duration::from_secs(20));
    let record = run_of(&sandbox, soon);
    assert!(record.started_at.unwrap() >= record.scheduled_for, "started early: {run}");
    assert_eq!(api.run(later)["status"], "pending", "the later one waits");
    host.stop();

    let due = run_of(&sandbox, later).scheduled_for;
    wait_for("the later run's time to pass", Duration::from_secs(20), || chrono::Utc::now() > due);
    assert_eq!(run_of(&sandbox, later).status, RunStatus::Pending, "nothing ran it while the host was down");
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    api.wait_status(later, |s| s == "succeeded", Duration::from_secs(20));
    let record = run_of(&sandbox, later);
    assert!(record.started_at.unwrap() >= due);
    host.stop();
}

/// A delayed run whose time came while the host was down follows its
/// job's catch-up policy: with `catch_up = "none"` it is recorded missed.
#[test]
fn a_delayed_run_due_while_the_host_was_down_follows_catch_up() {
    let sandbox = Sandbox::new();
    sandbox.declare("strict", "catch_up = \"none\"\n");
    std::fs::write(sandbox.jobs().join("strict.wat"), ECHO).unwrap();
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    let id = api.post("/api/v1/jobs/strict/trigger?in=1s", b"").body["id"].as_i64().unwrap();
    let now = api.post("/api/v1/jobs/strict/trigger?in=1h", b"").body["id"].as_i64().unwrap();
    host.stop();
    let due = run_of(&sandbox, id).scheduled_for;
    wait_for("the run's time to pass", Duration::from_secs(20), || chrono::Utc::now() > due);

    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    let run = api.run(id);
    assert_eq!(run["status"], "missed", "{run}");
    assert!(run["error"].as_str().unwrap().contains("catch_up = \"none\""), "{run}");
    assert_eq!(api.run(now)["status"], "pending", "a run not yet due still waits");
    host.stop();
}

#[test]
fn cancel_stops_a_running_run_and_a_delayed_one_and_retry_starts_a_new_run() {
    let sandbox = Sandbox::new();
    sandbox.declare("slow", "[retry]\nattempts = 1\n");
    std::fs::write(sandbox.jobs().join("slow.wat"), versioned("slow", 30_000)).unwrap();
    std::fs::write(sandbox.jobs().join("echo.wat"), ECHO).unwrap();
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    let listen = ["--listen", host.listen.as_str()];

    // A running run, cancelled by the CLI.
    let running = api.post("/api/v1/jobs/slow/trigger", b"").body["id"].as_i64().unwrap();
    api.wait_status(running, |s| s == "running", Duration::from_secs(20));
    let out = sandbox.wasmcron(&["cancel", &running.to_string()]).args(listen).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    api.wait_status(running, |s| s == "cancelled", Duration::from_secs(20));

    // A delayed run, cancelled over HTTP before it starts: it never does.
    let delayed = api.post("/api/v1/jobs/echo/trigger?in=1h", b"").body["id"].as_i64().unwrap();
    let answer = api.post(&format!("/api/v1/runs/{delayed}/cancel"), b"");
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let record = run_of(&sandbox, delayed);
    assert_eq!((record.status, record.started_at), (RunStatus::Cancelled, None));
    // Cancelling it again: 409, and the CLI exits 1 saying why.
    assert_error(&api.post(&format!("/api/v1/runs/{delayed}/cancel"), b""), StatusCode::CONFLICT, "run_ended");
    let out = sandbox.wasmcron(&["cancel", &delayed.to_string()]).args(listen).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text(&out.stderr).contains("already ended (cancelled)"), "{}", describe(&out));

    // Retry of an ended run: a new run, attempt 1, manual, the parent
    // recorded, the same payload.
    let first = api.post("/api/v1/jobs/echo/trigger", b"again").body["id"].as_i64().unwrap();
    api.wait_status(first, |s| s == "succeeded", Duration::from_secs(20));
    let out = sandbox.wasmcron(&["retry", &first.to_string()]).args(listen).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let second: i64 = text(&out.stdout).trim().parse().unwrap();
    api.wait_status(second, |s| s == "succeeded", Duration::from_secs(20));
    let record = run_of(&sandbox, second);
    assert_eq!((record.attempt, record.trigger, record.parent_run), (1, Trigger::Manual, Some(first)));
    assert_eq!(record.stdout, b"again");
    // A run that has not ended cannot be retried; one that never was, neither.
    let pending = api.post("/api/v1/jobs/echo/trigger?in=1h", b"").body["id"].as_i64().unwrap();
    assert_error(&api.post(&format!("/api/v1/runs/{pending}/retry"), b""), StatusCode::CONFLICT, "run_not_ended");
    assert_error(&api.post("/api/v1/runs/999999/retry", b""), StatusCode::NOT_FOUND, "no_such_run");
    host.stop();
}

#[test]
fn pause_and_resume_over_http() {
    let sandbox = Sandbox::new();
    sandbox.declare("tick", "schedule = \"@every 1h\"\n");
    std::fs::write(sandbox.jobs().join("tick.wat"), ECHO).unwrap();
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    let job = api.get("/api/v1/jobs/tick");
    assert_eq!((job.body["paused"].as_bool(), job.body["next_fires"].as_array().map(Vec::len)), (Some(false), Some(5)));

    let answer = api.post("/api/v1/jobs/tick/pause", b"");
    assert_eq!((answer.status, answer.body["paused"].as_bool()), (StatusCode::OK, Some(true)), "{}", answer.body);
    wait_for("the view to show the pause", Duration::from_secs(5), || {
        api.get("/api/v1/jobs/tick").body["paused"] == true
    });
    let job = api.get("/api/v1/jobs/tick").body;
    assert!(job["next_fire"].is_null() && job["next_fires"].as_array().unwrap().is_empty(), "{job}");

    assert_eq!(api.post("/api/v1/jobs/tick/resume", b"").status, StatusCode::OK);
    wait_for("the view to show the resume", Duration::from_secs(5), || {
        api.get("/api/v1/jobs/tick").body["paused"] == false
    });
    assert_error(&api.post("/api/v1/jobs/nope/pause", b""), StatusCode::NOT_FOUND, "unknown_job");

    // A reason is kept while paused, shown by the API and `jobs`, and dropped on resume.
    let answer = api.post("/api/v1/jobs/tick/pause", br#"{"reason": "  upstream down, INC-231 "}"#);
    assert_eq!(answer.body["reason"], "upstream down, INC-231", "{}", answer.body);
    assert_eq!(api.get("/api/v1/jobs").body["jobs"][0]["paused_reason"], "upstream down, INC-231");
    let out = sandbox.wasmcron(&["jobs", "--listen", &host.listen]).output().unwrap();
    assert!(text(&out.stdout).contains("paused: upstream down, INC-231"), "{}", describe(&out));
    assert_eq!(api.post("/api/v1/jobs/tick/resume", b"").body["reason"], Value::Null);
    assert_eq!(api.get("/api/v1/jobs/tick").body["paused_reason"], Value::Null);
    let long = format!(r#"{{"reason": "{}"}}"#, "x".repeat(501));
    assert_error(&api.post("/api/v1/jobs/tick/pause", long.as_bytes()), StatusCode::BAD_REQUEST, "bad_request");
    assert_error(&api.post("/api/v1/jobs/tick/pause", br#"{"why": "x"}"#), StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(api.get("/api/v1/jobs/tick").body["paused"], false, "a refused pause pauses nothing");

    // The CLI asks the running host: the view shows it at once.
    let out = sandbox.wasmcron(&["pause", "tick", "--listen", &host.listen]).output().unwrap();
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "tick paused\n".into()), "{}", describe(&out));
    assert_eq!(api.get("/api/v1/jobs/tick").body["paused"], true);
    let out =
        sandbox.wasmcron(&["pause", "tick", "--reason", "nightly\nbatch", "--listen", &host.listen]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(text(&out.stderr).contains("--reason"), "{}", describe(&out));
    let out =
        sandbox.wasmcron(&["pause", "tick", "--reason", "db migration", "--listen", &host.listen]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(api.get("/api/v1/jobs/tick").body["paused_reason"], "db migration");
    host.stop();
    // Kept across a restart.
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    assert_eq!(api.get("/api/v1/jobs/tick").body["paused_reason"], "db migration");
    host.stop();
    // With no host, it is recorded for the next start.
    let out = sandbox.wasmcron(&["resume", "tick", "--listen", &host_listen_gone()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(text(&out.stdout).contains("no host is running"), "{}", describe(&out));
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    assert_eq!(api.get("/api/v1/jobs/tick").body["paused"], false);
    host.stop();
}

/// An address nothing listens on.
fn host_listen_gone() -> String {
    format!("127.0.0.1:{}", crate::support::free_port())
}

#[test]
fn listening_beyond_loopback_warns_and_the_cli_still_finds_the_host() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("echo.wat"), ECHO).unwrap();
    let mut local = Host::start(&sandbox, &["--listen", "0.0.0.0:0"]);
    let port = local.bound_address().rsplit(':').next().unwrap().to_owned();
    let listen = format!("0.0.0.0:{port}");
    local.listen = format!("127.0.0.1:{port}");
    let _api = Api::ready(&sandbox, &local);
    let out = sandbox.wasmcron(&["trigger", "echo", "--listen", &listen]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let log = local.stop();
    assert!(log.contains("plain HTTP") && log.contains("reverse proxy"), "{log}");
}

#[test]
fn tokens_guard_the_api_and_errors_are_json() {
    let sandbox = Sandbox::new();
    sandbox.declare("small", "[limits]\npayload = \"16B\"\n");
    std::fs::write(sandbox.jobs().join("small.wat"), ECHO).unwrap();
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    for file in ["token", "token.read"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(sandbox.state().join(file)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let call =
        |method: Method, path: &str, token: Option<&str>| api.call(method, path, token, Vec::new(), &[]).unwrap();

    // No token, or a wrong one: 401 on every /api route, with the challenge.
    let answer = call(Method::GET, "/api/v1/jobs", None);
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(answer.headers["www-authenticate"], "Bearer");
    assert_error(
        &call(Method::GET, "/api/v1/runs", Some("not-the-token-0123456789")),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(&call(Method::POST, "/api/v1/jobs/small/trigger", None), StatusCode::UNAUTHORIZED, "unauthorized");
    // The scheme's name is not case-sensitive (RFC 9110).
    let answer = api
        .call(Method::GET, "/api/v1/jobs", None, Vec::new(), &[("authorization", &format!("bearer {}", api.read))])
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // The read-only token reads, and may change nothing.
    assert_eq!(call(Method::GET, "/api/v1/jobs", Some(&api.read)).status, StatusCode::OK);
    assert_eq!(call(Method::GET, "/api/v1/runs", Some(&api.read)).status, StatusCode::OK);
    for path in
        ["/api/v1/jobs/small/trigger", "/api/v1/jobs/small/pause", "/api/v1/runs/1/cancel", "/api/v1/runs/1/retry"]
    {
        assert_error(&call(Method::POST, path, Some(&api.read)), StatusCode::FORBIDDEN, "forbidden");
    }
    assert!(all_runs(&sandbox).is_empty(), "nothing was triggered");
    // The real binary serves the document the in-process check keeps true
    // (tests/all/openapi.rs), and it names every route the binary routes.
    let served = call(Method::GET, "/api/v1/openapi.json", Some(&api.read));
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.body, serde_json::from_str::<Value>(wasmcron::api::OPENAPI).unwrap());
    for (method, path, _) in wasmcron::api::routes() {
        assert!(served.body["paths"][path][method.to_lowercase()].is_object(), "{method} {path} is not documented");
    }
    // Health needs no token.
    assert_eq!(call(Method::GET, "/healthz", None).status, StatusCode::OK);
    assert_eq!(call(Method::GET, "/readyz", None).status, StatusCode::OK);

    // 413 past the job's cap (16 bytes), and nothing recorded; at the cap, 202.
    assert_error(
        &api.post("/api/v1/jobs/small/trigger", &[b'x'; 17]),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert!(all_runs(&sandbox).is_empty());
    assert_eq!(api.post("/api/v1/jobs/small/trigger", &[b'x'; 16]).status, StatusCode::ACCEPTED);
    // 404s, 400s: a JSON error that names the thing.
    assert_error(&api.post("/api/v1/jobs/nope/trigger", b""), StatusCode::NOT_FOUND, "unknown_job");
    assert_error(&api.get("/api/v1/runs/424242"), StatusCode::NOT_FOUND, "no_such_run");
    let answer = api.get("/api/v1/runs/forty-two");
    assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        answer.body["error"]["message"].as_str().unwrap().contains("\"forty-two\" is not a run id"),
        "{}",
        answer.body
    );
    let answer = api.post("/api/v1/jobs/small/trigger?in=soon", b"");
    assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        answer.body["error"]["message"].as_str().unwrap().contains("\"soon\" is not a duration"),
        "{}",
        answer.body
    );
    assert_error(&api.get("/api/v1/runs?colour=red"), StatusCode::BAD_REQUEST, "bad_request");
    assert_error(&api.get("/api/v1/runs?status=done"), StatusCode::BAD_REQUEST, "bad_request");
    assert_error(&api.get("/api/v1/nothing-here"), StatusCode::NOT_FOUND, "no_route");
    host.stop();
}

#[test]
fn runs_are_listed_newest_first_a_page_at_a_time() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("echo.wat"), ECHO).unwrap();
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    let ids: Vec<i64> =
        (0..5).map(|_| api.post("/api/v1/jobs/echo/trigger?in=1h", b"").body["id"].as_i64().unwrap()).collect();
    let mut seen = Vec::new();
    let mut path = "/api/v1/runs?job=echo&status=pending&trigger=manual&limit=2".to_owned();
    loop {
        let page = api.get(&path).body;
        seen.extend(page["runs"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/runs?job=echo&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    assert!(api.get("/api/v1/runs?status=succeeded").body["runs"].as_array().unwrap().is_empty());

    // Search: by id (`42` or `#42`), by job name, by error text.
    let found = |query: &str| -> Vec<i64> {
        let page = api.get(&format!("/api/v1/runs?{query}"));
        assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.body);
        page.body["runs"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect()
    };
    assert_eq!(found(&format!("q=%23{}", ids[2])), [ids[2]]);
    assert_eq!(found(&format!("q={}", ids[2])), [ids[2]]);
    assert_eq!(found("q=EC").len(), 5, "job names match ignoring case");
    assert!(found("q=nothing-like-this").is_empty());
    assert!(found("q=%25").is_empty(), "a % is searched for, not a wildcard");
    let cancelled = api.post(&format!("/api/v1/runs/{}/cancel", ids[0]), b"");
    assert_eq!(cancelled.status, StatusCode::ACCEPTED, "{}", cancelled.body);
    let error =
        api.wait_status(ids[0], |s| s == "cancelled", Duration::from_secs(10))["error"].as_str().unwrap().to_owned();
    let word = error.split_whitespace().max_by_key(|w| w.len()).unwrap();
    assert!(found(&format!("q={word}")).contains(&ids[0]), "the error {error:?} is searched");
    // Every attempt of one fire: its job and the instant it was due.
    // (To the millisecond, as runs show it: two triggers a microsecond apart share it.)
    let due = api.run(ids[1])["scheduled_for"].as_str().unwrap().to_owned();
    let same = found(&format!("job=echo&scheduled_for={}", due.replace('+', "%2B")));
    assert!(same.contains(&ids[1]), "{same:?}");
    for id in same {
        assert_eq!(api.run(id)["scheduled_for"], due.as_str());
    }
    let later = api.post("/api/v1/jobs/echo/trigger?at=2099-01-01T00:00:00Z", b"").body["id"].as_i64().unwrap();
    api.post("/api/v1/jobs/echo/trigger?at=2099-01-01T00:00:00.001Z", b"");
    assert_eq!(found("job=echo&scheduled_for=2099-01-01T00:00:00Z"), [later]);
    assert!(found("job=tick&scheduled_for=2099-01-01T00:00:00Z").is_empty());
    host.stop();
}

/// Many clients at once against a short queue and a slow job: some are
/// told 429, every 202 is a recorded run, and after a SIGKILL and a
/// restart every accepted run ends, exactly once.
#[test]
fn a_flood_gets_429s_and_every_accepted_run_ends_exactly_once_across_a_kill() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("slow.wat"), versioned("slow", 200)).unwrap();
    let host = Host::start(&sandbox, &["--max-queued", "6", "--max-running", "2"]);
    let api = Api::ready(&sandbox, &host);

    let (clients, each) = (16, 8);
    let answers: Vec<(StatusCode, Option<i64>, Option<String>)> = api.runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let (http, base, token) = (api.http.clone(), api.base.clone(), api.admin.clone());
            tasks.spawn(async move {
                let mut answers = Vec::new();
                for _ in 0..each {
                    let answer =
                        send(&http, &base, Method::POST, "/api/v1/jobs/slow/trigger", Some(&token), Vec::new(), &[])
                            .await
                            .unwrap();
                    let retry_after = answer.headers.get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                    answers.push((answer.status, answer.body["id"].as_i64(), retry_after));
                }
                answers
            });
        }
        tasks.join_all().await.into_iter().flatten().collect()
    });
    let accepted: Vec<i64> = answers.iter().filter(|a| a.0 == StatusCode::ACCEPTED).map(|a| a.1.unwrap()).collect();
    let refused = answers.iter().filter(|a| a.0 == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(
        accepted.len() + refused,
        clients * each,
        "only 202s and 429s: {:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    assert!(refused > 0 && !accepted.is_empty(), "{} accepted, {refused} refused", accepted.len());
    assert!(
        answers.iter().filter(|a| a.0 == StatusCode::TOO_MANY_REQUESTS).all(|a| a.2.is_some()),
        "429s say when to retry"
    );
    let manual: Vec<i64> = all_runs(&sandbox).iter().filter(|r| r.trigger == Trigger::Manual).map(|r| r.id).collect();
    let mut sorted = accepted.clone();
    sorted.sort();
    assert_eq!(manual, sorted, "every 202 is a recorded run, and nothing else is");

    // Killed with work running and waiting; restarted, it finishes it all.
    host.kill();
    let host = Host::start(&sandbox, &[]);
    let _api = Api::ready(&sandbox, &host);
    wait_for("every accepted run to end", Duration::from_secs(60), || {
        all_runs(&sandbox).iter().all(|r| !matches!(r.status, RunStatus::Pending | RunStatus::Running))
    });
    host.stop();
    let runs = all_runs(&sandbox);
    for id in &accepted {
        let rows: Vec<&RunRecord> = runs.iter().filter(|r| r.id == *id).collect();
        assert_eq!(rows.len(), 1);
        assert!(
            matches!(rows[0].status, RunStatus::Succeeded | RunStatus::Abandoned),
            "run {id}: {:?}",
            rows[0].status
        );
        // Output is written once, by the one run that ended it.
        if rows[0].status == RunStatus::Succeeded {
            assert_eq!(text(&rows[0].stdout), "slow start\nslow end\n", "run {id}");
        }
    }
    assert_eq!(
        runs.iter().filter(|r| r.trigger == Trigger::Manual).count(),
        accepted.len(),
        "no run was added or lost"
    );
}

/// A repeated request is answered with its run even while the queue is
/// full: it asks for no new run.
#[test]
fn a_repeated_key_is_answered_while_the_queue_is_full() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("echo.wat"), ECHO).unwrap();
    let host = Host::start(&sandbox, &["--max-queued", "1"]);
    let api = Api::ready(&sandbox, &host);
    let keyed = |key: &str| {
        api.call(
            Method::POST,
            "/api/v1/jobs/echo/trigger?in=1h",
            Some(&api.admin),
            Vec::new(),
            &[("Idempotency-Key", key)],
        )
        .unwrap()
    };
    let first = keyed("order-1");
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_error(&api.post("/api/v1/jobs/echo/trigger", b""), StatusCode::TOO_MANY_REQUESTS, "queue_full");
    let again = keyed("order-1");
    assert_eq!((again.status, &again.body["id"]), (StatusCode::OK, &first.body["id"]), "{}", again.body);
    assert_error(&keyed("order-2"), StatusCode::TOO_MANY_REQUESTS, "queue_full");
    assert_eq!(all_runs(&sandbox).len(), 1);
    // Two triggers were refused (no key, and order-2); the repeat of order-1 was not.
    let scrape = api.get("/metrics").text;
    let refused =
        scrape.lines().find(|line| line.starts_with(r#"wasmcron_trigger_rejected_total{reason="queue_full"} "#));
    assert_eq!(refused.and_then(|line| line.rsplit(' ').next()), Some("2"), "{scrape}");
    host.stop();
}

#[test]
fn concurrent_triggers_with_one_idempotency_key_make_one_run() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("echo.wat"), ECHO).unwrap();
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    let answers: Vec<(StatusCode, i64)> = api.runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..24 {
            let (http, base, token) = (api.http.clone(), api.base.clone(), api.admin.clone());
            tasks.spawn(async move {
                let headers = [("Idempotency-Key", "welcome-mail-user-42")];
                let answer = send(
                    &http,
                    &base,
                    Method::POST,
                    "/api/v1/jobs/echo/trigger",
                    Some(&token),
                    b"hi".to_vec(),
                    &headers,
                )
                .await
                .unwrap();
                (answer.status, answer.body["id"].as_i64().unwrap())
            });
        }
        tasks.join_all().await
    });
    let first = answers[0].1;
    assert!(answers.iter().all(|(_, id)| *id == first), "one run for one key: {answers:?}");
    assert_eq!(answers.iter().filter(|(s, _)| *s == StatusCode::ACCEPTED).count(), 1, "{answers:?}");
    assert_eq!(answers.iter().filter(|(s, _)| *s == StatusCode::OK).count(), answers.len() - 1);
    // The CLI's --key is the same header; another job's key space is its own.
    let out = sandbox
        .wasmcron(&["trigger", "echo", "--key", "welcome-mail-user-42", "--listen", &host.listen])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(text(&out.stdout).trim(), first.to_string());
    api.wait_status(first, |s| s == "succeeded", Duration::from_secs(20));
    assert_eq!(all_runs(&sandbox).len(), 1);
    host.stop();
}

#[test]
fn the_event_stream_follows_a_run_from_recorded_to_ended() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("echo.wat"), ECHO).unwrap();
    std::fs::write(sandbox.jobs().join("other.wat"), ECHO).unwrap();
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    let stages: Vec<(String, Value)> = api.runtime.block_on(async {
        let mut stream =
            api.http.get(format!("{}/api/v1/events?job=echo", api.base)).bearer_auth(&api.read).send().await.unwrap();
        assert_eq!(stream.status(), StatusCode::OK);
        assert_eq!(stream.headers()["content-type"], "text/event-stream");
        let trigger = |job: &str| {
            let (http, base, token) = (api.http.clone(), api.base.clone(), api.admin.clone());
            let path = match job.split_once('?') {
                Some((job, query)) => format!("/api/v1/jobs/{job}/trigger?{query}"),
                None => format!("/api/v1/jobs/{job}/trigger"),
            };
            async move { send(&http, &base, Method::POST, &path, Some(&token), Vec::new(), &[]).await.unwrap() }
        };
        trigger("other").await; // filtered out
        let id = trigger("echo").await.body["id"].as_i64().unwrap();
        let (mut buffer, mut events) = (String::new(), Vec::new());
        let mut ended = 0;
        while ended < 2 {
            let chunk = tokio::time::timeout(Duration::from_secs(20), stream.chunk()).await.unwrap().unwrap().unwrap();
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = buffer.find("\n\n") {
                let message: String = buffer.drain(..end + 2).collect();
                let field = |name: &str| message.lines().find_map(|l| l.strip_prefix(name)).map(str::to_owned);
                if let (Some(stage), Some(data)) = (field("event: "), field("data: ")) {
                    let data: Value = serde_json::from_str(&data).unwrap();
                    assert_eq!(data["job"], "echo", "{data}");
                    if stage == "ended" {
                        ended += 1;
                        if ended == 1 {
                            // Then a delayed run, cancelled before it starts: it ends too.
                            let delayed = trigger("echo?in=1h").await.body["id"].as_i64().unwrap();
                            let path = format!("/api/v1/runs/{delayed}/cancel");
                            let (http, base, token) = (&api.http, &api.base, &api.admin);
                            send(http, base, Method::POST, &path, Some(token), Vec::new(), &[]).await.unwrap();
                        }
                    }
                    events.push((stage, data));
                }
            }
        }
        assert!(events[..3].iter().all(|(_, data)| data["run_id"] == id), "{events:?}");
        events
    });
    let names: Vec<&str> = stages.iter().map(|(stage, _)| stage.as_str()).collect();
    assert_eq!(names, ["recorded", "started", "ended", "recorded", "ended"]);
    assert_eq!(stages[2].1["status"], "succeeded");
    assert_eq!(stages[4].1["status"], "cancelled");
    host.stop();
}

/// A body sent without a length is read up to the cap and no further.
#[test]
fn a_chunked_payload_past_the_cap_is_refused_without_reading_it_all() {
    use std::io::{Read, Write};
    let sandbox = Sandbox::new();
    sandbox.declare("small", "[limits]\npayload = \"16B\"\n");
    std::fs::write(sandbox.jobs().join("small.wat"), ECHO).unwrap();
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    let mut socket = std::net::TcpStream::connect(&host.listen).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        socket,
        "POST /api/v1/jobs/small/trigger HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        api.admin
    )
    .unwrap();
    // Three chunks of 8 bytes: the third crosses the cap. Nothing ends the body.
    for _ in 0..3 {
        socket.write_all(b"8\r\nxxxxxxxx\r\n").unwrap();
    }
    let mut answer = [0u8; 512];
    let read = socket.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    assert!(all_runs(&sandbox).is_empty());
    host.stop();
}

#[test]
fn a_draining_host_is_not_ready_and_refuses_triggers() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("slow.wat"), versioned("slow", 30_000)).unwrap();
    let host = Host::start(&sandbox, &["--grace", "3s"]);
    let api = Api::ready(&sandbox, &host);
    let id = api.post("/api/v1/jobs/slow/trigger", b"").body["id"].as_i64().unwrap();
    api.wait_status(id, |s| s == "running", Duration::from_secs(20));
    host.signal(libc::SIGTERM);
    wait_for("readyz to say not ready", Duration::from_secs(5), || {
        api.call(Method::GET, "/readyz", None, Vec::new(), &[])
            .is_ok_and(|a| a.status == StatusCode::SERVICE_UNAVAILABLE)
    });
    let answer = api.call(Method::GET, "/readyz", None, Vec::new(), &[]).unwrap();
    assert_error(&answer, StatusCode::SERVICE_UNAVAILABLE, "not_ready");
    let answer = api.post("/api/v1/jobs/slow/trigger", b"");
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.body);
    assert!(answer.headers.contains_key("retry-after"));
    // Alive all the same, until it exits.
    assert_eq!(api.call(Method::GET, "/healthz", None, Vec::new(), &[]).unwrap().status, StatusCode::OK);
    let (code, log) = host.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(run_of(&sandbox, id).status, RunStatus::Cancelled);
}

#[test]
fn a_supplied_token_replaces_the_written_one() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("echo.wat"), ECHO).unwrap();
    let token_file = sandbox.path("admin-token");
    std::fs::write(&token_file, "operator-chosen-token-0123456789\n").unwrap();
    let file = token_file.to_str().unwrap();
    let host = Host::start(&sandbox, &["--token-file", file]);
    let api = Api::ready_with(&sandbox, &host, Some("operator-chosen-token-0123456789"));
    assert!(!sandbox.state().join("token").exists(), "a supplied admin token is not written down");
    let answer =
        api.call(Method::GET, "/api/v1/jobs", Some("operator-chosen-token-0123456789"), Vec::new(), &[]).unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // The CLI finds it the same way, or in WASMCRON_TOKEN.
    let out = sandbox.wasmcron(&["trigger", "echo", "--listen", &host.listen, "--token-file", file]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = sandbox
        .wasmcron(&["trigger", "echo", "--listen", &host.listen])
        .env("WASMCRON_TOKEN", "operator-chosen-token-0123456789")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out =
        sandbox.wasmcron(&["trigger", "echo", "--listen", &host.listen]).env("WASMCRON_TOKEN", "x").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(text(&out.stderr).contains("WASMCRON_TOKEN: the token is 1 characters"), "{}", describe(&out));
    host.stop();
}

/// The dashboard's session: the login form sets an `HttpOnly`,
/// `SameSite=Strict` cookie that the API takes in place of the bearer
/// token, with the same rights; a change another site's page asks with it
/// is refused; logging out clears it.
#[test]
fn a_login_cookie_stands_for_its_token_and_other_sites_cannot_use_it() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("echo.wat"), ECHO).unwrap();
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let call = |method: Method, path: &str, body: Vec<u8>, headers: &[(&str, &str)]| {
        api.runtime.block_on(send(&browser, &api.base, method, path, None, body, headers)).unwrap()
    };
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let login = |token: &str, extra: &[(&str, &str)]| {
        let body = format!("token={}", token).into_bytes();
        call(Method::POST, "/login", body, &[&form[..], extra].concat())
    };
    let location = |answer: &Answer| answer.headers["location"].to_str().unwrap().to_owned();
    let set_cookie = |answer: &Answer| answer.headers.get("set-cookie").map(|v| v.to_str().unwrap().to_owned());

    let wrong = login("not-this-hosts-token-0123", &[]);
    assert_eq!((wrong.status, location(&wrong)), (StatusCode::SEE_OTHER, "/login?error=invalid".into()));
    assert_eq!(set_cookie(&wrong), None);
    let cross = login(&api.admin, &[("sec-fetch-site", "cross-site")]);
    assert_error(&cross, StatusCode::FORBIDDEN, "cross_site");

    let answer = login(&api.admin, &[("sec-fetch-site", "same-origin")]);
    assert_eq!((answer.status, location(&answer)), (StatusCode::SEE_OTHER, "/".into()));
    let cookie = set_cookie(&answer).expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.split("; ").any(|a| a == attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "no Secure without TLS in front: {cookie}");
    let admin = cookie.split(';').next().unwrap().to_owned();
    assert!(admin.starts_with("wasmcron_session="), "{admin}");
    let proxied = login(&api.admin, &[("x-forwarded-proto", "https")]);
    assert!(set_cookie(&proxied).unwrap().contains("; Secure"), "Secure behind a TLS proxy");

    fn with<'a>(cookie: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        [&[("cookie", cookie)][..], extra].concat()
    }
    let session = call(Method::GET, "/api/v1/session", Vec::new(), &with(&admin, &[]));
    assert_eq!(session.body, serde_json::json!({ "access": "admin" }));
    let jobs = call(Method::GET, "/api/v1/jobs", Vec::new(), &with(&admin, &[("sec-fetch-site", "cross-site")]));
    assert_eq!(jobs.status, StatusCode::OK, "reads are not changes: {}", jobs.body);

    let trigger = |cookie: &str, extra: &[(&str, &str)]| {
        call(Method::POST, "/api/v1/jobs/echo/trigger?in=1h", Vec::new(), &with(cookie, extra))
    };
    let before = all_runs(&sandbox).len();
    assert_error(&trigger(&admin, &[("sec-fetch-site", "cross-site")]), StatusCode::FORBIDDEN, "cross_site");
    assert_error(&trigger(&admin, &[("sec-fetch-site", "same-site")]), StatusCode::FORBIDDEN, "cross_site");
    assert_error(&trigger(&admin, &[("origin", "http://evil.example")]), StatusCode::FORBIDDEN, "cross_site");
    assert_error(&trigger(&admin, &[("origin", "null")]), StatusCode::FORBIDDEN, "cross_site");
    assert_eq!(all_runs(&sandbox).len(), before, "a refused trigger records nothing");
    assert_eq!(trigger(&admin, &[("sec-fetch-site", "same-origin")]).status, StatusCode::ACCEPTED);
    let own_origin = format!("http://{}", host.listen);
    assert_eq!(trigger(&admin, &[("origin", &own_origin)]).status, StatusCode::ACCEPTED);
    // The bearer token is no ambient credential: no check for it.
    let bearer = api.call(
        Method::POST,
        "/api/v1/jobs/echo/trigger?in=1h",
        Some(&api.admin),
        Vec::new(),
        &[("sec-fetch-site", "cross-site")],
    );
    assert_eq!(bearer.unwrap().status, StatusCode::ACCEPTED);

    // The read-only token's cookie reads, and may change nothing.
    let read = set_cookie(&login(&api.read, &[])).unwrap().split(';').next().unwrap().to_owned();
    let session = call(Method::GET, "/api/v1/session", Vec::new(), &with(&read, &[]));
    assert_eq!(session.body, serde_json::json!({ "access": "read" }));
    assert_error(&trigger(&read, &[("sec-fetch-site", "same-origin")]), StatusCode::FORBIDDEN, "forbidden");

    let stale = call(Method::GET, "/api/v1/jobs", Vec::new(), &with("wasmcron_session=not-this-hosts-token-0123", &[]));
    assert_error(&stale, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(stale.body["error"]["message"].as_str().unwrap().contains("/login"), "{}", stale.body);

    let out = call(Method::POST, "/logout", Vec::new(), &with(&admin, &[]));
    assert_eq!((out.status, location(&out)), (StatusCode::SEE_OTHER, "/login".into()));
    let cleared = set_cookie(&out).unwrap();
    assert!(cleared.starts_with("wasmcron_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    host.stop();
}
