//! The crash loop: the real host SIGKILLed at random points, 50 times,
//! while scheduled fires, API triggers and retries are under way, and
//! restarted each time. At the end the state database must account for
//! everything: every accepted trigger ended exactly once, every due fire
//! inside the catch-up policy has exactly one record, nothing is left
//! `running`, and SQLite's integrity check passes.
//!
//! The seed is printed; `CRASHLOOP_SEED=N` replays a run's kill points.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::api::send;
use crate::daemon::Host;
use crate::support::{Sandbox, wait_for};

const KILLS: usize = 50;
/// `[retry] attempts` of the triggered job.
const ATTEMPTS: i64 = 3;

/// A triggered guest whose payload says how it behaves: `ok…` succeeds,
/// `xx…` always fails, `fl…` fails on its first attempt only (it looks for
/// `WASMCRON_ATTEMPT=1` in its environment). Each sleeps 150 ms first, so
/// kills land mid-run too.
const FLAKY: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $env_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "\00\04\00\00\40\00\00\00")
  (data (i32.const 256) "WASMCRON_ATTEMPT=1\00")
  (data (i32.const 528) "\01\00\00\00")
  (data (i32.const 536) "\80\d1\f0\08\00\00\00\00")
  (func $first_attempt (result i32) (local $i i32) (local $end i32) (local $j i32)
    (drop (call $env_sizes (i32.const 800) (i32.const 804)))
    (drop (call $env_get (i32.const 4096) (i32.const 8192)))
    (local.set $i (i32.const 8192))
    (local.set $end (i32.sub (i32.add (i32.const 8192) (i32.load (i32.const 804))) (i32.const 19)))
    (block $none (loop $scan
      (br_if $none (i32.gt_s (local.get $i) (local.get $end)))
      (local.set $j (i32.const 0))
      (block $differs (loop $compare
        (if (i32.eq (local.get $j) (i32.const 19)) (then (return (i32.const 1))))
        (br_if $differs (i32.ne (i32.load8_u (i32.add (local.get $i) (local.get $j)))
                                (i32.load8_u (i32.add (i32.const 256) (local.get $j)))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $compare)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $scan)))
    (i32.const 0))
  (func (export "_start")
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (drop (call $poll (i32.const 512) (i32.const 600) (i32.const 1) (i32.const 700)))
    (if (i32.eq (i32.load8_u (i32.const 1024)) (i32.const 120)) (then (call $exit (i32.const 1))))
    (if (i32.and (i32.eq (i32.load8_u (i32.const 1024)) (i32.const 102)) (call $first_attempt))
      (then (call $exit (i32.const 1))))))"#;

/// splitmix64: the kill points, reproducible from the printed seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low))
    }
}

/// What the trigger thread was told: each accepted run id with its payload.
#[derive(Default)]
struct Accepted {
    runs: BTreeMap<i64, String>,
    /// Requests whose answer never came (the host died under them): their
    /// runs may exist without being accepted.
    unanswered: usize,
    refused: usize,
}

/// Triggers the `flaky` job continuously at whichever address the host
/// now listens on; every fifth request carries an idempotency key, and is
/// asked again (across restarts if need be) until it is answered, and its
/// repeat must name the same run.
fn trigger_continuously(
    base: Arc<Mutex<String>>,
    token: String,
    stop: Arc<AtomicBool>,
    accepted: Arc<Mutex<Accepted>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let payload = format!("{}-{n}", ["ok", "fl", "xx"][(n % 3) as usize]);
            let key = n.is_multiple_of(5).then(|| format!("key-{n}"));
            let headers: Vec<(&str, &str)> = key.iter().map(|k| ("Idempotency-Key", k.as_str())).collect();
            let ask = || {
                let base = base.lock().unwrap().clone();
                runtime.block_on(send(
                    &http,
                    &base,
                    Method::POST,
                    "/api/v1/jobs/flaky/trigger",
                    Some(&token),
                    payload.clone().into_bytes(),
                    &headers,
                ))
            };
            let mut answer = ask();
            // A keyed request is asked again until it is answered: the
            // key makes that safe, and the answer says whether the dead
            // host had recorded it.
            let asked_since = Instant::now();
            while key.is_some() && answer.is_err() && asked_since.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(50));
                answer = ask();
            }
            let mut accepted = accepted.lock().unwrap();
            match answer {
                Ok(answer) if answer.status == StatusCode::ACCEPTED || answer.status == StatusCode::OK => {
                    let id = answer.body["id"].as_i64().unwrap_or_else(|| panic!("no id in {}", answer.text));
                    if answer.status == StatusCode::OK {
                        // Only a repeat of a keyed request that the dead host recorded.
                        assert!(key.is_some(), "200 to a request with no key: {}", answer.text);
                    }
                    assert!(accepted.runs.insert(id, payload.clone()).is_none(), "run {id} accepted twice");
                    if key.is_some() {
                        drop(accepted);
                        if let Ok(again) = ask()
                            && again.status.is_success()
                        {
                            assert_eq!(again.status, StatusCode::OK, "a repeated key: {}", again.text);
                            assert_eq!(again.body["id"].as_i64(), Some(id), "a repeated key names its run");
                        }
                    }
                }
                Ok(_) => accepted.refused += 1,
                Err(_) => accepted.unanswered += 1,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// One row of the `runs` table, read straight from SQLite.
#[derive(Debug)]
struct Row {
    id: i64,
    status: String,
    trigger: String,
    attempt: i64,
    scheduled_for: i64,
    payload: String,
}

fn rows(db: &rusqlite::Connection, job: &str) -> Vec<Row> {
    let mut statement = db
        .prepare("SELECT id, status, trigger, attempt, scheduled_for, payload FROM runs WHERE job = ?1 ORDER BY id")
        .unwrap();
    statement
        .query_map([job], |row| {
            let payload: Vec<u8> = row.get(5)?;
            Ok(Row {
                id: row.get(0)?,
                status: row.get(1)?,
                trigger: row.get(2)?,
                attempt: row.get(3)?,
                scheduled_for: row.get(4)?,
                payload: String::from_utf8_lossy(&payload).into_owned(),
            })
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn declare(sandbox: &Sandbox) {
    sandbox.add_fixture("hello.wat");
    sandbox.declare("hello", "schedule = \"@every 1s\"\ncatch_up = \"all\"\ncatch_up_window = \"1h\"");
    std::fs::write(sandbox.jobs().join("flaky.wat"), FLAKY).unwrap();
    sandbox.declare(
        "flaky",
        &format!(
            "module = \"flaky.wat\"\n[retry]\nattempts = {ATTEMPTS}\nbackoff = \"100ms\"\nmax_backoff = \"200ms\""
        ),
    );
}

#[test]
fn fifty_sigkills_lose_no_trigger_fire_or_retry_and_leave_a_sound_database() {
    let seed = std::env::var("CRASHLOOP_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("crash loop seed: {seed} (CRASHLOOP_SEED={seed} replays it)");
    let mut random = Random(seed);
    let began = Instant::now();
    let sandbox = Sandbox::new();
    declare(&sandbox);

    let mut host = Host::start(&sandbox, &[]);
    let api = crate::api::Api::ready(&sandbox, &host);
    let base = Arc::new(Mutex::new(api.base.clone()));
    let (stop, accepted) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Accepted::default())));
    let triggers = trigger_continuously(base.clone(), api.admin.clone(), stop.clone(), accepted.clone());
    std::thread::sleep(Duration::from_secs(1));
    for _ in 0..KILLS {
        std::thread::sleep(random.millis(300, 2000));
        host.kill();
        host = Host::start(&sandbox, &[]);
        *base.lock().unwrap() = format!("http://{}", host.listen);
    }
    stop.store(true, Ordering::Relaxed);
    triggers.join().expect("the trigger thread's checks held");

    // The last host finishes what is owed (retries, caught-up fires), then stops cleanly.
    let db_path = sandbox.state().join("wasmcron.db");
    wait_for("every triggered run and retry to end", Duration::from_secs(60), || {
        let db = rusqlite::Connection::open(&db_path).unwrap();
        db.busy_timeout(Duration::from_secs(5)).unwrap();
        rows(&db, "flaky").iter().all(|r| r.status != "pending" && r.status != "running")
    });
    host.stop();
    let took = began.elapsed();

    let db = rusqlite::Connection::open(&db_path).unwrap();
    let integrity: String = db.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let running: i64 = db.query_row("SELECT count(*) FROM runs WHERE status = 'running'", [], |r| r.get(0)).unwrap();
    assert_eq!(running, 0, "runs left running after a clean stop");

    let accepted = accepted.lock().unwrap();
    let chains = check_triggers(&rows(&db, "flaky"), &accepted);
    let fires = check_fires(&db);
    eprintln!(
        "crash loop: {KILLS} kills, {} triggers accepted ({} refused, {} unanswered), {chains} retries, \
         {fires} fires checked, {:.1} s",
        accepted.runs.len(),
        accepted.refused,
        accepted.unanswered,
        took.as_secs_f64()
    );
    assert!(accepted.runs.len() >= KILLS, "too few triggers accepted to say much: {}", accepted.runs.len());
    assert!(chains > 0, "no retry ran");
}

/// Every accepted trigger's chain (its run and the retries that carry its
/// payload) is attempts 1, 2, … k, each ended; all but the last failed or
/// were abandoned, and the last succeeded or used up `[retry] attempts`.
/// Returns how many retries there were.
fn check_triggers(rows: &[Row], accepted: &Accepted) -> usize {
    let mut chains: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for row in rows {
        chains.entry(row.payload.as_str()).or_default().push(row);
    }
    let manual: BTreeSet<i64> = rows.iter().filter(|r| r.trigger == "manual").map(|r| r.id).collect();
    let unaccepted = manual.iter().filter(|id| !accepted.runs.contains_key(id)).count();
    assert!(
        unaccepted <= accepted.unanswered,
        "{unaccepted} triggered runs were never answered 202/200, more than the {} requests cut off",
        accepted.unanswered
    );
    let mut retries = 0;
    for (id, payload) in &accepted.runs {
        let chain = chains.get(payload.as_str()).unwrap_or_else(|| panic!("accepted run {id} ({payload}) has no row"));
        let show = || format!("{payload}: {chain:?}");
        assert_eq!((chain[0].id, chain[0].trigger.as_str()), (*id, "manual"), "{}", show());
        for (n, row) in chain.iter().enumerate() {
            assert_eq!(row.attempt, n as i64 + 1, "attempts in order, none twice: {}", show());
            if n > 0 {
                assert_eq!(row.trigger, "retry", "{}", show());
            }
        }
        let (last, earlier) = chain.split_last().unwrap();
        for row in earlier {
            assert!(matches!(row.status.as_str(), "failed" | "abandoned"), "only a failure is retried: {}", show());
        }
        let ended = last.status == "succeeded"
            || (matches!(last.status.as_str(), "failed" | "abandoned") && last.attempt == ATTEMPTS);
        assert!(ended, "the chain ends in success or with its attempts used up: {}", show());
        // What each kind of guest does, where no kill came between.
        let failed = chain.iter().filter(|r| r.status == "failed").count();
        match &payload[..2] {
            "ok" => assert_eq!(failed, 0, "{}", show()),
            "fl" => assert!(chain.iter().filter(|r| r.attempt > 1).all(|r| r.status != "failed"), "{}", show()),
            _ => assert!(chain.iter().all(|r| r.status != "succeeded"), "{}", show()),
        }
        retries += chain.len() - 1;
    }
    retries
}

/// The scheduled job: every whole second from its first fire to the last
/// one dealt with has exactly one record (run, caught up, skipped), and
/// none is `missed` (`catch_up = "all"`, inside the window); no run twice.
/// Returns how many fires were checked.
fn check_fires(db: &rusqlite::Connection) -> usize {
    let rows = rows(db, "hello");
    let mut fires: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
    for row in &rows {
        assert!(matches!(row.trigger.as_str(), "schedule" | "catch-up"), "{row:?}");
        fires.entry(row.scheduled_for).or_default().push(row);
    }
    let last_fire: i64 =
        db.query_row("SELECT last_fire FROM job_state WHERE job = 'hello'", [], |row| row.get(0)).unwrap();
    let first = *fires.keys().next().expect("the scheduled job fired");
    assert_eq!(first % 1_000_000, 0, "fires on whole seconds");
    let mut second = first;
    while second <= last_fire {
        let records = fires.get(&second).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(records.len(), 1, "the fire at {second} µs has records {records:?}");
        assert!(matches!(records[0].status.as_str(), "succeeded" | "abandoned" | "skipped"), "{:?}", records[0]);
        second += 1_000_000;
    }
    assert!(fires.keys().all(|t| *t <= last_fire), "a fire recorded beyond the watermark");
    fires.len()
}
