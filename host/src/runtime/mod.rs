//! The sandbox: engines, compilation and runs.
//!
//! How guests are run: one process-wide pair of engines (see `engine`),
//! each job compiled once into an `InstancePre` (see `compile`), and every
//! run instantiated into a fresh `Store` whose WASI context is built from
//! the job's declaration alone — no inherited environment, stdio or files,
//! and no network but what it grants (see `network`) — with memory capped,
//! output captured up to a budget, fuel metered if the job asks, and a
//! deadline and cancel switch enforced by epoch interruption (see `run`).
//! A job's secrets are read at each run start and redacted from all it
//! leaves behind (see `secrets`, `redact`). Runs are futures on the caller's tokio
//! runtime; compilation is blocking work and belongs on a blocking thread.
//!
//! This module is a leaf: it knows declarations (`config`) and the record
//! vocabulary (`record`), nothing of storage or scheduling.

mod cache;
mod compile;
mod control;
mod engine;
mod network;
mod outcome;
mod output;
mod redact;
mod run;
mod secrets;
mod state;
mod ticker;
mod world;

use anyhow::Result;
use wasmtime::Engine;
use wasmtime::Linker;
use wasmtime::component::Linker as ComponentLinker;
use wasmtime_wasi::p1::WasiP1Ctx;

pub use cache::{CompileCache, Provenance};
pub(crate) use compile::hex;
pub use compile::{CompileError, CompiledJob, NetworkImports};
pub use control::{RunControl, StopReason};
pub use outcome::RunOutcome;
pub use run::{RunContext, RunReport};
pub use secrets::CredentialDirs;
pub use ticker::EPOCH_TICK;
pub use world::{HostFuture, JobHost, MAX_KEY, MAX_VALUE};

use state::{GuestState, WasiP2};
use ticker::Ticker;

/// An engine with its linkers for modules (WASI p1) and components (WASI p2).
pub(crate) struct EngineSet {
    engine: Engine,
    /// Names this engine's code in the compile cache.
    key: String,
    modules: Linker<GuestState<WasiP1Ctx>>,
    components: ComponentLinker<GuestState<WasiP2>>,
}

impl EngineSet {
    fn cache_entry(&self, module_sha256: &str, kind: &str) -> String {
        cache::entry_name(module_sha256, &self.key, kind)
    }

    fn new(metered: bool) -> Result<Self> {
        let engine = engine::build_engine(metered)?;
        let mut modules = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut modules, |state: &mut GuestState<WasiP1Ctx>| &mut state.wasi)?;
        let mut components = ComponentLinker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut components)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut components)?;
        network::add_name_lookup_to_linker(&mut components)?;
        world::add_to_linker(&mut components)?;
        Ok(EngineSet { key: cache::engine_key(&engine), engine, modules, components })
    }
}

/// The process's sandbox: create one and share it.
pub struct Runtime {
    unmetered: EngineSet,
    metered: EngineSet,
    /// Advances both engines' epochs while a guest runs.
    ticker: Ticker,
    /// Where `credential:` secrets are read from (see `secrets`).
    credentials: CredentialDirs,
    /// The longest a module may take to compile (see `compile`).
    compile_timeout: std::time::Duration,
}

/// The compile time limit unless `--compile-timeout` says otherwise: far
/// above what a real job takes (well under a second for most, a few
/// seconds for the largest), low enough that a hostile module cannot hold
/// a load or `check` for minutes.
pub const DEFAULT_COMPILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Runtime {
    pub fn new() -> Result<Self> {
        let (unmetered, metered) = (EngineSet::new(false)?, EngineSet::new(true)?);
        let ticker = Ticker::start(&[&unmetered.engine, &metered.engine]);
        Ok(Runtime {
            unmetered,
            metered,
            ticker,
            credentials: CredentialDirs::default(),
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
        })
    }

    /// The same runtime with `limit` as its compile time limit.
    pub fn with_compile_timeout(mut self, limit: std::time::Duration) -> Self {
        self.compile_timeout = limit;
        self
    }

    fn engines(&self, metered: bool) -> &EngineSet {
        if metered { &self.metered } else { &self.unmetered }
    }
}
