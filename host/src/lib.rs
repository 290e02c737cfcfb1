//! wasmcron: runs WebAssembly jobs on cron schedules, sandboxed by wasmtime.
//!
//! Modules, one per concern, with dependencies pointing one way:
//! `config` (TOML → `JobSpec`), `schedule` (cron text → pure `next_after`),
//! `runtime` (engines, compile, run → `RunOutcome`), `store` (one
//! interface; `store::sqlite` behind it), `registry` (declarations +
//! compiled modules), `watcher` (file events → debounced batches),
//! `scheduler` (timers, dispatch, retries, catch-up, reload; reached
//! through its `Handle`), `events` (run lifecycle observers), `metrics`
//! (the Prometheus observer behind `/metrics`), `jobhost`
//! (the job world's host calls), `api` (the HTTP control plane: routes,
//! tokens, the event stream), `systemd` (the notify protocol and the
//! journal, for `wasmcron run` as a service), `cli`. `schedule`, `store` and `runtime`
//! are leaves; `record` and `units` are shared vocabulary.

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod jobhost;
pub mod metrics;
pub mod record;
pub mod registry;
pub mod runtime;
pub mod schedule;
pub mod scheduler;
pub mod store;
pub mod systemd;
pub mod units;
pub mod watcher;
