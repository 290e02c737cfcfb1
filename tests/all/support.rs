//! Shared test plumbing: a temporary jobs/state folder per test, the
//! `wasmcron` command pointed at it, and guests built from source once per
//! test run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

/// Built guests; see [`guests`].
pub struct Guests {
    pub probe_p1: PathBuf,
    pub probe_p2: PathBuf,
    /// The job-world example plugin (a component).
    pub tidy: PathBuf,
}

/// Builds the guests (the test probe, for wasip1 and as a wasip2 component,
/// and the example plugins in every language) once for the whole test binary.
pub fn guests() -> &'static Guests {
    static GUESTS: OnceLock<Guests> = OnceLock::new();
    GUESTS.get_or_init(|| {
        let root = repo_root();
        toolchains();
        for target in ["wasm32-wasip1", "wasm32-wasip2"] {
            cargo_build(&root.join("tests/guests/Cargo.toml"), target);
        }
        // The example plugins, in every language, as `cargo xtask plugins` builds them.
        let output =
            Command::new("bash").arg(root.join("plugins/build.sh")).output().expect("running plugins/build.sh");
        assert!(output.status.success(), "building the example plugins failed:\n{}", describe(&output));
        let target = root.join("tests/guests/target");
        Guests {
            probe_p1: target.join("wasm32-wasip1/release/probe.wasm"),
            probe_p2: target.join("wasm32-wasip2/release/probe.wasm"),
            tidy: root.join("plugins/target/wasm32-wasip2/release/tidy.wasm"),
        }
    })
}

/// The hostile job-world guest (`tests/guests/flood`, a component), built
/// with the other test guests for wasm32-wasip2 only: without the example
/// plugins, which [`guests`] builds too.
pub fn flood() -> &'static Path {
    static FLOOD: OnceLock<PathBuf> = OnceLock::new();
    FLOOD.get_or_init(|| {
        toolchains();
        cargo_build(&repo_root().join("tests/guests/Cargo.toml"), "wasm32-wasip2");
        repo_root().join("tests/guests/target/wasm32-wasip2/release/flood.wasm")
    })
}

/// Installs what the tests build and check with, if missing (wasm targets,
/// clang + wasi-libc, Zig, promtool, the Prometheus Python client…), once
/// per test binary, so the suite runs on a machine with only the stable
/// Rust toolchain.
pub fn toolchains() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let script = repo_root().join(".ci/install-toolchains");
        let output = Command::new("bash").arg(script).output().expect("running bash");
        assert!(output.status.success(), "installing the test toolchains failed:\n{}", describe(&output));
    });
}

fn cargo_build(manifest: &Path, target: &str) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--quiet", "--release", "--target", target, "--manifest-path"])
        .arg(manifest)
        // The declarations name paths under each workspace's own target/.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("running cargo");
    assert!(
        output.status.success(),
        "building {} for {target} failed (is the target installed? `rustup target add {target}`):\n{}",
        manifest.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A temporary `jobs.d` and state folder for one test.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("jobs")).unwrap();
        Sandbox { dir }
    }

    pub fn jobs(&self) -> PathBuf {
        self.dir.path().join("jobs")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes `jobs/NAME.toml`.
    pub fn declare(&self, name: &str, toml: &str) {
        std::fs::write(self.jobs().join(format!("{name}.toml")), toml).unwrap();
    }

    /// Copies a fixture into `jobs/` as a bare module.
    pub fn add_fixture(&self, fixture_name: &str) {
        std::fs::copy(fixture(fixture_name), self.jobs().join(fixture_name)).unwrap();
    }

    /// `wasmcron ARGS --jobs … --state …`, with no inherited WASMCRON_* settings.
    pub fn wasmcron(&self, args: &[&str]) -> Command {
        let mut command = wasmcron();
        command.args(args).arg("--jobs").arg(self.jobs()).arg("--state").arg(self.state());
        command
    }

    /// Runs `wasmcron once JOB --json`; returns the record and the exit code.
    pub fn once_json(&self, job: &str) -> (Value, i32) {
        let output = self.wasmcron(&["once", job, "--json"]).output().unwrap();
        let code = output.status.code().unwrap();
        let record: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!("once {job} --json printed no record ({e}); exit {code}; stderr:\n{}", text(&output.stderr))
        });
        (record, code)
    }
}

/// A TCP port on loopback that nothing listens on just now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wasmcron() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmcron"));
    for var in
        ["WASMCRON_JOBS", "WASMCRON_STATE", "WASMCRON_LISTEN", "WASMCRON_LOG", "WASMCRON_TOKEN", "WASMCRON_TOKEN_FILE"]
    {
        command.env_remove(var);
    }
    command
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Stdout and stderr of a finished command, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", output.status.code(), text(&output.stdout), text(&output.stderr))
}

/// Seconds between a record's `started_at` and `ended_at`.
pub fn run_seconds(record: &Value) -> f64 {
    let time = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(record[field].as_str().unwrap_or_else(|| panic!("{field} in {record}")))
            .unwrap()
    };
    (time("ended_at") - time("started_at")).num_milliseconds() as f64 / 1000.0
}

/// A TOML string literal for a path.
pub fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// WAT for a guest that sleeps `seconds` in `poll_oneoff` (on tokio's clock,
/// so virtual under a paused runtime), then exits 0.
pub fn sleeper(seconds: u64) -> String {
    let bytes: String = (seconds * 1_000_000_000).to_le_bytes().iter().map(|b| format!("\\{b:02x}")).collect();
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\01\00\00\00")
  (data (i32.const 24) "{bytes}")
  (func (export "_start") (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#
    )
}

/// WAT for a guest that prints "TAG start", sleeps `millis`, and prints
/// "TAG end": a module whose version shows in its output.
pub fn versioned(tag: &str, millis: u64) -> String {
    let le =
        |n: u64, width: usize| -> String { n.to_le_bytes()[..width].iter().map(|b| format!("\\{b:02x}")).collect() };
    let (start, end) = (format!("{tag} start\n"), format!("{tag} end\n"));
    let escape = |text: &str| -> String { text.bytes().map(|b| format!("\\{b:02x}")).collect() };
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{}{}")
  (data (i32.const 8) "{}{}")
  (data (i32.const 64) "{}")
  (data (i32.const 128) "{}")
  (data (i32.const 272) "\01\00\00\00")
  (data (i32.const 280) "{}")
  (func (export "_start")
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 200)))
    (drop (call $poll (i32.const 256) (i32.const 320) (i32.const 1) (i32.const 384)))
    (drop (call $write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 200)))))"#,
        le(64, 4),
        le(start.len() as u64, 4),
        le(128, 4),
        le(end.len() as u64, 4),
        escape(&start),
        escape(&end),
        le(millis * 1_000_000, 8),
    )
}

/// Runs `work` against the sandbox's store, opened as the host opens it,
/// on a small runtime of its own (for tests that are not async).
pub fn with_store<T>(sandbox: &Sandbox, work: impl AsyncFnOnce(std::sync::Arc<dyn wasmcron::store::Store>) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let url = wasmcron::store::StoreUrl::resolve(None, &sandbox.state()).unwrap();
        work(url.open().await.unwrap()).await
    })
}

/// Every run in the sandbox's state database, oldest first (none if no database yet).
pub fn all_runs(sandbox: &Sandbox) -> Vec<wasmcron::record::RunRecord> {
    if !sandbox.state().join("wasmcron.db").exists() {
        return Vec::new();
    }
    let query = wasmcron::store::RunQuery { limit: 100_000, ..Default::default() };
    let mut runs = with_store(sandbox, async |store| store.runs(query).await.unwrap());
    runs.reverse();
    runs
}

/// Polls `ready` until it holds, failing the test after `within`.
pub fn wait_for(what: &str, within: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}

/// A guest that copies its stdin (a trigger's payload) to stdout.
pub const ECHO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (loop $more
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 65536))
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (if (i32.gt_u (i32.load (i32.const 8)) (i32.const 0))
        (then
          (i32.store (i32.const 16) (i32.const 1024))
          (i32.store (i32.const 20) (i32.load (i32.const 8)))
          (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
          (br $more))))))"#;

/// A guest that writes 1 MiB of `x` to stdout (declare `limits.output`
/// above 1 MiB to keep it all).
pub const MEBIBYTE_OUT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 18)
  (func (export "_start")
    (memory.fill (i32.const 65536) (i32.const 120) (i32.const 1048576))
    (i32.store (i32.const 0) (i32.const 65536))
    (i32.store (i32.const 4) (i32.const 1048576))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
