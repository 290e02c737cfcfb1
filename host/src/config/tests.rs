//! Unit tests for declarations: the full example of DESIGN.md, defaults,
//! and folder loading. Error wording is tested against the corpus in
//! `tests/declarations/` by the integration tests.

use super::*;
use std::time::Duration;

const FULL: &str = r#"
module   = "report.wasm"
schedule = "0 30 2 * * Mon-Fri"
timezone = "Europe/London"
jitter   = "30s"
args     = ["--since", "1d"]
env      = { LEVEL = "info" }
overlap  = "queue"
catch_up = "all"
catch_up_window = "2h"
enabled  = false

[limits]
timeout = "2m"
fuel    = 10_000_000_000
memory  = "64MiB"
output  = "4KiB"
payload = "8KiB"

[retry]
attempts    = 3
backoff     = "10s"
max_backoff = "10m"

[[dirs]]
host  = "data"
guest = "/reports"
mode  = "rw"
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn full_example_is_validated_into_a_spec() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let job = load_file(&write(dir.path(), "report.toml", FULL)).unwrap();
    assert_eq!(job.name, "report");
    assert_eq!(job.module, dir.path().join("report.wasm"));
    assert_eq!(job.schedule.as_ref().unwrap().text(), "0 30 2 * * Mon-Fri");
    assert_eq!(job.timezone, chrono_tz::Europe::London);
    assert_eq!(job.jitter, Duration::from_secs(30));
    assert_eq!(job.args, ["--since", "1d"]);
    assert_eq!(job.env, [("LEVEL".to_owned(), "info".to_owned())]);
    assert_eq!(job.overlap, Overlap::Queue);
    assert_eq!(job.catch_up, CatchUp::All);
    assert_eq!(job.catch_up_window, Duration::from_secs(7200));
    assert!(!job.enabled);
    assert_eq!(
        job.limits,
        Limits {
            timeout: Duration::from_secs(120),
            fuel: Some(10_000_000_000),
            memory: 64 << 20,
            output: 4096,
            payload: 8192
        }
    );
    assert_eq!(
        job.retry,
        Retry { attempts: 3, backoff: Duration::from_secs(10), max_backoff: Duration::from_secs(600) }
    );
    assert_eq!(
        job.dirs,
        [DirGrant { host: dir.path().join("data"), guest: "/reports".into(), mode: DirMode::ReadWrite }]
    );
}

#[test]
fn empty_declaration_gets_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let job = load_file(&write(dir.path(), "tidy.toml", "")).unwrap();
    let bare = JobSpec::for_bare_module("tidy".into(), dir.path().join("tidy.wasm"));
    assert_eq!(job.module, bare.module);
    assert!(job.schedule.is_none());
    assert_eq!(job.timezone, chrono_tz::UTC);
    assert_eq!(job.overlap, Overlap::Skip);
    assert_eq!(job.catch_up, CatchUp::Once);
    assert_eq!(job.catch_up_window, Duration::from_secs(24 * 3600));
    assert!(job.enabled);
    assert_eq!(
        job.limits,
        Limits { timeout: Duration::from_secs(300), fuel: None, memory: 256 << 20, output: 1 << 20, payload: 1 << 20 }
    );
    assert_eq!(job.retry.attempts, 1);
    assert!(job.dirs.is_empty());
}

#[test]
fn default_module_falls_back_to_wat() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hello.wat", "(module)");
    let job = load_file(&write(dir.path(), "hello.toml", "")).unwrap();
    assert_eq!(job.module, dir.path().join("hello.wat"));
}

#[test]
fn folder_keeps_good_jobs_beside_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.toml", "schedule = \"@hourly\"");
    write(dir.path(), "bad.toml", "schedule = \"61 * * * *\"");
    write(dir.path(), "bare.wat", "(module)");
    write(dir.path(), "good.wasm", "");
    write(dir.path(), "notes.txt", "ignored");
    let loaded = load_dir(dir.path()).unwrap();
    let names: Vec<&str> = loaded.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["bare", "good"]);
    assert_eq!(loaded.errors.len(), 1);
    assert!(
        loaded.errors[0].to_string().ends_with("bad.toml: schedule \"61 * * * *\": minute 61 is out of range 0-59")
    );
    let bare = &loaded.jobs[0];
    assert!(bare.schedule.is_none() && bare.module.ends_with("bare.wat"));
}

#[test]
fn names_follow_the_pattern() {
    for good in ["a", "report", "db-vacuum_2", &"x".repeat(63)] {
        assert!(validate_name(good).is_ok(), "{good}");
    }
    for bad in ["", "Report", "-x", "_x", "a.b", "a b", &"x".repeat(64)] {
        assert!(validate_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_job_name_is_the_file_stem() {
    assert_eq!(job_name(Path::new("jobs.d/report.toml")), "report");
    assert_eq!(job_name(Path::new("/srv/jobs.d/db-vacuum.wasm")), "db-vacuum");
    assert_eq!(job_name(Path::new("tidy")), "tidy");
    assert_eq!(job_name(Path::new("/")), "");
}

#[test]
fn errors_name_the_file_the_job_and_the_field() {
    use std::error::Error as _;

    let dir = tempfile::tempdir().unwrap();
    let error = load_file(&write(dir.path(), "nightly.toml", "schedule = \"61 * * * *\"")).unwrap_err();
    assert_eq!((error.job(), error.field()), ("nightly", Some("schedule")));
    assert_eq!(error.file(), dir.path().join("nightly.toml"));
    let source = error.source().and_then(|s| s.downcast_ref::<crate::schedule::ScheduleError>());
    assert_eq!(source.map(|s| s.to_string()).as_deref(), Some("minute 61 is out of range 0-59"));
    let ConfigError::Schedule { value, .. } = &error else { panic!("{error:?}") };
    assert_eq!(value, "\"61 * * * *\"", "the value as written, quoted");

    let error = load_file(&write(dir.path(), "metered.toml", "[limits]\nfuel = -5")).unwrap_err();
    assert_eq!((error.job(), error.field()), ("metered", Some("limits.fuel")));
    assert!(matches!(&error, ConfigError::Invalid { value, .. } if value == "-5"), "a number is shown bare");
    assert!(error.source().is_none());

    let error = load_file(&write(dir.path(), "typo.toml", "\nschedual = \"@daily\"")).unwrap_err();
    assert_eq!((error.job(), error.field()), ("typo", None));
    assert!(matches!(error, ConfigError::Toml { line: Some(2), .. }), "{error:?}");
    assert!(error.source().is_some_and(|s| s.is::<Box<toml::de::Error>>()));

    let error = load_file(&dir.path().join("absent.toml")).unwrap_err();
    assert!(error.source().is_some_and(|s| s.is::<std::io::Error>()));
    assert_eq!(error.to_string(), format!("{}: cannot be read: {}", error.file().display(), error.source().unwrap()));
}

#[test]
fn specs_are_equal_until_a_field_changes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let file = write(dir.path(), "report.toml", FULL);
    let spec = load_file(&file).unwrap();
    assert_eq!(load_file(&file).unwrap(), spec, "the same file gives an equal spec");

    for (from, to) in [
        ("jitter   = \"30s\"", "jitter   = \"31s\""),
        ("0 30 2 * * Mon-Fri", "0 31 2 * * Mon-Fri"),
        ("Europe/London", "Europe/Paris"),
        ("fuel    = 10_000_000_000", "fuel    = 10_000_000_001"),
        ("mode  = \"rw\"", "mode  = \"ro\""),
        ("\"--since\"", "\"--until\""),
    ] {
        assert!(FULL.contains(from), "{from}");
        let changed = load_file(&write(dir.path(), "report.toml", &FULL.replace(from, to))).unwrap();
        assert_ne!(changed, spec, "{from} → {to}");
    }
}

#[test]
fn schedules_are_equal_by_text_and_zone() {
    use crate::schedule::Schedule;
    let parse = |text: &str, zone| Schedule::parse(text, zone).unwrap();
    assert_eq!(parse("*/15 * * * *", chrono_tz::UTC), parse(" */15 * * * * ", chrono_tz::UTC));
    assert_ne!(parse("*/15 * * * *", chrono_tz::UTC), parse("*/15 * * * *", chrono_tz::Europe::London));
    assert_ne!(parse("*/15 * * * *", chrono_tz::UTC), parse("*/20 * * * *", chrono_tz::UTC));
    assert_eq!(parse("@every 90s", chrono_tz::UTC), parse("@every 90s", chrono_tz::UTC));
}

#[test]
fn secrets_are_validated_into_their_sources_and_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let job = load_file(&write(
        dir.path(),
        "alert.toml",
        r#"
env = { LEVEL = "info" }
[secrets]
SLACK_WEBHOOK = "credential:slack-webhook"
PGPASSWORD    = "file:/run/secrets/pg_password"
API_TOKEN     = "env:HOST_API_TOKEN"
DB_CERT       = { from = "file:certs/db.pem", as = "file" }
_lower_ok     = { from = "env:X" }
"#,
    ))
    .unwrap();
    let secret = |name: &str, source, delivery| SecretSpec { name: name.into(), source, delivery };
    assert_eq!(
        job.secrets,
        [
            secret("API_TOKEN", SecretSource::Env("HOST_API_TOKEN".into()), Delivery::Env),
            secret("DB_CERT", SecretSource::File(dir.path().join("certs/db.pem")), Delivery::File),
            secret("PGPASSWORD", SecretSource::File("/run/secrets/pg_password".into()), Delivery::Env),
            secret("SLACK_WEBHOOK", SecretSource::Credential("slack-webhook".into()), Delivery::Env),
            secret("_lower_ok", SecretSource::Env("X".into()), Delivery::Env),
        ],
        "sorted by name; relative files resolved against the declaration's folder"
    );
    assert!(load_file(&write(dir.path(), "none.toml", "")).unwrap().secrets.is_empty());
}

#[test]
fn each_bad_secret_is_refused_naming_its_field_value_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    for (toml, field, value, reason) in [
        ("[secrets]\n\"1TOKEN\" = \"env:X\"", "secrets.1TOKEN", "\"1TOKEN\"", "is not a variable name"),
        ("[secrets]\n\"API-TOKEN\" = \"env:X\"", "secrets.API-TOKEN", "\"API-TOKEN\"", "is not a variable name"),
        ("[secrets]\nWASMCRON_TOKEN = \"env:X\"", "secrets.WASMCRON_TOKEN", "\"WASMCRON_TOKEN\"", "set by the host"),
        ("env = { TOKEN = \"x\" }\n[secrets]\nTOKEN = \"env:X\"", "secrets.TOKEN", "\"TOKEN\"", "also a key of `env`"),
        ("[secrets]\nTOKEN = \"vault:x\"", "secrets.TOKEN", "\"vault:x\"", "must start with \"credential:\""),
        ("[secrets]\nTOKEN = \"hunter2\"", "secrets.TOKEN", "\"hunter2\"", "must start with \"credential:\""),
        ("[secrets]\nTOKEN = \"credential:../token\"", "secrets.TOKEN", "\"credential:../token\"", "plain file name"),
        ("[secrets]\nTOKEN = \"credential:a/b\"", "secrets.TOKEN", "\"credential:a/b\"", "plain file name"),
        ("[secrets]\nTOKEN = \"credential:..\"", "secrets.TOKEN", "\"credential:..\"", "plain file name"),
        ("[secrets]\nTOKEN = \"credential:\"", "secrets.TOKEN", "\"credential:\"", "plain file name"),
        ("[secrets]\nTOKEN = \"file:\"", "secrets.TOKEN", "\"file:\"", "needs a path"),
        ("[secrets]\nTOKEN = \"env:HOST-VAR\"", "secrets.TOKEN", "\"env:HOST-VAR\"", "not a variable name"),
        ("[secrets]\nTOKEN = \"env:\"", "secrets.TOKEN", "\"env:\"", "not a variable name"),
        ("[secrets]\nTOKEN = { from = \"env:X\", as = \"stdin\" }", "secrets.TOKEN.as", "\"stdin\"", "must be \"env\""),
        (
            "[[dirs]]\nhost = \"data\"\nguest = \"/run\"\n[secrets]\nCERT = { from = \"file:c.pem\", as = \"file\" }",
            "dirs[0].guest",
            "\"/run\"",
            "overlaps /run/secrets",
        ),
        (
            "[[dirs]]\nhost = \"data\"\nguest = \"/run/secrets/x\"\n[secrets]\nCERT = { from = \"file:c.pem\", as = \"file\" }",
            "dirs[0].guest",
            "\"/run/secrets/x\"",
            "overlaps /run/secrets",
        ),
    ] {
        let error = load_file(&write(dir.path(), "job.toml", toml)).expect_err(toml);
        assert_eq!(error.field(), Some(field), "{toml}: {error}");
        let ConfigError::Invalid { value: shown, reason: why, .. } = &error else { panic!("{error:?}") };
        assert_eq!(shown, value, "{toml}");
        assert!(why.contains(reason), "{toml}: {error}");
        assert!(error.to_string().starts_with(&format!("{}: {field} {value}: ", error.file().display())));
    }
    // A grant elsewhere is fine beside file secrets; /run/secrets is free without them.
    let fine = "[[dirs]]\nhost = \"data\"\nguest = \"/run/secrets\"\n[secrets]\nT = \"env:X\"";
    assert!(load_file(&write(dir.path(), "job.toml", fine)).is_ok());

    for (toml, says) in [
        ("[secrets]\nTOKEN = 5", "a source string"),
        ("[secrets]\nTOKEN = { from = \"env:X\", mode = \"file\" }", "a source string"),
        ("secrets = [\"env:X\"]", "invalid type"),
    ] {
        let error = load_file(&write(dir.path(), "job.toml", toml)).expect_err(toml);
        assert!(matches!(error, ConfigError::Toml { .. }) && error.to_string().contains(says), "{toml}: {error}");
    }
}
