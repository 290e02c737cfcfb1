//! The cluster side of the PostgreSQL store (`Cluster`), on a fresh
//! database of the test server, with two or three stores standing for
//! hosts: claims that never hand one run to two hosts, leases that lapse
//! by the database's clock and are rescued, fences that turn a stale
//! host's renewal and outcome away, and the hosts table.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use wasmcron_test_pg::{execute, server};

use super::PgStore;
use crate::record::{RunStatus, Trigger};
use crate::store::suite::finished;
use crate::store::{Claimable, Cluster, HostInfo, Load, NewRun, Store, StoreError};

const LEASE: Duration = Duration::from_secs(30);

async fn open(url: &str) -> PgStore {
    PgStore::open(url).await.unwrap()
}

fn claimable(job: &str, sha: &str, serial: bool) -> Claimable {
    Claimable { job: job.into(), module_sha256: sha.into(), serial }
}

/// `job` in service at `sha`, as a host's start records it.
async fn load(store: &PgStore, job: &str, sha: &str) {
    let load = Load::Loaded { job: job.into(), module_sha256: sha.into(), first: false };
    store.record_loads(vec![load], Utc::now()).await.unwrap();
}

async fn pending(store: &PgStore, job: &str, count: usize) -> Vec<i64> {
    let runs = (0..count).map(|_| NewRun::pending(job, Trigger::Manual, Utc::now())).collect();
    store.insert_runs(runs).await.unwrap()
}

/// Makes every lease of the database lapse now (a host silent for longer
/// than its lease, without waiting for one).
fn lapse_leases(url: &str) {
    execute(url, "UPDATE runs SET lease_until = now() - interval '1 second' WHERE status = 'running'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_claiming_at_once_never_share_a_run_and_only_due_runs_of_the_version_in_service() {
    let url = server().fresh_database();
    let hosts = [open(&url).await, open(&url).await, open(&url).await];
    load(&hosts[0], "work", "v1").await;
    let ids: BTreeSet<i64> = pending(&hosts[0], "work", 90).await.into_iter().collect();
    let later = NewRun::pending("work", Trigger::Manual, Utc::now() + chrono::TimeDelta::hours(1));
    let later = hosts[0].insert_runs(vec![later]).await.unwrap()[0];

    let mut claims = tokio::task::JoinSet::new();
    for host in hosts.iter().cloned() {
        claims.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = host.claim(vec![claimable("work", "v1", false)], 7, LEASE).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|claim| (claim.run.id, claim.fence)));
            }
        });
    }
    let claimed: Vec<Vec<(i64, i64)>> = claims.join_all().await;
    let all: Vec<i64> = claimed.iter().flatten().map(|(id, _)| *id).collect();
    assert_eq!(all.len(), 90, "each due run claimed once: {claimed:?}");
    assert_eq!(all.iter().copied().collect::<BTreeSet<_>>(), ids, "every due run, and not the one due in an hour");
    assert!(!all.contains(&later));
    assert!(claimed.iter().flatten().all(|(_, fence)| *fence == 1), "a first claim is fence 1");
    let running = execute(&url, "SELECT count(DISTINCT host_id) FROM runs WHERE status = 'running'");
    assert!(running.trim().parse::<u32>().unwrap() >= 1);

    // A host on another version of the module leaves the job's runs alone.
    pending(&hosts[0], "work", 1).await;
    let stale = hosts[1].claim(vec![claimable("work", "v0", false)], 10, LEASE).await.unwrap();
    assert!(stale.is_empty(), "claimed at a version not in service: {stale:?}");
    assert_eq!(hosts[2].claim(vec![claimable("work", "v1", false)], 10, LEASE).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serial_job_runs_one_at_a_time_across_hosts() {
    let url = server().fresh_database();
    let (one, two) = (open(&url).await, open(&url).await);
    load(&one, "nightly", "v1").await;
    pending(&one, "nightly", 3).await;
    let first = one.claim(vec![claimable("nightly", "v1", true)], 10, LEASE).await.unwrap();
    assert_eq!(first.len(), 1, "one run of a serial job per claim");
    let none = two.claim(vec![claimable("nightly", "v1", true)], 10, LEASE).await.unwrap();
    assert!(none.is_empty(), "none while one runs on another host: {none:?}");
    one.finish_run(first[0].run.id, finished(RunStatus::Succeeded, Utc::now())).await.unwrap();
    assert_eq!(two.claim(vec![claimable("nightly", "v1", true)], 10, LEASE).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_is_rescued_with_a_retry_and_the_stale_host_is_fenced_off() {
    let url = server().fresh_database();
    let (stale, rescuer) = (open(&url).await, open(&url).await);
    load(&stale, "work", "v1").await;
    let ids = pending(&stale, "work", 2).await;
    let claimed = stale.claim(vec![claimable("work", "v1", false)], 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 2);
    stale.renew(ids[0], LEASE).await.unwrap();

    // Under a live lease nothing is rescued.
    let attempts = BTreeMap::from([("work".to_owned(), 3)]);
    assert!(rescuer.rescue(attempts.clone()).await.unwrap().abandoned.is_empty());

    lapse_leases(&url);
    let rescued = rescuer.rescue(attempts.clone()).await.unwrap();
    let abandoned: Vec<i64> = rescued.abandoned.iter().map(|run| run.id).collect();
    assert_eq!(abandoned, ids, "both lapsed runs");
    assert!(rescued.abandoned.iter().all(|run| run.status == RunStatus::Abandoned));
    assert!(rescued.abandoned[0].error.as_deref().unwrap().contains(stale.host_id()), "{:?}", rescued.abandoned);
    assert_eq!(rescued.triggered_waiting, 0, "retries are not triggered runs");
    assert!(rescuer.rescue(attempts).await.unwrap().abandoned.is_empty(), "rescued once");

    // The retries wait for any host, and name the run they retry.
    let retries = rescuer.claim(vec![claimable("work", "v1", false)], 10, LEASE).await.unwrap();
    let parents: Vec<Option<i64>> =
        futures_util::future::join_all(retries.iter().map(|claim| rescuer.run(claim.run.id)))
            .await
            .into_iter()
            .map(|run| run.unwrap().unwrap().parent_run)
            .collect();
    assert_eq!(parents, ids.iter().map(|id| Some(*id)).collect::<Vec<_>>());
    assert!(retries.iter().all(|claim| claim.run.attempt == 2 && claim.run.trigger == Trigger::Retry));

    // The stale host wakes: its renewal and its outcome are turned away,
    // and the abandoned record stays as it was.
    assert!(matches!(stale.renew(ids[0], LEASE).await, Err(StoreError::Superseded { id }) if id == ids[0]));
    let outcome = stale.finish_run(ids[1], finished(RunStatus::Succeeded, Utc::now())).await;
    assert!(matches!(outcome, Err(StoreError::Superseded { id }) if id == ids[1]), "{outcome:?}");
    for id in &ids {
        let run = rescuer.run(*id).await.unwrap().unwrap();
        assert_eq!((run.status, run.exit_code), (RunStatus::Abandoned, None), "{run:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_out_of_attempts_is_abandoned_for_good() {
    let url = server().fresh_database();
    let (stale, rescuer) = (open(&url).await, open(&url).await);
    load(&stale, "once", "v1").await;
    pending(&stale, "once", 1).await;
    assert_eq!(stale.claim(vec![claimable("once", "v1", false)], 1, LEASE).await.unwrap().len(), 1);
    lapse_leases(&url);
    let rescued = rescuer.rescue(BTreeMap::from([("once".to_owned(), 1)])).await.unwrap();
    assert_eq!(rescued.abandoned.len(), 1);
    let left = execute(&url, "SELECT count(*) FROM runs WHERE status = 'pending'");
    assert_eq!(left.trim(), "0", "no retry beyond the job's attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_beat_show_as_alive_and_leave() {
    let url = server().fresh_database();
    let (one, two) = (open(&url).await, open(&url).await);
    assert_ne!(one.host_id(), two.host_id());
    let info = |name: &str, sha: &str| HostInfo {
        name: name.into(),
        version: "0.1.0".into(),
        modules: BTreeMap::from([("report".to_owned(), sha.to_owned())]),
        declarations: BTreeMap::new(),
    };
    one.heartbeat(info("one", "aa")).await.unwrap();
    two.heartbeat(info("two", "bb")).await.unwrap();
    one.heartbeat(info("one", "aa")).await.unwrap(); // a renewal, not a second row
    let hosts = two.hosts().await.unwrap();
    assert_eq!(hosts.iter().map(|h| h.info.name.as_str()).collect::<Vec<_>>(), ["one", "two"]);
    assert!(hosts.iter().all(|host| host.alive));
    assert_eq!(hosts[1].info.modules["report"], "bb");

    execute(&url, "UPDATE hosts SET heartbeat_at = now() - interval '1 minute' WHERE name = 'one'");
    let hosts = two.hosts().await.unwrap();
    assert_eq!(
        hosts.iter().map(|h| (h.info.name.as_str(), h.alive)).collect::<Vec<_>>(),
        [("one", false), ("two", true)]
    );
    two.leave().await.unwrap();
    assert_eq!(one.hosts().await.unwrap().len(), 1);

    // The database's clock is what every host goes by.
    let skew = (one.now().await.unwrap() - Utc::now()).abs();
    assert!(skew < chrono::TimeDelta::seconds(5), "the test server's clock is this machine's: {skew}");
}
