//! `wasmcron run` end to end: the real binary on `@every 1s` schedules,
//! stopped with SIGTERM (grace, then cancel) or killed with SIGKILL and
//! restarted, with the state database checked after each.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use wasmcron::record::{RunRecord, RunStatus, Trigger};

use crate::support::{Sandbox, all_runs, describe, sleeper, text, wait_for};

pub struct Host {
    child: Child,
    log: std::path::PathBuf,
    /// Where its HTTP API listens: `127.0.0.1:PORT`.
    pub listen: String,
}

impl Host {
    pub fn start(sandbox: &Sandbox, extra: &[&str]) -> Host {
        Host::start_with(sandbox, extra, |command, _| command)
    }

    /// As [`Host::start`], with the command changed by `adapt` before it
    /// is spawned (its environment, a wrapper); `adapt` is also given the
    /// file the host's stderr goes to.
    pub fn start_with(
        sandbox: &Sandbox,
        extra: &[&str],
        adapt: impl FnOnce(std::process::Command, &std::path::Path) -> std::process::Command,
    ) -> Host {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = sandbox.path(&format!("host-{n}.log"));
        let file = std::fs::File::create(&log).unwrap();
        // Port 0 unless the test names one: the host binds a free port
        // itself and logs it, so parallel tests never race for one.
        let chosen = extra.iter().position(|arg| *arg == "--listen").map(|at| extra[at + 1].to_owned());
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        if chosen.is_none() {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        let mut command = sandbox.wasmcron(&args);
        command.stdout(Stdio::null()).stderr(file);
        let child = adapt(command, &log).spawn().unwrap();
        let mut host = Host { child, log, listen: chosen.unwrap_or_default() };
        if host.listen.is_empty() {
            host.listen = host.bound_address();
        }
        host
    }

    /// The address the host logged it listens on, once it has bound it
    /// (before it loads jobs); empty if it exited first.
    pub fn bound_address(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = log.lines().find(|line| line.contains("HTTP API listening")) {
                // Text (`address=…`) or JSON (`"address":"…"`) log lines.
                let address = line
                    .split_once("address=")
                    .map(|(_, rest)| rest.split_whitespace().next().unwrap_or(""))
                    .or_else(|| line.split_once("\"address\":\"").and_then(|(_, rest)| rest.split('"').next()))
                    .expect("the log names the address");
                return address.to_owned();
            }
            if !self.alive() {
                return String::new();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the host did not say where it listens within 30 s");
    }

    /// SIGKILL: no drain, no flush.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, signal) }, 0);
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then waits for a clean exit; returns the log.
    pub fn stop(self) -> String {
        self.signal(libc::SIGTERM);
        let (code, log) = self.wait(Duration::from_secs(20));
        assert_eq!(code, Some(0), "the host did not exit cleanly:\n{log}");
        log
    }

    /// Waits for the host to exit; returns its exit code and log.
    pub fn wait(mut self, within: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), std::fs::read_to_string(&self.log).unwrap());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the host did not exit within {within:?}; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count(runs: &[RunRecord], job: &str, status: RunStatus) -> usize {
    runs.iter().filter(|r| r.job == job && r.status == status).count()
}

#[test]
fn host_fires_on_schedule_and_the_cli_reads_along() {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("hello.wat");
    sandbox.declare("hello", "schedule = \"@every 1s\"");
    let host = Host::start(&sandbox, &["--log-format", "json"]);
    wait_for("three runs", Duration::from_secs(20), || count(&all_runs(&sandbox), "hello", RunStatus::Succeeded) >= 3);

    // The CLI reads the database while the host writes it.
    let output = sandbox.wasmcron(&["runs", "--job", "hello", "--json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert!(listed.len() >= 3);
    assert!(listed.iter().all(|r| r["trigger"] == "schedule"));
    let id = listed.iter().find(|r| r["status"] == "succeeded").unwrap()["id"].to_string();
    let output = sandbox.wasmcron(&["logs", &id]).output().unwrap();
    assert_eq!(text(&output.stdout), "hello from wasm\n");
    let output = sandbox.wasmcron(&["jobs"]).output().unwrap();
    let jobs = text(&output.stdout);
    assert!(jobs.contains("hello") && jobs.contains("@every 1s") && jobs.contains("succeeded"), "{jobs}");
    let output = sandbox.wasmcron(&["runs", "--status", "succeeded", "--limit", "2"]).output().unwrap();
    assert_eq!(text(&output.stdout).lines().count(), 3, "a header and two runs:\n{}", describe(&output));

    // Fires land on whole seconds (the schedule), one run each.
    let runs = all_runs(&sandbox);
    for run in &runs {
        assert_eq!(run.scheduled_for.timestamp_subsec_millis(), 0);
        let late = run.started_at.unwrap() - run.scheduled_for;
        assert!(late < chrono::Duration::seconds(1), "run {} started {late} late", run.id);
    }

    host.signal(libc::SIGTERM);
    let (code, log) = host.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    let ended: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "run ended")
        .collect();
    assert!(!ended.is_empty(), "{log}");
    for field in ["job", "run_id", "attempt", "outcome", "duration_ms"] {
        assert!(ended[0].get(field).is_some(), "{field} missing from {}", ended[0]);
    }
    assert!(log.contains("SIGTERM: shutting down"));
}

#[test]
fn sigterm_lets_short_runs_finish_and_cancels_long_ones_after_the_grace() {
    let sandbox = Sandbox::new();
    for (name, seconds) in [("short", 2), ("long", 3600)] {
        std::fs::write(sandbox.jobs().join(format!("{name}.wat")), sleeper(seconds)).unwrap();
        sandbox.declare(name, "schedule = \"@every 1s\"");
    }
    let host = Host::start(&sandbox, &["--grace", "4s"]);
    wait_for("both jobs running", Duration::from_secs(20), || {
        let runs = all_runs(&sandbox);
        count(&runs, "short", RunStatus::Running) == 1 && count(&runs, "long", RunStatus::Running) == 1
    });
    let stopped_at = Instant::now();
    host.signal(libc::SIGTERM);
    let (code, log) = host.wait(Duration::from_secs(20));
    let took = stopped_at.elapsed();
    assert_eq!(code, Some(0), "{log}");
    assert!(took >= Duration::from_secs(3), "the host waited {took:?}, less than the grace");
    let runs = all_runs(&sandbox);
    assert_eq!(count(&runs, "short", RunStatus::Succeeded), 1, "the short run finished within the grace");
    assert_eq!(count(&runs, "long", RunStatus::Cancelled), 1, "the long run was cancelled after it");
    assert!(runs.iter().all(|r| r.status != RunStatus::Running), "nothing is left running");
}

/// A module that takes a while to compile: many functions of loads,
/// arithmetic and stores.
pub(crate) fn slow_to_compile(functions: usize) -> String {
    let mut wat = String::from("(module\n  (memory (export \"memory\") 1)\n  (func (export \"_start\"))");
    for i in 0..functions {
        wat.push_str("\n  (func (param i32 i32) (result i32) (local i32) (loop $again");
        for step in 0..8 {
            let offset = (i * 32 + step * 4) % 4096;
            wat.push_str(&format!(
                " local.get 0 i32.load offset={offset} local.get 1 i32.add local.get 2 i32.xor local.set 2 \
                 local.get 0 local.get 2 i32.const {} i32.mul i32.store offset={offset}",
                i * 31 + step
            ));
        }
        wat.push_str(" local.get 1 i32.const 1 i32.sub local.tee 1 br_if $again) local.get 2)");
    }
    wat.push(')');
    wat
}

#[test]
fn sigterm_during_start_up_stops_the_host_cleanly() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("big.wat"), slow_to_compile(4000)).unwrap();
    sandbox.declare("big", "module = \"big.wat\"\nschedule = \"@every 1s\"");
    let host = Host::start(&sandbox, &[]);
    // The database is opened first thing, before the jobs are compiled.
    wait_for("the state database", Duration::from_secs(20), || sandbox.state().join("wasmcron.db").exists());
    host.signal(libc::SIGTERM);
    let (code, log) = host.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "killed by the signal instead of stopping:\n{log}");
    assert!(log.contains("SIGTERM: shutting down") && log.contains("wasmcron host stopped"), "{log}");
}

#[test]
fn sigkill_mid_run_loses_no_fire_and_runs_none_twice() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("work.wat"), sleeper(2)).unwrap();
    sandbox
        .declare("work", "schedule = \"@every 1s\"\noverlap = \"queue\"\n[retry]\nattempts = 2\nbackoff = \"250ms\"");

    let host = Host::start(&sandbox, &[]);
    wait_for("a run in flight and one pending", Duration::from_secs(20), || {
        let runs = all_runs(&sandbox);
        count(&runs, "work", RunStatus::Running) == 1 && count(&runs, "work", RunStatus::Pending) == 1
    });
    host.signal(libc::SIGKILL);
    let (code, _) = host.wait(Duration::from_secs(10));
    assert_eq!(code, None, "killed by a signal");
    let before = all_runs(&sandbox);
    let interrupted = before.iter().find(|r| r.status == RunStatus::Running).unwrap().id;
    let queued = before.iter().find(|r| r.status == RunStatus::Pending).unwrap().id;

    let host = Host::start(&sandbox, &[]);
    wait_for("the abandoned run's retry and the queued run to finish", Duration::from_secs(30), || {
        let runs = all_runs(&sandbox);
        let done = |id| runs.iter().any(|r| r.id == id && r.status == RunStatus::Succeeded);
        done(queued) && runs.iter().any(|r| r.trigger == Trigger::Retry && r.status == RunStatus::Succeeded)
    });
    host.signal(libc::SIGTERM);
    let (code, log) = host.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");

    let runs = all_runs(&sandbox);
    let status = |id| runs.iter().find(|r| r.id == id).unwrap().status;
    assert_eq!(status(interrupted), RunStatus::Abandoned);
    assert_eq!(status(queued), RunStatus::Succeeded, "the queued run survived the kill");
    assert!(runs.iter().all(|r| r.status != RunStatus::Running));

    // Every whole second from the first fire to the last has exactly one
    // record of its fire (run, queued, skipped or missed): none lost, none twice.
    let mut fires: BTreeMap<i64, Vec<RunStatus>> = BTreeMap::new();
    for run in runs.iter().filter(|r| matches!(r.trigger, Trigger::Schedule | Trigger::CatchUp)) {
        fires.entry(run.scheduled_for.timestamp()).or_default().push(run.status);
    }
    let (first, last) = (*fires.keys().next().unwrap(), *fires.keys().last().unwrap());
    for second in first..=last {
        let records = fires.get(&second).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(records.len(), 1, "fire at {second} has records {records:?}; all: {fires:?}");
    }
    let succeeded_retries =
        runs.iter().filter(|r| r.trigger == Trigger::Retry && r.status == RunStatus::Succeeded).count();
    assert_eq!(succeeded_retries, 1, "the abandoned run was retried once");
}

/// The run registry reaches runs of removed jobs: shutdown cancels them
/// after the grace period instead of waiting out their own timeout (5
/// minutes by default).
#[test]
fn sigterm_cancels_a_run_whose_job_was_removed_while_it_ran() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.jobs().join("orphan.wat"), sleeper(3600)).unwrap();
    sandbox.declare("orphan", "schedule = \"@every 1s\"");
    let host = Host::start(&sandbox, &["--grace", "1s"]);
    wait_for("a running run", Duration::from_secs(20), || {
        all_runs(&sandbox).iter().any(|r| r.status == RunStatus::Running)
    });
    std::fs::remove_file(sandbox.jobs().join("orphan.toml")).unwrap();
    std::fs::remove_file(sandbox.jobs().join("orphan.wat")).unwrap();
    wait_for("the job to be removed", Duration::from_secs(10), || {
        std::fs::read_to_string(&host.log).unwrap().contains("job removed")
    });
    let stopping = Instant::now();
    host.signal(libc::SIGTERM);
    let (code, log) = host.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    assert!(stopping.elapsed() < Duration::from_secs(15), "stopped after {:?}:\n{log}", stopping.elapsed());
    let runs = all_runs(&sandbox);
    assert!(runs.iter().all(|r| r.status == RunStatus::Cancelled), "{runs:?}");
}

/// A tmpfs of `size` mounted over `dir` for the life of the value.
struct SmallFilesystem(std::path::PathBuf);

impl SmallFilesystem {
    fn mount(dir: &std::path::Path, size: &str) -> SmallFilesystem {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a {size} tmpfs on {} needs root (CI runs as root)", dir.display());
        SmallFilesystem(dir.to_owned())
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The state folder on a real 3 MB filesystem, a job that writes 1 MB of
/// output a second: the disk fills within seconds. The host stays up,
/// records every run with its real outcome (dropping output it has no
/// room for, and saying so), recovers once there is room again, and
/// leaves nothing `running` for the next start to call abandoned.
#[test]
fn a_full_filesystem_never_stops_the_host_nor_turns_a_finished_run_into_an_abandoned_one() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Mounting needs root: CI runs as root; `faults.rs` covers a full
        // store portably (max_page_count) everywhere else.
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let sandbox = Sandbox::new();
    let _small = SmallFilesystem::mount(&sandbox.state(), "3m");
    let filler = sandbox.state().join("filler");
    std::fs::write(&filler, vec![0u8; 1_500_000]).unwrap();
    std::fs::write(sandbox.jobs().join("big.wat"), crate::support::MEBIBYTE_OUT).unwrap();
    sandbox.declare("big", "schedule = \"@every 1s\"\n[limits]\noutput = \"2MiB\"");
    let host = Host::start(&sandbox, &[]);
    wait_for("the store to fail", Duration::from_secs(30), || {
        std::fs::read_to_string(&host.log).unwrap().contains("the store is failing")
    });
    std::thread::sleep(Duration::from_secs(3));
    let mut host = host;
    assert!(host.alive(), "{}", std::fs::read_to_string(&host.log).unwrap());
    std::fs::remove_file(&filler).unwrap();
    wait_for("a full-sized outcome after the room came back", Duration::from_secs(30), || {
        let runs = all_runs(&sandbox);
        let dropped = runs.iter().position(|r| r.output_dropped > 0);
        dropped.is_some_and(|first| runs[first..].iter().any(|r| r.stdout.len() == 1 << 20))
    });
    let log = host.stop();
    assert_eq!(log.matches("the store is failing").count(), log.matches("the store takes writes again").count().max(1));
    let runs = all_runs(&sandbox);
    let dropped: Vec<&RunRecord> = runs.iter().filter(|r| r.output_dropped > 0).collect();
    assert!(!dropped.is_empty(), "the disk filled up, and some output had no room: {log}");
    for run in &dropped {
        assert!(run.error.as_deref().unwrap_or("").contains("captured output (1048576 bytes) dropped"), "{run:?}");
    }
    let real = |s: RunStatus| matches!(s, RunStatus::Succeeded | RunStatus::Missed | RunStatus::Skipped);
    assert!(runs.iter().all(|r| real(r.status)), "{:?}", runs.iter().map(|r| r.status).collect::<Vec<_>>());
    // The next start finds nothing the dead host left running.
    let restarted = Host::start(&sandbox, &[]);
    std::thread::sleep(Duration::from_secs(2));
    restarted.stop();
    assert!(all_runs(&sandbox).iter().all(|r| r.status != RunStatus::Abandoned));
}
