//! The sandbox target: random valid modules from `wasm-smith`, some
//! importing the WASI functions the host offers and some importing nothing,
//! each exporting `_start`, compiled and run by the real runtime under
//! small fuel, memory, output and time limits. Every run must end in a
//! typed outcome within its deadline, with its output inside its budget;
//! the host must not panic or abort (libFuzzer's `-rss_limit_mb` and the
//! replay test's resident-set check bound its memory).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arbitrary::{Result, Unstructured};
use wasm_smith::{Config, Module};

use crate::config::JobSpec;
use crate::runtime::{RunContext, RunControl, RunOutcome, Runtime};

/// The limits every generated module runs under.
pub const MEMORY: u64 = 16 << 20;
pub const OUTPUT: u64 = 4 << 10;
pub const TIMEOUT: Duration = Duration::from_millis(200);
pub const FUEL: u64 = 2_000_000;

/// A run that outlives its deadline by more than this is a failure: the
/// epoch ticks every 5 ms, but the machine may be busy.
const DEADLINE_SLACK: Duration = Duration::from_secs(5);

/// The WASI preview 1 functions a generated module may import, with the
/// signatures the host's linker gives them.
const WASI_IMPORTS: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
)"#;

/// What a generated module must export: a WASI command's `_start`, with or
/// without the `memory` the WASI calls write into.
const EXPORTS: [&str; 2] =
    [r#"(module (func (export "_start")))"#, r#"(module (memory (export "memory") 1 256) (func (export "_start")))"#];

struct Sandbox {
    runtime: Runtime,
    tokio: tokio::runtime::Runtime,
    imports: Vec<u8>,
    exports: [Vec<u8>; 2],
}

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox {
        runtime: Runtime::new().expect("the runtime starts"),
        tokio: tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime"),
        imports: wat::parse_str(WASI_IMPORTS).expect("valid"),
        exports: EXPORTS.map(|text| wat::parse_str(text).expect("valid")),
    })
}

/// The features wasmcron's engines run (wasmtime's defaults as the host
/// builds it: no GC, reference types, threads, exceptions or memory64),
/// and sizes that keep a case small.
fn config(input: &mut Unstructured, sandbox: &Sandbox) -> Result<Config> {
    let wasi = input.arbitrary::<bool>()?;
    let memory_export = input.arbitrary::<bool>()?;
    let mut config = Config {
        available_imports: wasi.then(|| sandbox.imports.clone()),
        // Without the WASI list wasm-smith would invent imports no host
        // offers: every module would be refused at link time.
        max_imports: if wasi { 100 } else { 0 },
        exports: Some(sandbox.exports[usize::from(memory_export)].clone()),
        // The pool takes one memory per instance; an exported one is it.
        max_memories: usize::from(!memory_export),
        max_tables: 1,
        max_table_elements: 1_000,
        max_memory32_bytes: 64 << 20,
        max_funcs: 50,
        max_instructions: 2_000,
        max_data_segments: 10,
        max_element_segments: 10,
        max_elements: 100,
        gc_enabled: false,
        threads_enabled: false,
        exceptions_enabled: false,
        memory64_enabled: false,
        custom_page_sizes_enabled: false,
        wide_arithmetic_enabled: false,
        shared_everything_threads_enabled: false,
        // externref needs wasmtime's `gc` feature, which the host leaves out.
        reference_types_enabled: false,
        simd_enabled: input.arbitrary()?,
        relaxed_simd_enabled: false,
        tail_call_enabled: false,
        canonicalize_nans: false,
        ..Config::default()
    };
    config.bulk_memory_enabled = true;
    config.multi_value_enabled = true;
    config.saturating_float_to_int_enabled = true;
    config.sign_extension_ops_enabled = true;
    Ok(config)
}

/// Generates one module from `data`, runs it, checks the outcome.
pub fn sandbox_run(data: &[u8]) {
    let sandbox = sandbox();
    let mut input = Unstructured::new(data);
    let Ok(config) = config(&mut input, sandbox) else { return };
    let Ok(module) = Module::new(config, &mut input) else { return };
    let metered = input.arbitrary::<bool>().unwrap_or(false);
    let payload = input.take_rest().to_vec();
    run_module(sandbox, &module.to_bytes(), metered, payload);
}

/// How the runs of this process ended, for the short run to show what the
/// generated modules reached: not compiled, succeeded, failed with an exit
/// code, trapped, timed out, out of fuel, output over budget.
static TALLY: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];
const TALLY_NAMES: [&str; 7] =
    ["not compiled", "succeeded", "exited non-zero", "trapped", "timed out", "out of fuel", "output dropped"];

/// The tally so far, as one line.
pub fn sandbox_tally() -> String {
    let counts = TALLY.iter().zip(TALLY_NAMES).map(|(count, name)| format!("{} {name}", count.load(Ordering::Relaxed)));
    counts.collect::<Vec<_>>().join(", ")
}

fn count(index: usize) {
    TALLY[index].fetch_add(1, Ordering::Relaxed);
}

fn run_module(sandbox: &Sandbox, bytes: &[u8], metered: bool, payload: Vec<u8>) {
    // A module that does not compile (the engine lacks a feature, or its
    // imports cannot be met) is refused with a typed error, as at load.
    let Ok(compiled) = sandbox.runtime.compile(bytes, metered) else { return count(0) };
    let mut spec = JobSpec::for_bare_module("fuzz".to_owned(), "/fuzz/jobs.d/fuzz.wasm".into());
    spec.limits.memory = MEMORY;
    spec.limits.output = OUTPUT;
    spec.limits.timeout = TIMEOUT;
    spec.limits.fuel = metered.then_some(FUEL);
    let control = RunControl::new(TIMEOUT);
    let started = Instant::now();
    let report =
        sandbox.tokio.block_on(sandbox.runtime.run(&compiled, &spec, &RunContext::manual(1, payload), &control));
    let took = started.elapsed();
    // A module whose memory starts above the cap cannot be instantiated.
    if initial_memory(bytes) > MEMORY {
        assert!(
            matches!(report.outcome, RunOutcome::Failed { exit_code: None, .. }),
            "a module needing {} bytes at start ran under a {MEMORY}-byte cap: {:?}",
            initial_memory(bytes),
            report.outcome
        );
    }
    assert!(took < TIMEOUT + DEADLINE_SLACK, "a run took {took:?} under a {TIMEOUT:?} timeout: {:?}", report.outcome);
    let captured = (report.stdout.len() + report.stderr.len()) as u64;
    // The budget, plus the one line that says how much was dropped.
    assert!(captured <= OUTPUT + 256, "{captured} bytes captured over a {OUTPUT}-byte budget");
    if report.output_dropped > 0 {
        count(6);
    }
    match &report.outcome {
        RunOutcome::OutOfFuel => {
            assert!(metered, "an unmetered run ran out of fuel");
            count(5);
        }
        RunOutcome::Cancelled => panic!("nothing cancelled this run"),
        RunOutcome::Failed { error, exit_code } => {
            assert!(!error.is_empty(), "a failure without a message");
            count(if exit_code.is_some() { 2 } else { 3 });
        }
        RunOutcome::Succeeded => count(1),
        RunOutcome::TimedOut => count(4),
    }
    if let Some(fuel) = report.fuel_used {
        assert!(metered && fuel <= FUEL, "fuel used {fuel} of {FUEL} (metered: {metered})");
    }
}

/// The bytes of linear memory a module declares it starts with.
fn initial_memory(bytes: &[u8]) -> u64 {
    let mut total = 0;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let Ok(wasmparser::Payload::MemorySection(memories)) = payload {
            total += memories.into_iter().flatten().map(|memory| memory.initial << 16).sum::<u64>();
        }
    }
    total
}

/// This process's resident set now and at its peak, in KiB (Linux).
pub fn resident_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status.lines().find_map(|line| line.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
