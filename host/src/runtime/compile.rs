//! Bytes → a `CompiledJob`, ready to instantiate: WAT text is assembled,
//! modules and components are told apart by their header, compiled on the
//! engine the job needs, and linked once into an `InstancePre` — which is
//! where an import the host cannot satisfy is found, at load, not at run.

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, InstancePre, Module};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;

use super::cache::{self, CompileCache, Provenance};
use super::state::{GuestState, WasiP2};
use super::world::JobPre;
use super::{EngineSet, Runtime};

/// A module or component compiled and linked, shared by all its runs.
pub struct CompiledJob {
    pub(crate) kind: GuestKind,
    /// Hex SHA-256 of the bytes as read from disk.
    pub sha256: String,
    pub metered: bool,
    /// Which network interfaces a component imports (a module imports none).
    pub network_imports: NetworkImports,
}

/// The network a component is built to use: it may import `wasi:http` or
/// `wasi:sockets` whether or not its declaration grants anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkImports {
    /// `wasi:http/outgoing-handler`.
    pub http: bool,
    /// `wasi:sockets/tcp-create-socket` or `ip-name-lookup`.
    pub tcp: bool,
}

impl NetworkImports {
    fn of(component: &Component, engine: &Engine) -> Self {
        let mut imports = NetworkImports::default();
        for (name, _) in component.component_type().imports(engine) {
            imports.http |= name.starts_with("wasi:http/outgoing-handler");
            imports.tcp |=
                name.starts_with("wasi:sockets/tcp-create-socket") || name.starts_with("wasi:sockets/ip-name-lookup");
        }
        imports
    }
}

pub(crate) enum GuestKind {
    /// A WASI preview 1 command module (exports `_start`).
    Command(InstancePre<GuestState<WasiP1Ctx>>),
    /// A WASI preview 2 command component (exports `wasi:cli/run`).
    Component(CommandPre<GuestState<WasiP2>>),
    /// A component of the wasmcron job world (exports `run`).
    Job(JobPre<GuestState<WasiP2>>),
}

impl CompiledJob {
    /// `command module` or `command component`, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            GuestKind::Command(_) => "WASI command module",
            GuestKind::Component(_) => "WASI command component",
            GuestKind::Job(_) => "wasmcron job component",
        }
    }

    /// The engine it was compiled on.
    pub(crate) fn engine(&self) -> &Engine {
        match &self.kind {
            GuestKind::Command(pre) => pre.module().engine(),
            GuestKind::Component(pre) => pre.engine(),
            GuestKind::Job(pre) => pre.engine(),
        }
    }
}

/// Why bytes could not become a runnable job. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(
        "is not WebAssembly: it is neither a wasm binary nor WAT text ({0}); build the job for wasm32-wasip1 or wasm32-wasip2"
    )]
    NotWasm(String),
    #[error("is not valid WebAssembly: {0:#}")]
    Invalid(wasmtime::Error),
    #[error(
        "took longer than the compile time limit ({}) to compile; make the module smaller, or raise the limit with --compile-timeout (WASMCRON_COMPILE_TIMEOUT)",
        crate::units::format_duration(*.0)
    )]
    TooSlow(std::time::Duration),
    #[error(
        "cannot be linked: {0:#}. A job may import only WASI (wasi_snapshot_preview1, or wasi:* 0.2 for components, wasi:http included)"
    )]
    Unlinkable(wasmtime::Error),
    #[error(
        "has no `_start` export, so it is not a WASI command; build it as a program with a `main` (e.g. cargo build --target wasm32-wasip1)"
    )]
    NoStart,
    #[error(
        "is a component but neither a WASI command (exporting wasi:cli/run) nor a wasmcron job (the world in sdk/wit, exporting run): {0:#}"
    )]
    NotCommand(wasmtime::Error),
}

impl Runtime {
    /// Compiles `bytes` (binary or WAT) for a job that is metered or not.
    /// CPU-heavy: call it off the async workers.
    pub fn compile(&self, bytes: &[u8], metered: bool) -> Result<CompiledJob, CompileError> {
        self.compile_cached(bytes, &hex(&Sha256::digest(bytes)), metered, None).map(|(job, _)| job)
    }

    /// As [`compile`](Self::compile), for `bytes` whose SHA-256 (hex) the
    /// caller has already taken; reuses and fills `cache` if given.
    pub fn compile_cached(
        &self,
        bytes: &[u8],
        sha256: &str,
        metered: bool,
        cache: Option<&CompileCache>,
    ) -> Result<(CompiledJob, Provenance), CompileError> {
        let binary = if bytes.starts_with(b"\0asm") {
            std::borrow::Cow::Borrowed(bytes)
        } else {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| CompileError::NotWasm("no \\0asm header, and not UTF-8 text".into()))?;
            std::borrow::Cow::Owned(wat::parse_str(text).map_err(|e| CompileError::NotWasm(e.to_string()))?)
        };
        let engines: &EngineSet = self.engines(metered);
        let engine = engines.engine.clone();
        let (kind, provenance, network_imports) = if wasmparser::Parser::is_component(&binary) {
            let (component, provenance) = cache::load_or_compile(
                cache,
                &engines.cache_entry(sha256, "component"),
                // SAFETY: cache entries are written only by this host into its
                // private state folder, and wasmtime checks their compatibility.
                |path| unsafe { Component::deserialize_file(&engines.engine, path) }.ok(),
                || within_limit(&engine, &binary, self.compile_timeout, |engine, bytes| Component::new(engine, bytes)),
                Component::serialize,
            )?;
            let network_imports = NetworkImports::of(&component, &engines.engine);
            let pre = engines.components.instantiate_pre(&component).map_err(CompileError::Unlinkable)?;
            // The job world first: a job may also carry a `main` it does not use.
            let kind = match JobPre::new(pre.clone()) {
                Ok(job) => GuestKind::Job(job),
                Err(_) => GuestKind::Component(CommandPre::new(pre).map_err(CompileError::NotCommand)?),
            };
            (kind, provenance, network_imports)
        } else {
            let (module, provenance) = cache::load_or_compile(
                cache,
                &engines.cache_entry(sha256, "module"),
                // SAFETY: as above.
                |path| unsafe { Module::deserialize_file(&engines.engine, path) }.ok(),
                || within_limit(&engine, &binary, self.compile_timeout, |engine, bytes| Module::new(engine, bytes)),
                Module::serialize,
            )?;
            if module.get_export("_start").is_none() {
                return Err(CompileError::NoStart);
            }
            let pre = engines.modules.instantiate_pre(&module).map_err(CompileError::Unlinkable)?;
            (GuestKind::Command(pre), provenance, NetworkImports::default())
        };
        Ok((CompiledJob { kind, sha256: sha256.to_owned(), metered, network_imports }, provenance))
    }
}

/// Compiles `binary` with `compile` on a thread of its own, waiting at most
/// `limit`. Cranelift cannot be stopped midway: past the limit the thread
/// is left to finish and its code is dropped, so a module that is slow to
/// compile costs one core for a while, but never holds up a load or
/// `check` for longer than the limit.
fn within_limit<T: Send + 'static>(
    engine: &Engine,
    binary: &[u8],
    limit: std::time::Duration,
    compile: fn(&Engine, &[u8]) -> wasmtime::Result<T>,
) -> Result<T, CompileError> {
    let (sender, answer) = std::sync::mpsc::sync_channel(1);
    let (engine, binary) = (engine.clone(), binary.to_vec());
    std::thread::Builder::new()
        .name("wasmcron-compile".into())
        .spawn(move || {
            let _ = sender.send(compile(&engine, &binary));
        })
        .map_err(|e| CompileError::Invalid(wasmtime::Error::new(e).context("starting a compile thread")))?;
    match answer.recv_timeout(limit) {
        Ok(compiled) => compiled.map_err(CompileError::Invalid),
        Err(_) => Err(CompileError::TooSlow(limit)),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
