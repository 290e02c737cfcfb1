//! `wasmcron run` as a systemd service: the notify protocol, spoken by the
//! real binary to a datagram socket set as `NOTIFY_SOCKET` (as systemd
//! sets it, with `WATCHDOG_USEC` and `WATCHDOG_PID`); log lines without
//! their own timestamp when stderr is the journal; and the unit in
//! `dist/systemd`, checked by `systemd-analyze` where it is installed.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::Host;
use crate::support::Sandbox;

/// The watchdog period the tests give the host: it should ping every 0.5 s.
const WATCHDOG_USEC: u64 = 1_000_000;

/// The service manager's end of the notify protocol.
struct NotifySocket {
    socket: UnixDatagram,
}

impl NotifySocket {
    fn bind(path: &Path) -> NotifySocket {
        NotifySocket { socket: UnixDatagram::bind(path).unwrap() }
    }

    /// The next message, if one comes before `deadline`.
    fn next_before(&self, deadline: Instant) -> Option<String> {
        let wait = deadline.checked_duration_since(Instant::now())?.max(Duration::from_millis(1));
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut buffer = [0; 4096];
        let length = self.socket.recv(&mut buffer).ok()?;
        Some(String::from_utf8_lossy(&buffer[..length]).into_owned())
    }

    /// Every message until `deadline`, each with when it came.
    fn collect_until(&self, deadline: Instant) -> Vec<(Instant, String)> {
        std::iter::from_fn(|| self.next_before(deadline).map(|message| (Instant::now(), message))).collect()
    }

    /// Reads until a message with the line `line` comes; returns it and
    /// the messages before it.
    fn wait_for_line(&self, line: &str, within: Duration) -> (String, Vec<String>) {
        let deadline = Instant::now() + within;
        let mut before = Vec::new();
        while let Some(message) = self.next_before(deadline) {
            if message.lines().any(|l| l == line) {
                return (message, before);
            }
            before.push(message);
        }
        panic!("no {line} within {within:?}; messages meanwhile: {before:?}");
    }
}

/// The host's command as systemd would start it for `Type=notify` with a
/// watchdog: `NOTIFY_SOCKET`, `WATCHDOG_USEC`, and `WATCHDOG_PID` naming
/// the host's own pid (a shell that `exec`s it keeps its pid).
fn under_systemd(host: Command, log: &Path, socket: &Path) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(r#"WATCHDOG_PID=$$ exec "$0" "$@""#).arg(host.get_program()).args(host.get_args());
    for (key, value) in host.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command.env("NOTIFY_SOCKET", socket).env("WATCHDOG_USEC", WATCHDOG_USEC.to_string());
    command.stdout(Stdio::null()).stderr(std::fs::File::options().append(true).open(log).unwrap());
    command
}

/// The status code of `GET PATH` on the host, over plain HTTP/1.1.
fn get_status(host: &Host, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&host.listen).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: wasmcron\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("{answer}"))
}

fn pings(messages: &[(Instant, String)]) -> Vec<Instant> {
    messages.iter().filter(|(_, message)| message.lines().any(|l| l == "WATCHDOG=1")).map(|(at, _)| *at).collect()
}

/// The longest time between two of `times`, or from `from` to the first,
/// or from the last to `to`.
fn longest_gap(from: Instant, times: &[Instant], to: Instant) -> Duration {
    let mut all = vec![from];
    all.extend_from_slice(times);
    all.push(to);
    all.windows(2).map(|pair| pair[1].saturating_duration_since(pair[0])).max().unwrap()
}

/// A host with a job firing every second, started as systemd starts a
/// `Type=notify` service with a watchdog, and the socket it notifies.
fn hello_under_systemd() -> (Sandbox, NotifySocket, Host) {
    let sandbox = Sandbox::new();
    sandbox.add_fixture("hello.wat");
    sandbox.declare("hello", "schedule = \"@every 1s\"");
    let notify = NotifySocket::bind(&sandbox.path("notify.sock"));
    let socket = sandbox.path("notify.sock");
    let host = Host::start_with(&sandbox, &[], |command, log| under_systemd(command, log, &socket));
    (sandbox, notify, host)
}

#[test]
fn ready_once_serving_then_status_watchdog_pings_and_stopping_at_sigterm() {
    let (_sandbox, notify, host) = hello_under_systemd(); // the sandbox outlives the host

    let (ready, _) = notify.wait_for_line("READY=1", Duration::from_secs(30));
    // Told ready only once it is: the API answers and the scheduler runs.
    assert_eq!(get_status(&host, "/readyz"), 200, "READY=1 came before /readyz answered 200");
    let status = |l: &str| l.starts_with("STATUS=1 job, ") && l.ends_with(" queued");
    assert!(ready.lines().any(status), "READY=1 comes with the status: {ready}");

    let window = Duration::from_secs(4);
    let from = Instant::now();
    let messages = notify.collect_until(from + window);
    let pings = pings(&messages);
    // Every 0.5 s: about 8 in the window. Generous bounds: a loaded
    // machine may delay some, and none may come as often as 0.1 s apart.
    assert!((4..=20).contains(&pings.len()), "{} pings in {window:?}, expected about 8: {messages:?}", pings.len());
    assert!(messages.iter().all(|(_, m)| !m.contains("READY=1")), "READY=1 is sent once: {messages:?}");
    assert!(messages.iter().any(|(_, m)| m.lines().any(status)), "the status follows the runs: {messages:?}");

    host.signal(libc::SIGTERM);
    let (stopping, _) = notify.wait_for_line("STOPPING=1", Duration::from_secs(20));
    assert!(stopping.contains("STATUS=stopping"), "{stopping}");
    let (code, log) = host.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("systemd watchdog: the scheduler pings it"), "{log}");
}

#[test]
fn a_scheduler_stuck_on_the_store_stops_pinging_the_watchdog_until_it_moves_again() {
    let (sandbox, notify, host) = hello_under_systemd();
    notify.wait_for_line("READY=1", Duration::from_secs(30));
    notify.wait_for_line("WATCHDOG=1", Duration::from_secs(5));

    // Another process holds the database's write lock: the scheduler's
    // next fire waits on the store (up to its 10 s busy timeout), and
    // its loop with it. Only the loop pings, so the pings stop.
    let database = rusqlite::Connection::open(sandbox.state().join("wasmcron.db")).unwrap();
    database.busy_timeout(Duration::from_secs(10)).unwrap();
    database.execute_batch("BEGIN IMMEDIATE").unwrap();
    let locked = Instant::now();
    let held = notify.collect_until(locked + Duration::from_secs(5));
    database.execute_batch("ROLLBACK").unwrap();
    let released = Instant::now();
    let after = notify.collect_until(released + Duration::from_secs(3));

    // The next fire comes within a second of the lock, so for the last 4 s
    // of the 5 the loop is stuck: a gap of 2 s is four missed pings.
    let gap = longest_gap(locked, &pings(&held), released);
    assert!(
        gap >= Duration::from_secs(2),
        "pings went on while the scheduler was stuck (longest gap {gap:?}): {held:?}"
    );
    assert!(pings(&after).len() >= 2, "no pings once the store answered again: {after:?}");
    host.stop();
}

/// The log of a host started and stopped with `JOURNAL_STREAM` set: to
/// the device and inode of its own stderr (as systemd sets it when stderr
/// is the journal) if `journal`, else of another file.
fn log_under_journal_stream(format: &str, journal: bool) -> String {
    use std::os::unix::fs::MetadataExt;
    let sandbox = Sandbox::new();
    let elsewhere = sandbox.path("elsewhere.log");
    std::fs::write(&elsewhere, "").unwrap();
    let host = Host::start_with(&sandbox, &["--log-format", format], |mut command, log| {
        let stream = std::fs::metadata(if journal { log } else { &elsewhere }).unwrap();
        command.env("JOURNAL_STREAM", format!("{}:{}", stream.dev(), stream.ino()));
        command
    });
    host.stop()
}

fn starts_with_a_timestamp(line: &str) -> bool {
    line.split_whitespace().next().is_some_and(|first| chrono::DateTime::parse_from_rfc3339(first).is_ok())
}

#[test]
fn log_lines_carry_no_timestamp_of_their_own_when_stderr_is_the_journal() {
    let journal = log_under_journal_stream("text", true);
    assert!(journal.contains("wasmcron host started"), "{journal}");
    assert!(!journal.lines().any(starts_with_a_timestamp), "the journal stamps lines itself:\n{journal}");

    let json = log_under_journal_stream("json", true);
    let lines: Vec<serde_json::Value> = json.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(lines.iter().any(|line| line["message"] == "wasmcron host started"), "{json}");
    assert!(lines.iter().all(|line| line.get("timestamp").is_none()), "{json}");

    // A stderr that is not the stream JOURNAL_STREAM names (a wrapper
    // redirected it) is not the journal: the lines keep their time.
    let redirected = log_under_journal_stream("text", false);
    assert!(redirected.lines().all(starts_with_a_timestamp), "{redirected}");
}

/// The most `systemd-analyze security` may score the unit (0 is best, 10 worst).
const MAX_EXPOSURE: f64 = 2.5;

fn systemd_analyze(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("systemd-analyze").args(args).output() {
        Ok(output) => Some(output),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => panic!("running systemd-analyze: {error}"),
    }
}

/// `dist/systemd/wasmcron.service`, copied into `dir` with `ExecStart`
/// pointed at the binary under test (`verify` checks that it exists).
fn unit_under_test(dir: &Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(crate::support::repo_root().join("dist/systemd/wasmcron.service")).unwrap();
    let binary = env!("CARGO_BIN_EXE_wasmcron");
    assert!(unit.contains("\nExecStart=/usr/local/bin/wasmcron run\n"), "the unit's ExecStart changed:\n{unit}");
    let unit = unit.replace("\nExecStart=/usr/local/bin/wasmcron ", &format!("\nExecStart={binary} "));
    let path = dir.join("wasmcron.service");
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn the_unit_is_notify_and_hardened_and_systemd_analyze_agrees() {
    let text = std::fs::read_to_string(crate::support::repo_root().join("dist/systemd/wasmcron.service")).unwrap();
    let settings: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
    for wanted in [
        "Type=notify",
        "WatchdogSec=30s",
        "DynamicUser=yes",
        "StateDirectory=wasmcron",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
    ] {
        assert!(settings.contains(&wanted), "the unit lacks {wanted}");
    }
    // The JIT maps the code it compiles executable.
    assert!(!settings.iter().any(|line| line.starts_with("MemoryDenyWriteExecute")));
    assert!(text.contains("#LoadCredential="), "the unit shows how secrets come in");

    let sandbox = Sandbox::new();
    let unit = unit_under_test(sandbox.dir.path());
    let unit = unit.to_str().unwrap();
    let Some(verified) = systemd_analyze(&["verify", unit]) else {
        eprintln!("note: systemd-analyze is not installed here; the unit was not verified");
        return;
    };
    let complaints: Vec<_> = crate::support::text(&verified.stderr)
        .lines()
        .filter(|l| l.contains("wasmcron.service"))
        .map(String::from)
        .collect();
    assert!(
        verified.status.success() && complaints.is_empty(),
        "systemd-analyze verify: {}",
        crate::support::describe(&verified)
    );

    let security = systemd_analyze(&["security", "--offline=true", unit]).unwrap();
    let report = crate::support::text(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|line| line.split_once("Overall exposure level for wasmcron.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in: {}", crate::support::describe(&security)));
    assert!(exposure <= MAX_EXPOSURE, "exposure {exposure} is over {MAX_EXPOSURE}:\n{report}");
}
