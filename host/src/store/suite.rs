//! The store-interface suite: every operation's behaviour through `Store`,
//! as the host uses it, run against each backend — SQLite on a file in a
//! temporary folder, PostgreSQL on a fresh database of the test server
//! (`wasmcron-test-pg`: our own throwaway server, or
//! `WASMCRON_TEST_POSTGRES`). What only one backend has (SQLite's schema
//! versions and page caps, PostgreSQL's races between hosts) is tested
//! beside that backend instead.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration as ChronoDuration, Utc};

use crate::record::{RunStatus, Trigger};
use crate::store::{
    Cancelled, Finished, Fire, FireRecorded, KEY_WINDOW, Load, NewRun, Retention, RunQuery, SharedOverlap, Store,
    StoreUrl,
};

/// Where a test's store lives; opened as often as the test likes, each
/// time a new store on the same data (as a restart or the CLI would).
pub(crate) struct Place {
    pub url: StoreUrl,
    _dir: Option<tempfile::TempDir>,
}

impl Place {
    pub fn sqlite() -> Place {
        let dir = tempfile::tempdir().unwrap();
        let url = StoreUrl::Sqlite(dir.path().join("state").join(crate::store::DATABASE_FILE));
        Place { url, _dir: Some(dir) }
    }

    pub fn postgres() -> Place {
        Place { url: StoreUrl::Postgres(wasmcron_test_pg::server().fresh_database()), _dir: None }
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        self.url.open().await.unwrap_or_else(|e| panic!("opening {}: {e}", self.url))
    }
}

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

pub(crate) fn finished(status: RunStatus, ended_at: DateTime<Utc>) -> Finished {
    Finished {
        status,
        ended_at,
        exit_code: Some(3),
        error: Some("exited with code 3".into()),
        fuel_used: Some(42),
        stdout: b"out".to_vec(),
        stderr: b"err".to_vec(),
        output_dropped: 0,
    }
}

pub(crate) async fn insert(store: &Arc<dyn Store>, run: NewRun) -> i64 {
    store.insert_runs(vec![run]).await.unwrap()[0]
}

/// Each test, once per backend: `current` ones on a current-thread
/// runtime (as the CLI opens a store), `multi` ones on the daemon's kind.
macro_rules! suite {
    (current: [$($current:ident),* $(,)?], multi: [$($multi:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $current() {
                super::$current(super::Place::sqlite()).await
            })*
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $multi() {
                super::$multi(super::Place::sqlite()).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $current() {
                super::$current(super::Place::postgres()).await
            })*
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $multi() {
                super::$multi(super::Place::postgres()).await
            })*
        }
    };
}

suite!(
    current: [
        a_run_goes_pending_running_finished_and_survives_reopening,
        queries_filter_by_time_and_trigger_and_page_by_cursor,
        a_search_finds_names_errors_and_ids,
        recovery_abandons_running_runs_and_retries_those_with_attempts_left,
        fires_of_a_paused_job_move_its_watermark_and_record_nothing,
        catch_up_records_rows_and_returns_the_pending_ones,
        a_trigger_with_a_known_key_returns_the_first_run,
        cancelling_says_what_the_run_was,
        missing_ends_only_pending_runs,
        job_state_round_trips,
        prune_keeps_open_runs_and_failures_longer,
        the_key_value_store_keeps_one_namespace_per_job,
    ],
    multi: [concurrent_writes_are_each_answered_after_they_are_durable],
);

async fn a_run_goes_pending_running_finished_and_survives_reopening(place: Place) {
    let store = place.open().await;
    let now = at("2026-11-24T10:00:00.123456Z");
    let run = NewRun { payload: b"{\"n\":1}".to_vec(), ..NewRun::pending("report", Trigger::Schedule, now) };
    let id = insert(&store, run.clone()).await;
    let recovered = store.recover(now, BTreeMap::new()).await.unwrap();
    assert_eq!(recovered.pending, [run.into_pending(id)], "times keep their microseconds");
    store.start_run(id, now, "abc".into()).await.unwrap();
    assert_eq!(store.run(id).await.unwrap().unwrap().status, RunStatus::Running);
    store.finish_run(id, finished(RunStatus::Failed, now)).await.unwrap();
    drop(store);

    let store = place.open().await;
    let run = store.run(id).await.unwrap().unwrap();
    assert_eq!((run.status, run.exit_code, run.fuel_used), (RunStatus::Failed, Some(3), Some(42)));
    assert_eq!((run.stdout.as_slice(), run.module_sha256.as_deref()), (b"out".as_slice(), Some("abc")));
    let query = |job: &str, status| RunQuery { job: Some(job.into()), status, limit: 10, ..RunQuery::default() };
    assert_eq!(store.runs(query("report", None)).await.unwrap().len(), 1);
    assert!(store.runs(query("report", Some(RunStatus::Succeeded))).await.unwrap().is_empty());
    assert!(store.runs(query("other", None)).await.unwrap().is_empty());
    assert_eq!(store.last_outcomes(vec!["report".into(), "other".into()]).await.unwrap()[0].id, id);
}

async fn queries_filter_by_time_and_trigger_and_page_by_cursor(place: Place) {
    let store = place.open().await;
    let base = at("2026-11-24T10:00:00Z");
    let mut ids = Vec::new();
    for minute in 0..10 {
        let trigger = if minute % 2 == 0 { Trigger::Schedule } else { Trigger::Manual };
        ids.push(insert(&store, NewRun::pending("a", trigger, base + ChronoDuration::minutes(minute))).await);
    }
    let page = |before| RunQuery { limit: 4, before, ..RunQuery::default() };
    let first = store.runs(page(None)).await.unwrap();
    assert_eq!(first.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[9], ids[8], ids[7], ids[6]]);
    let second = store.runs(page(Some(first.last().unwrap().id))).await.unwrap();
    assert_eq!(second[0].id, ids[5], "the next page starts just below the cursor");
    let window = RunQuery {
        since: Some(base + ChronoDuration::minutes(2)),
        until: Some(base + ChronoDuration::minutes(6)),
        trigger: Some(Trigger::Manual),
        limit: 100,
        ..RunQuery::default()
    };
    let found: Vec<i64> = store.runs(window).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(found, [ids[5], ids[3]], "minutes 3 and 5: since is inclusive, until exclusive");
}

async fn recovery_abandons_running_runs_and_retries_those_with_attempts_left(place: Place) {
    let store = place.open().await;
    let now = at("2026-11-24T10:00:00Z");
    let running = |job: &str, attempt| NewRun {
        status: RunStatus::Running,
        attempt,
        started_at: Some(now),
        payload: b"p".to_vec(),
        ..NewRun::pending(job, Trigger::Manual, now)
    };
    let retried = insert(&store, running("a", 1)).await;
    let last_try = insert(&store, running("a", 2)).await;
    let pending = insert(&store, NewRun::pending("b", Trigger::Manual, now)).await;
    let recovered = store.recover(now, BTreeMap::from([("a".to_owned(), 2)])).await.unwrap();
    let abandoned: Vec<(i64, RunStatus)> = recovered.abandoned.iter().map(|r| (r.id, r.status)).collect();
    assert_eq!(abandoned, [(retried, RunStatus::Abandoned), (last_try, RunStatus::Abandoned)]);
    assert_eq!(recovered.pending.len(), 2, "{:?}", recovered.pending);
    assert_eq!(recovered.pending[0].id, pending, "pending runs stay pending");
    let retry = &recovered.pending[1];
    assert_eq!((retry.job.as_str(), retry.attempt, retry.trigger), ("a", 2, Trigger::Retry));
    assert_eq!(retry.payload, b"p", "a retry gets the payload of the run it retries");
}

async fn fires_of_a_paused_job_move_its_watermark_and_record_nothing(place: Place) {
    let store = place.open().await;
    let (t1, t2) = (at("2026-11-24T10:00:00Z"), at("2026-11-24T10:01:00Z"));
    store.set_paused("quiet".into(), true, None).await.unwrap();
    let fire = |job: &str, at, skipped: Option<&str>| Fire {
        job: job.into(),
        scheduled_for: at,
        skipped: skipped.map(str::to_owned),
        shared: SharedOverlap::Allow,
    };
    let fires = vec![fire("quiet", t1, None), fire("loud", t1, None), fire("loud", t2, Some("busy"))];
    let recorded = store.record_fires(fires, t2).await.unwrap();
    let [FireRecorded::Paused, FireRecorded::Run(_), FireRecorded::Run(skipped)] = recorded[..] else {
        panic!("{recorded:?}")
    };
    let skipped = store.run(skipped).await.unwrap().unwrap();
    assert_eq!(
        (skipped.status, skipped.ended_at, skipped.error.as_deref()),
        (RunStatus::Skipped, Some(t2), Some("busy"))
    );
    let states = store.job_states().await.unwrap();
    assert_eq!((states["quiet"].last_fire, states["loud"].last_fire), (Some(t1), Some(t2)));
}

async fn a_trigger_with_a_known_key_returns_the_first_run(place: Place) {
    let store = place.open().await;
    let now = at("2026-11-24T10:00:00Z");
    let keyed = |job: &str, key: &str| NewRun {
        idempotency_key: Some(key.into()),
        ..NewRun::pending(job, Trigger::Manual, now)
    };
    let (first, new) = store.trigger_run(keyed("a", "k1"), now).await.unwrap();
    assert!(new);
    let within = now + KEY_WINDOW - chrono::TimeDelta::seconds(1);
    assert_eq!(store.trigger_run(keyed("a", "k1"), within).await.unwrap(), (first, false));
    let (other_job, new) = store.trigger_run(keyed("b", "k1"), now).await.unwrap();
    assert!(new && other_job != first, "keys are per job");

    assert_eq!(store.keyed_run("a".into(), "k1".into(), within).await.unwrap(), Some(first));
    assert_eq!(store.keyed_run("a".into(), "k2".into(), within).await.unwrap(), None);

    // Past the window the key is free: a new run, which holds it from then.
    let later = now + KEY_WINDOW + chrono::TimeDelta::seconds(1);
    let (second, new) = store.trigger_run(keyed("a", "k1"), later).await.unwrap();
    assert!(new && second != first, "{second} {first}");
    assert_eq!(store.trigger_run(keyed("a", "k1"), later).await.unwrap(), (second, false));
    let much_later = later + KEY_WINDOW + chrono::TimeDelta::seconds(1);
    assert_eq!(store.keyed_run("a".into(), "k1".into(), much_later).await.unwrap(), None);
}

async fn cancelling_says_what_the_run_was(place: Place) {
    let store = place.open().await;
    let now = at("2026-11-24T10:00:00Z");
    let pending = insert(&store, NewRun::pending("a", Trigger::Manual, now)).await;
    assert_eq!(store.cancel_pending(pending, now).await.unwrap(), Cancelled::WasPending);
    assert_eq!(store.cancel_pending(pending, now).await.unwrap(), Cancelled::Not(RunStatus::Cancelled));
    assert_eq!(store.cancel_pending(pending + 1, now).await.unwrap(), Cancelled::NoSuchRun);
}

async fn job_state_round_trips(place: Place) {
    let store = place.open().await;
    assert!(store.job_states().await.unwrap().is_empty());
    let t = at("2026-11-24T10:00:00Z");
    store.set_last_fire("a".into(), t).await.unwrap();
    store.set_paused("a".into(), true, None).await.unwrap();
    store.set_paused("b".into(), true, None).await.unwrap();
    let states = store.job_states().await.unwrap();
    assert_eq!((states["a"].last_fire, states["a"].paused, states.len()), (Some(t), true, 2));

    let failed = Load::Failed { job: "a".into(), error: "a.toml: schedule \"x\": bad".into() };
    store.record_loads(vec![failed], t).await.unwrap();
    assert_eq!(store.job_states().await.unwrap()["a"].load_error.as_deref(), Some("a.toml: schedule \"x\": bad"));
    let later = at("2026-11-24T11:00:00Z");
    let loads = vec![
        Load::Loaded { job: "a".into(), module_sha256: "abc".into(), first: false },
        Load::Loaded { job: "new".into(), module_sha256: "def".into(), first: true },
    ];
    store.record_loads(loads, later).await.unwrap();
    let states = store.job_states().await.unwrap();
    let a = &states["a"];
    assert_eq!((a.module_sha256.as_deref(), &a.load_error), (Some("abc"), &None), "a good load clears the error");
    assert!(a.paused && a.last_fire == Some(t), "and keeps the pause and the watermark");
    assert_eq!(states["new"].last_fire, Some(later), "a new job's history starts at its load");
}

async fn prune_keeps_open_runs_and_failures_longer(place: Place) {
    let store = place.open().await;
    let now = at("2026-11-24T10:00:00Z");
    let days_ago = |d: i64| now - ChronoDuration::days(d);
    let add = async |status, when| {
        let id =
            insert(&store, NewRun { status: RunStatus::Running, ..NewRun::pending("a", Trigger::Manual, when) }).await;
        store.finish_run(id, finished(status, when)).await.unwrap();
        id
    };
    let old_success = add(RunStatus::Succeeded, days_ago(40)).await;
    let old_failure = add(RunStatus::Failed, days_ago(40)).await;
    let ancient_failure = add(RunStatus::Failed, days_ago(100)).await;
    let old_pending = insert(&store, NewRun::pending("a", Trigger::Manual, days_ago(100))).await;
    let mut recent = Vec::new();
    for _ in 0..5 {
        recent.push(add(RunStatus::Succeeded, days_ago(1)).await);
    }
    store.prune(Retention { max_count: 4, ..Retention::default() }, now).await.unwrap();
    let mut exists = BTreeMap::new();
    for id in [old_success, old_failure, ancient_failure, old_pending].iter().chain(&recent) {
        exists.insert(*id, store.run(*id).await.unwrap().is_some());
    }
    assert!(!exists[&old_success], "a 40-day-old success is past 30 days");
    assert!(!exists[&ancient_failure], "a 100-day-old failure is past 90 days");
    assert!(exists[&old_pending], "open runs are never pruned");
    // Count: the newest 4 finished runs stay; the 40-day-old failure is the 5th newest.
    assert!(!exists[&old_failure]);
    assert!(recent[1..].iter().all(|id| exists[id]));
    assert!(!exists[&recent[0]]);
}

async fn concurrent_writes_are_each_answered_after_they_are_durable(place: Place) {
    let store = place.open().await;
    let now = at("2026-11-24T10:00:00Z");
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { insert(&store, NewRun::pending("a", Trigger::Manual, now)).await })
        })
        .collect();
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap());
    }
    // A second store, as the CLI would open, sees every answered write.
    let reader = place.open().await;
    assert_eq!(reader.recover(now, BTreeMap::new()).await.unwrap().pending.len(), 200);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
}

async fn a_search_finds_names_errors_and_ids(place: Place) {
    let store = place.open().await;
    let now = at("2026-11-24T10:00:00Z");
    let report = insert(&store, NewRun::pending("Nightly-Report", Trigger::Manual, now)).await;
    let later = now + ChronoDuration::microseconds(400);
    let failed =
        insert(&store, NewRun::not_run("other", RunStatus::Skipped, later, now, "disk 100%_full".into())).await;
    let search = |text: &str| RunQuery { search: Some(text.into()), limit: 10, ..RunQuery::default() };
    let ids = async |text: &str| store.runs(search(text)).await.unwrap().iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids("nightly").await, [report], "names, ignoring case");
    assert_eq!(ids("100%_f").await, [failed], "errors, with % and _ taken literally");
    assert_eq!(ids("0%x").await, Vec::<i64>::new());
    assert_eq!(ids(&format!("#{report}")).await, [report], "a run id");
    let one_fire = RunQuery { job: Some("other".into()), scheduled_for: Some(now), limit: 10, ..RunQuery::default() };
    assert_eq!(store.runs(one_fire).await.unwrap().len(), 1, "to the millisecond");
}

async fn catch_up_records_rows_and_returns_the_pending_ones(place: Place) {
    let store = place.open().await;
    let (t1, t2, t3) = (at("2026-11-24T10:00:00Z"), at("2026-11-24T10:01:00Z"), at("2026-11-24T10:02:00Z"));
    store.set_last_fire("a".into(), at("2026-11-24T09:59:00Z")).await.unwrap();
    let runs = vec![
        NewRun::not_run("a", RunStatus::Missed, t1, t3, "the host was down".into()),
        NewRun::pending("a", Trigger::CatchUp, t2),
    ];
    let catch_up = vec![
        crate::store::CatchUp { job: "a".into(), runs, last_fire: t3 },
        crate::store::CatchUp { job: "fresh".into(), runs: Vec::new(), last_fire: t3 },
    ];
    let pending = store.record_catch_up(catch_up).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!((pending[0].job.as_str(), pending[0].scheduled_for, pending[0].trigger), ("a", t2, Trigger::CatchUp));
    let run = store.run(pending[0].id).await.unwrap().unwrap();
    assert_eq!((run.status, run.scheduled_for), (RunStatus::Pending, t2));
    let all = store.runs(RunQuery { job: Some("a".into()), limit: 10, ..RunQuery::default() }).await.unwrap();
    assert_eq!(all.iter().map(|r| r.status).collect::<Vec<_>>(), [RunStatus::Pending, RunStatus::Missed]);
    let states = store.job_states().await.unwrap();
    assert_eq!((states["a"].last_fire, states["fresh"].last_fire), (Some(t3), Some(t3)));
}

async fn missing_ends_only_pending_runs(place: Place) {
    let store = place.open().await;
    let now = at("2026-11-24T10:00:00Z");
    let pending = insert(&store, NewRun::pending("a", Trigger::Manual, now)).await;
    let running =
        insert(&store, NewRun { status: RunStatus::Running, ..NewRun::pending("a", Trigger::Manual, now) }).await;
    store.miss_pending(vec![(pending, "late".into()), (running, "late".into())], now).await.unwrap();
    let missed = store.run(pending).await.unwrap().unwrap();
    assert_eq!((missed.status, missed.error.as_deref(), missed.ended_at), (RunStatus::Missed, Some("late"), Some(now)));
    assert_eq!(store.run(running).await.unwrap().unwrap().status, RunStatus::Running);
    assert_eq!(store.run_payload(running + 100).await.unwrap(), b"", "no such run: an empty payload");
}

async fn the_key_value_store_keeps_one_namespace_per_job(place: Place) {
    let store = place.open().await;
    let (a, b) = (|| "a".to_owned(), || "b".to_owned());
    for key in ["b/2", "b/10", "a", "B", "b/1"] {
        assert!(store.kv_set(a(), key.into(), key.as_bytes().to_vec()).await.unwrap());
    }
    assert!(store.kv_set(a(), "a".into(), b"new".to_vec()).await.unwrap());
    assert_eq!(store.kv_get(a(), "a".into()).await.unwrap().as_deref(), Some(b"new".as_slice()));
    assert_eq!(store.kv_get(b(), "a".into()).await.unwrap(), None, "another job's namespace");
    assert_eq!(store.kv_list(a(), "b/".into()).await.unwrap(), ["b/1", "b/10", "b/2"], "in byte order");
    assert_eq!(store.kv_list(a(), String::new()).await.unwrap(), ["B", "a", "b/1", "b/10", "b/2"]);
    store.kv_delete(a(), "b/10".into()).await.unwrap();
    assert_eq!(store.kv_list(a(), "b/".into()).await.unwrap(), ["b/1", "b/2"]);
}
