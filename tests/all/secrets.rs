//! `[secrets]` end to end, with the probe guest built for wasip1 and as a
//! wasip2 component: the guest gets its secrets (variables and files under
//! `/run/secrets`), what it prints of them is redacted everywhere the run is
//! recorded or shown — `wasmcron logs`, the API, the SQLite files, the
//! host's log, `once`'s echo — a rotated value is seen by the next run of a
//! host that keeps running, and a missing one fails the run before the
//! guest starts, saying where it was looked for.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::api::Api;
use crate::daemon::Host;
use crate::support::{Sandbox, describe, guests, text, toml_path};

const WEBHOOK: &str = "https://hooks.example.com/T000/B000/XXXXsecretXXXX";
const TOKEN: &str = "tok-5d41402abc4b2a76b9719d911017c592";
const PASSWORD: &str = "correct horse battery staple";
const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ\n-----END CERTIFICATE-----";

/// The four values, for asserting each is absent.
const VALUES: [&str; 4] = [WEBHOOK, TOKEN, PASSWORD, CERT];

/// Writes the sandbox's secret sources: a credential in the state folder
/// (with the newline `echo` adds), a password file beside the declarations
/// and a certificate in a folder of its own. The token comes from the host
/// environment (`HOST_API_TOKEN`) of each command.
fn provide(sandbox: &Sandbox) {
    let credentials = sandbox.state().join("credentials");
    std::fs::create_dir_all(&credentials).unwrap();
    std::fs::write(credentials.join("slack-webhook"), format!("{WEBHOOK}\n")).unwrap();
    std::fs::write(credentials.join("pin"), "123\n").unwrap();
    std::fs::write(sandbox.jobs().join("pg_password"), format!("{PASSWORD}\n")).unwrap();
    std::fs::create_dir_all(sandbox.path("certs")).unwrap();
    std::fs::write(sandbox.path("certs/db.pem"), format!("{CERT}\n")).unwrap();
}

/// A declaration of the probe `module` doing `args`, with every kind of secret.
fn declaration(module: &Path, args: &[&str]) -> String {
    format!(
        r#"module = {}
args = {args:?}
[secrets]
SLACK_WEBHOOK = "credential:slack-webhook"
PIN           = "credential:pin"
PGPASSWORD    = "file:pg_password"
API_TOKEN     = "env:HOST_API_TOKEN"
DB_CERT       = {{ from = "file:../certs/db.pem", as = "file" }}
"#,
        toml_path(module)
    )
}

fn assert_absent(what: &str, haystack: &[u8]) {
    for value in VALUES {
        let found = haystack.windows(value.len()).any(|w| w == value.as_bytes());
        assert!(!found, "{value:?} is in {what}:\n{}", text(haystack));
    }
}

#[test]
fn the_guest_gets_its_secrets_and_what_it_prints_of_them_is_redacted() {
    let sandbox = Sandbox::new();
    provide(&sandbox);
    // Secret files go to a private folder under TMPDIR, removed after the run.
    let tmp = sandbox.path("tmp");
    std::fs::create_dir(&tmp).unwrap();
    for (kind, module) in [("p1", &guests().probe_p1), ("p2", &guests().probe_p2)] {
        let jobs = [
            ("env", vec!["env"]),
            ("split", vec!["split", "API_TOKEN"]),
            ("read", vec!["read", "/run/secrets/DB_CERT"]),
            ("list", vec!["list", "/run/secrets"]),
            ("write", vec!["write", "/run/secrets/DB_CERT", "overwritten"]),
        ];
        for (job, args) in &jobs {
            sandbox.declare(&format!("{job}_{kind}"), &declaration(module, args));
        }
        let once = |job: &str| {
            let job = format!("{job}_{kind}");
            let output = sandbox
                .wasmcron(&["once", &job, "--json"])
                .env("HOST_API_TOKEN", TOKEN)
                .env("TMPDIR", &tmp)
                .env_remove("CREDENTIALS_DIRECTORY")
                .output()
                .unwrap();
            let record: Value =
                serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&output)));
            assert_absent(&format!("{job}'s record"), &output.stdout);
            assert_absent(&format!("{job}'s stderr"), &output.stderr);
            record
        };

        let record = once("env");
        assert_eq!(record["status"], "succeeded", "{record}");
        let stdout = record["stdout"].as_str().unwrap();
        let vars: Vec<&str> = stdout.lines().skip(2).filter(|l| !l.starts_with("WASMCRON_")).collect();
        assert_eq!(
            vars,
            [
                "API_TOKEN=[REDACTED:API_TOKEN]",
                "PGPASSWORD=[REDACTED:PGPASSWORD]",
                // Shorter than 4 bytes: not redacted, so it shows the
                // guest the value, its trailing newline stripped.
                "PIN=123",
                "SLACK_WEBHOOK=[REDACTED:SLACK_WEBHOOK]",
            ],
            "{kind}: each value exactly (nothing after the marker), the file secret as no variable"
        );

        // Written in two halves, flushed apart: still caught.
        let record = once("split");
        assert_eq!(record["stdout"], "[REDACTED:API_TOKEN]\n", "{kind}: {record}");

        let record = once("read");
        assert_eq!(record["status"], "succeeded", "{record}");
        assert_eq!(record["stdout"], "[REDACTED:DB_CERT]", "{kind}: the file holds the value, newline stripped");
        assert_eq!(once("list")["stdout"], "DB_CERT\n", "{kind}: only the file secrets are under /run/secrets");
        let record = once("write");
        assert_eq!(record["status"], "failed", "{kind}: /run/secrets is read-only: {record}");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "{kind}: the secrets folder is gone after the run");
    }
    assert_eq!(std::fs::read(sandbox.path("certs/db.pem")).unwrap(), format!("{CERT}\n").as_bytes());

    // `once` without --json echoes the guest's output: redacted as well.
    let output = sandbox.wasmcron(&["once", "split_p1"]).env("HOST_API_TOKEN", TOKEN).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(text(&output.stdout), "[REDACTED:API_TOKEN]\n");
}

#[test]
fn a_printed_secret_is_absent_from_logs_the_api_and_the_database() {
    let sandbox = Sandbox::new();
    provide(&sandbox);
    // The webhook as a systemd credential: $CREDENTIALS_DIRECTORY is looked in first.
    let systemd = sandbox.path("systemd-credentials");
    std::fs::create_dir(&systemd).unwrap();
    std::fs::write(systemd.join("slack-webhook"), WEBHOOK).unwrap();
    std::fs::write(sandbox.state().join("credentials/slack-webhook"), "not-the-one-used").unwrap();
    sandbox.declare("env", &declaration(&guests().probe_p2, &["env"]));
    sandbox.declare("split", &declaration(&guests().probe_p1, &["split", "SLACK_WEBHOOK"]));
    sandbox.declare("cert", &declaration(&guests().probe_p1, &["read", "/run/secrets/DB_CERT"]));
    let host = Host::start_with(&sandbox, &[], |mut command, _| {
        command.env("HOST_API_TOKEN", TOKEN).env("CREDENTIALS_DIRECTORY", &systemd);
        command
    });
    let api = Api::ready(&sandbox, &host);
    let mut ids = Vec::new();
    for job in ["env", "split", "cert"] {
        let answer = api.post(&format!("/api/v1/jobs/{job}/trigger"), b"");
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
        let id = answer.body["id"].as_i64().unwrap();
        let run = api.wait_status(id, |s| s != "pending" && s != "running", Duration::from_secs(30));
        assert_eq!(run["status"], "succeeded", "{run}");
        ids.push(id);
    }

    let [env, split, cert] = ids[..] else { unreachable!() };
    for id in [env, split, cert] {
        let record = api.get(&format!("/api/v1/runs/{id}"));
        assert_absent(&format!("GET /api/v1/runs/{id}"), record.text.as_bytes());
        let output = api.get(&format!("/api/v1/runs/{id}/output"));
        assert_absent(&format!("GET /api/v1/runs/{id}/output"), output.text.as_bytes());
        let logs = sandbox.wasmcron(&["logs", &id.to_string()]).output().unwrap();
        assert_eq!(logs.status.code(), Some(0), "{}", describe(&logs));
        assert_absent(&format!("wasmcron logs {id}"), &logs.stdout);
    }
    let output = |id: i64| api.get(&format!("/api/v1/runs/{id}/output")).body;
    let stdout = output(env)["stdout"].as_str().unwrap().to_owned();
    assert!(stdout.contains("\nSLACK_WEBHOOK=[REDACTED:SLACK_WEBHOOK]\n"), "{stdout}");
    assert!(stdout.contains("\nAPI_TOKEN=[REDACTED:API_TOKEN]\n"), "{stdout}");
    assert_eq!(output(split)["stdout"], "[REDACTED:SLACK_WEBHOOK]\n", "the systemd credential was the one used");
    assert_eq!(output(cert)["stdout"], "[REDACTED:DB_CERT]");
    let logs = sandbox.wasmcron(&["logs", &env.to_string()]).output().unwrap();
    assert!(text(&logs.stdout).contains("PGPASSWORD=[REDACTED:PGPASSWORD]"), "{}", describe(&logs));

    // The database, read as bytes while the host still holds it open (the
    // WAL has the newest pages) and again after it stopped.
    let files = ["wasmcron.db", "wasmcron.db-wal", "wasmcron.db-shm"].map(|f| sandbox.state().join(f));
    let read_all = || -> Vec<u8> { files.iter().flat_map(|f| std::fs::read(f).unwrap_or_default()).collect() };
    let open = read_all();
    assert!(open.windows(9).any(|w| w == b"[REDACTED"), "the check reads the database where the output is");
    assert_absent("the database files of a running host", &open);
    let log = host.stop();
    assert_absent("the host's log", log.as_bytes());
    assert_absent("the database files", &read_all());
}

#[test]
fn a_rotated_secret_is_seen_by_the_next_run_without_a_restart() {
    let sandbox = Sandbox::new();
    let credentials = sandbox.state().join("credentials");
    std::fs::create_dir_all(&credentials).unwrap();
    let module = toml_path(&guests().probe_p1);
    // A short value shows the guest what it got; the long one shows what
    // the host redacts: the value current at the run's start.
    let secrets = "[secrets]\nSHORT = \"credential:short\"\nLONG = \"credential:long\"";
    sandbox.declare("seen", &format!("module = {module}\nargs = [\"env\"]\n{secrets}"));
    sandbox.declare("redacted", &format!("module = {module}\nargs = [\"stdin\"]\n{secrets}"));
    let host = Host::start(&sandbox, &[]);
    let api = Api::ready(&sandbox, &host);
    let run = |job: &str, payload: &[u8]| -> Value {
        let answer = api.post(&format!("/api/v1/jobs/{job}/trigger"), payload);
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
        let id = answer.body["id"].as_i64().unwrap();
        api.wait_status(id, |s| s == "succeeded", Duration::from_secs(30));
        api.get(&format!("/api/v1/runs/{id}/output")).body
    };
    let payload = b"old=first-long-value new=second-long-value";
    for (short, long, seen, redacted) in [
        ("v1", "first-long-value", "SHORT=v1", "old=[REDACTED:LONG] new=second-long-value"),
        ("v2", "second-long-value", "SHORT=v2", "old=first-long-value new=[REDACTED:LONG]"),
    ] {
        std::fs::write(credentials.join("short"), format!("{short}\n")).unwrap();
        std::fs::write(credentials.join("long"), format!("{long}\n")).unwrap();
        let env = run("seen", b"");
        let stdout = env["stdout"].as_str().unwrap();
        assert!(stdout.lines().any(|l| l == seen), "{seen} in {stdout}");
        assert!(stdout.lines().any(|l| l == "LONG=[REDACTED:LONG]"), "{stdout}");
        assert_eq!(run("redacted", payload)["stdout"], redacted);
    }
    host.stop();
}

#[test]
fn a_missing_secret_fails_the_run_before_the_guest_starts() {
    let sandbox = Sandbox::new();
    let systemd = sandbox.path("creds");
    std::fs::create_dir(&systemd).unwrap();
    let module = toml_path(&guests().probe_p1);
    sandbox.declare(
        "a",
        &format!("module = {module}\nargs = [\"env\"]\n[secrets]\nSLACK_WEBHOOK = \"credential:slack-webhook\""),
    );
    let output = sandbox.wasmcron(&["once", "a", "--json"]).env("CREDENTIALS_DIRECTORY", &systemd).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let record: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["status"], "failed");
    assert_eq!(
        record["error"].as_str().unwrap(),
        format!(
            "secret SLACK_WEBHOOK: credential \"slack-webhook\" not found in $CREDENTIALS_DIRECTORY ({}) or {}; create the file, or fix [secrets] SLACK_WEBHOOK in {}",
            systemd.display(),
            sandbox.state().join("credentials").display(),
            sandbox.jobs().join("a.toml").display()
        )
    );
    assert_eq!(record["stdout"], "", "the guest never ran");

    sandbox
        .declare("b", &format!("module = {module}\nargs = [\"env\"]\n[secrets]\nTOKEN = \"env:HOST_TOKEN_NOT_SET\""));
    let output = sandbox.wasmcron(&["once", "b", "--json"]).env_remove("HOST_TOKEN_NOT_SET").output().unwrap();
    let record: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["status"], "failed");
    let error = record["error"].as_str().unwrap();
    assert!(
        error.starts_with("secret TOKEN: the host's environment variable HOST_TOKEN_NOT_SET is not set"),
        "{error}"
    );

    // `check` reads no secret: the declarations are valid as they stand.
    let output = sandbox.wasmcron(&["check"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn a_job_world_guest_has_its_error_and_log_lines_redacted() {
    let sandbox = Sandbox::new();
    let tidy = toml_path(&guests().tidy);
    // tidy quotes a bad BATCH in its error, and logs the FOLLOW_UP job it enqueues.
    sandbox.declare("bad", &format!("module = {tidy}\n[secrets]\nBATCH = \"env:HOST_BATCH\""));
    let output = sandbox.wasmcron(&["once", "bad", "--json"]).env("HOST_BATCH", "batch-of-secrets").output().unwrap();
    let record: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&output)));
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"], "BATCH=\"[REDACTED:BATCH]\" is not a whole number", "the guest's own error");

    std::fs::copy(crate::support::fixture("hello.wat"), sandbox.jobs().join("follow-up-target.wat")).unwrap();
    sandbox.declare(
        "done",
        &format!("module = {tidy}\nenv = {{ BACKLOG = \"5\" }}\n[secrets]\nFOLLOW_UP = \"env:HOST_FOLLOW_UP\""),
    );
    let output = sandbox
        .wasmcron(&["once", "done", "--json"])
        .env("HOST_FOLLOW_UP", "follow-up-target")
        .env("WASMCRON_LOG", "info")
        .output()
        .unwrap();
    let record: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&output)));
    assert_eq!(record["status"], "succeeded", "{record}");
    let stderr = record["stderr"].as_str().unwrap();
    assert!(stderr.contains("[info] backlog done; follow-up enqueued job=\"[REDACTED:FOLLOW_UP]\""), "{stderr}");
    let host_log = text(&output.stderr);
    assert!(host_log.contains("backlog done") && !host_log.contains("follow-up-target"), "{host_log}");
}
