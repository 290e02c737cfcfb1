//! `wasmcron backup FILE`: an online copy of the SQLite store, taken with
//! the real binary while a real host writes runs, then opened and checked
//! with SQLite and the CLI; and what it refuses.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use wasmcron::record::{RunStatus, Trigger};
use wasmcron::store::NewRun;

use crate::daemon::Host;
use crate::support::{Sandbox, describe, text, wait_for, with_store};

fn run_ids(database: &Path) -> BTreeSet<i64> {
    let connection = rusqlite::Connection::open(database).unwrap();
    let mut statement = connection.prepare("SELECT id FROM runs").unwrap();
    statement.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
}

/// Old history, so that the copy takes several steps: 3,000 runs with 3 KiB
/// of payload each, about 9 MiB.
fn fill_history(sandbox: &Sandbox) {
    with_store(sandbox, async |store| {
        for _ in 0..6 {
            let now = Utc::now();
            let old = NewRun {
                status: RunStatus::Succeeded,
                started_at: Some(now),
                ended_at: Some(now),
                payload: vec![b'x'; 3 * 1024],
                ..NewRun::pending("history", Trigger::Manual, now)
            };
            store.insert_runs(vec![old; 500]).await.unwrap();
        }
    });
}

#[test]
fn a_backup_taken_while_runs_are_written_holds_every_run_committed_before_it() {
    let sandbox = Sandbox::new();
    fill_history(&sandbox);
    for name in ["a", "b", "c", "d"] {
        std::fs::copy(crate::support::fixture("hello.wat"), sandbox.jobs().join(format!("{name}.wat"))).unwrap();
        sandbox.declare(name, "schedule = \"@every 1s\"\noverlap = \"allow\"");
    }
    let host = Host::start(&sandbox, &[]);
    let live = sandbox.state().join("wasmcron.db");
    wait_for("the jobs running", Duration::from_secs(30), || run_ids(&live).len() > 3_008);

    let committed = run_ids(&live);
    let copy = sandbox.path("copy.db");
    let output = sandbox.wasmcron(&["backup"]).arg(&copy).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let said = text(&output.stdout);
    assert!(said.contains("pages") && said.contains("bytes") && said.contains("runs up to id"), "{said}");

    let connection = rusqlite::Connection::open(&copy).unwrap();
    let check: String = connection.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(check, "ok");
    let mode: String = connection.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
    assert_eq!(mode, "delete", "the copy is one self-contained file");
    drop(connection);
    let copied = run_ids(&copy);
    let lost: Vec<_> = committed.difference(&copied).collect();
    assert!(lost.is_empty(), "{} runs committed before the backup are not in it: {lost:?}", lost.len());

    // The host was not held up: it goes on writing runs.
    let newest = *copied.last().unwrap();
    wait_for("runs after the backup", Duration::from_secs(20), || run_ids(&live).last() > Some(&newest));
    host.stop();

    // The copy is a store the CLI reads as it reads the live one.
    let store = format!("sqlite:{}", copy.display());
    let output = sandbox.wasmcron(&["runs", "--job", "a", "--json", "--store", &store]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert!(!runs.is_empty() && runs.iter().all(|run| run["job"] == "a"));
}

#[test]
fn backup_keeps_an_existing_file_unless_forced_and_never_writes_over_the_live_database() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("hello.wat");
    let output = sandbox.wasmcron(&["backup"]).arg(sandbox.path("copy.db")).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "no database yet: {}", describe(&output));
    assert!(text(&output.stderr).contains("--state"), "{}", describe(&output));

    assert_eq!(sandbox.once_json("hello").1, 0);
    let copy = sandbox.path("copy.db");
    std::fs::write(&copy, "keep me").unwrap();
    let output = sandbox.wasmcron(&["backup"]).arg(&copy).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(text(&output.stderr).contains("exists already; pass --force"), "{}", describe(&output));
    assert_eq!(std::fs::read(&copy).unwrap(), b"keep me");

    let output = sandbox.wasmcron(&["backup", "--force"]).arg(&copy).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(run_ids(&copy).len(), 1);

    let live = sandbox.state().join("wasmcron.db");
    let output = sandbox.wasmcron(&["backup", "--force"]).arg(&live).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(text(&output.stderr).contains("is the live database itself"), "{}", describe(&output));

    let output = sandbox.wasmcron(&["backup"]).arg(sandbox.path("no/such/folder/copy.db")).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(text(&output.stderr).contains("does the folder exist"), "{}", describe(&output));
    let left: Vec<_> = std::fs::read_dir(sandbox.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("backup"))
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}
