//! Several `wasmcron run` hosts on one real PostgreSQL database (a
//! throwaway server, see `tests/pg`), through what goes wrong in a
//! cluster: a host killed mid-run, one paused for longer than its lease
//! and resumed, every database session terminated, and a host whose clock
//! is minutes wrong. Checked from the records the hosts leave, as an
//! operator would read them: one row per fire, no fire missing, every
//! accepted trigger run to one success, and the paused host's guests
//! stopped with their results discarded.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::api::Api;
use crate::daemon::Host;
use crate::support::{Sandbox, fixture, sleeper, wait_for};

/// How long a claim holds here: short, so the test sees leases lapse.
const LEASE: &str = "3s";

/// How long a `long` run sleeps: well past the pause below.
const LONG_SECONDS: u64 = 20;

/// A run row as the test reads it straight from the database.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    job: String,
    status: String,
    trigger: String,
    attempt: i64,
    /// Seconds since the epoch, to the microsecond.
    scheduled_for: f64,
    host: String,
    parent: Option<i64>,
    exit_code: Option<i64>,
}

fn rows(url: &str) -> Vec<Row> {
    let text = wasmcron_test_pg::execute(
        url,
        "SELECT id, job, status, trigger, attempt, extract(epoch FROM scheduled_for), coalesce(host_id, ''), \
         coalesce(parent_run::text, ''), coalesce(exit_code::text, '') FROM runs ORDER BY id",
    );
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let cells: Vec<&str> = line.split('|').collect();
            let optional = |cell: &str| (!cell.is_empty()).then(|| cell.parse().unwrap());
            Row {
                id: cells[0].parse().unwrap(),
                job: cells[1].to_owned(),
                status: cells[2].to_owned(),
                trigger: cells[3].to_owned(),
                attempt: cells[4].parse().unwrap(),
                scheduled_for: cells[5].parse().unwrap(),
                host: cells[6].to_owned(),
                parent: optional(cells[7]),
                exit_code: optional(cells[8]),
            }
        })
        .collect()
}

/// The database's clock, in seconds since the epoch.
fn database_now(url: &str) -> f64 {
    wasmcron_test_pg::execute(url, "SELECT extract(epoch FROM now())").trim().parse().unwrap()
}

/// One host of the cluster: a machine of its own (jobs folder, state
/// folder) with the same jobs, on the shared database.
struct Member {
    sandbox: Sandbox,
    host: Host,
    api: Api,
    /// Its id in the hosts table.
    id: String,
}

fn declare_jobs(sandbox: &Sandbox) {
    std::fs::copy(fixture("exit0.wat"), sandbox.jobs().join("tick.wat")).unwrap();
    sandbox.declare("tick", "schedule = \"@every 1s\"\noverlap = \"allow\"\n");
    std::fs::write(sandbox.jobs().join("work.wat"), sleeper(2)).unwrap();
    sandbox.declare("work", "[retry]\nattempts = 4\nbackoff = \"100ms\"\n");
    // Long enough to be still running when a paused host wakes.
    std::fs::write(sandbox.jobs().join("long.wat"), sleeper(LONG_SECONDS)).unwrap();
    sandbox.declare("long", "[retry]\nattempts = 3\n\n[limits]\ntimeout = \"60s\"\n");
}

fn join(url: &str, name: &str, skew: Option<&str>) -> Member {
    let sandbox = Sandbox::new();
    declare_jobs(&sandbox);
    let args = ["--store", url, "--lease", LEASE, "--max-running", "4", "--host-name", name];
    let host = Host::start_with(&sandbox, &args, |mut command, _| {
        command.env("RUST_LOG", "info,wasmcron=debug");
        if let Some(skew) = skew {
            command.env("WASMCRON_CLOCK_SKEW", skew);
        }
        command
    });
    let api = Api::ready(&sandbox, &host);
    let hosts = api.get("/api/v1/hosts").body;
    assert_eq!(hosts["shared"], true, "{hosts}");
    let id = hosts["this_host"].as_str().unwrap().to_owned();
    Member { sandbox, host, api, id }
}

fn log_of(member: &Member) -> String {
    let n = std::fs::read_dir(member.sandbox.dir.path())
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .find(|name| name.starts_with("host-") && name.ends_with(".log"))
        .expect("the host's log");
    std::fs::read_to_string(member.sandbox.path(&n)).unwrap()
}

fn running_on(url: &str, id: &str) -> usize {
    rows(url).iter().filter(|row| row.status == "running" && row.host == id).count()
}

#[test]
fn three_hosts_on_one_database_record_every_fire_once_and_finish_every_trigger_through_kill_pause_and_lost_sessions() {
    let url = wasmcron_test_pg::server().fresh_database();
    let a = join(&url, "a", None);
    let b = join(&url, "b", None);
    // Two and a half minutes fast: it must fire when the others do.
    let c = join(&url, "c", Some("150"));
    wait_for("all three hosts to show as alive", Duration::from_secs(20), || {
        let hosts = a.api.get("/api/v1/hosts").body;
        hosts["hosts"].as_array().unwrap().iter().filter(|host| host["alive"] == true).count() == 3
    });
    let window_start = database_now(&url);

    // Long runs first, so that every host holds some; then a burst of
    // short ones, accepted by two hosts: any host may run them.
    let mut accepted = Vec::new();
    for _ in 0..6 {
        let answer = c.api.post("/api/v1/jobs/long/trigger", b"");
        assert_eq!(answer.status, 202, "{}", answer.text);
        accepted.push(answer.body["id"].as_i64().unwrap());
    }
    for n in 0..36 {
        let api = if n % 2 == 0 { &a.api } else { &b.api };
        let answer = api.post("/api/v1/jobs/work/trigger", format!("{n}").as_bytes());
        assert_eq!(answer.status, 202, "{}", answer.text);
        accepted.push(answer.body["id"].as_i64().unwrap());
    }

    // b dies mid-run.
    wait_for("b to be running work", Duration::from_secs(20), || running_on(&url, &b.id) > 0);
    let Member { host: b_host, id: b_id, .. } = b;
    b_host.kill();

    // a is paused for twice its lease with runs in flight, long ones
    // among them, then resumed.
    wait_for("a to be running a long run", Duration::from_secs(30), || {
        rows(&url).iter().any(|row| row.status == "running" && row.host == a.id && row.job == "long")
    });
    a.host.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(200));
    let paused_with: BTreeSet<i64> =
        rows(&url).iter().filter(|row| row.status == "running" && row.host == a.id).map(|row| row.id).collect();
    std::thread::sleep(Duration::from_secs(7));
    a.host.signal(libc::SIGCONT);

    // Every session the hosts hold is cut.
    let cut = wasmcron_test_pg::execute(
        &url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    assert!(cut.trim().parse::<u32>().unwrap() > 0, "the hosts held sessions");

    // Everything accepted reaches an outcome, on the hosts that are left.
    let chains = |rows: &[Row]| -> BTreeMap<i64, Vec<Row>> {
        let by_parent: BTreeMap<i64, &Row> = rows.iter().filter_map(|r| r.parent.map(|p| (p, r))).collect();
        accepted
            .iter()
            .map(|first| {
                let mut chain =
                    vec![rows.iter().find(|r| r.id == *first).expect("an accepted run is recorded").clone()];
                while let Some(next) = by_parent.get(&chain.last().unwrap().id) {
                    chain.push((*next).clone());
                }
                (*first, chain)
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let rows = rows(&url);
        let done = chains(&rows).values().all(|chain| {
            let last = chain.last().unwrap();
            last.status != "pending" && last.status != "running" && last.status != "abandoned"
        });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "accepted triggers still open after 3 minutes: {:?}", chains(&rows));
        std::thread::sleep(Duration::from_millis(250));
    }
    // A few more fires with everything healed.
    std::thread::sleep(Duration::from_secs(3));
    let window_end = database_now(&url) - 3.0;
    let a_log = {
        let log = log_of(&a);
        drop(a.api);
        a.host.stop();
        log
    };
    c.host.stop();
    drop(c.api);
    let rows = rows(&url);

    // Exactly one row per fire, and none missing, over the whole window.
    let mut fires: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.job == "tick" && r.attempt == 1 && r.trigger != "manual") {
        fires.entry((row.scheduled_for * 1000.0).round() as i64).or_default().push(row);
    }
    let doubles: Vec<_> = fires.iter().filter(|(_, rows)| rows.len() > 1).collect();
    assert!(doubles.is_empty(), "fires recorded more than once: {doubles:?}");
    let in_window: Vec<i64> = fires
        .keys()
        .copied()
        .filter(|ms| *ms as f64 / 1000.0 >= window_start && (*ms as f64 / 1000.0) <= window_end)
        .collect();
    assert!(in_window.len() >= 15, "the window holds fires: {in_window:?}");
    for pair in in_window.windows(2) {
        assert_eq!(pair[1] - pair[0], 1000, "a fire is missing between {} and {} ms", pair[0], pair[1]);
    }
    let not_run: Vec<_> = in_window.iter().flat_map(|ms| &fires[ms]).filter(|row| row.status != "succeeded").collect();
    assert!(not_run.is_empty(), "fires in the window that did not run: {not_run:?}");

    // Every accepted trigger ends in exactly one success; what was
    // abandoned was never also written as an outcome.
    for (first, chain) in chains(&rows) {
        let succeeded = chain.iter().filter(|r| r.status == "succeeded").count();
        assert_eq!(succeeded, 1, "trigger {first}: {chain:?}");
        for row in chain.iter().filter(|r| r.status == "abandoned") {
            assert_eq!(row.exit_code, None, "an abandoned run got an outcome written too: {row:?}");
        }
    }
    let rescued_from = |host: &str| -> Vec<i64> {
        rows.iter().filter(|r| r.status == "abandoned" && r.host == host).map(|r| r.id).collect()
    };
    assert!(!rescued_from(&b_id).is_empty(), "b's runs were taken over after it was killed");

    // The paused host's runs were taken over, and it stopped their guests
    // and discarded their results when it woke.
    let taken_from_a = rescued_from(&a.id);
    assert!(!taken_from_a.is_empty(), "a's runs were taken over while it was paused");
    assert!(taken_from_a.iter().all(|id| paused_with.contains(id)), "{taken_from_a:?} ⊆ {paused_with:?}");
    let said =
        |id: i64, what: &str| a_log.lines().any(|line| line.contains(what) && line.contains(&format!("run_id={id} ")));
    for id in &taken_from_a {
        assert!(said(*id, "lease lost"), "a did not give up run {id} when it woke; its log:\n{a_log}");
    }
    // A long one was still running when a woke: its guest was stopped,
    // not left to finish and be discarded.
    let long_on_a: Vec<i64> =
        taken_from_a.iter().copied().filter(|id| rows.iter().any(|r| r.id == *id && r.job == "long")).collect();
    assert!(!long_on_a.is_empty(), "a long run was taken from a: {taken_from_a:?}");
    for id in long_on_a {
        assert!(said(id, "the guest was stopped"), "a let run {id}'s guest run on; its log:\n{a_log}");
    }
    // And the hosts never ran one fire twice: the fast host too.
    let hosts_seen: BTreeSet<&str> = rows.iter().filter(|r| r.job == "tick").map(|r| r.host.as_str()).collect();
    assert!(hosts_seen.len() >= 2, "fires ran on several hosts: {hosts_seen:?}");
}
