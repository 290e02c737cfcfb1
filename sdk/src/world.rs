//! Jobs of the wasmcron job world (`sdk/wit/job.wit`), for `wasm32-wasip2`.
//!
//! Implement [`Job`] and name the type in [`job!`](crate::job); the macro
//! exports it as the world's `run`. From inside `run`, [`log`], [`kv`] and
//! [`enqueue`] reach the host.
//!
//! ```ignore
//! use wasmcron_sdk::world::{Context, Job, kv, log};
//!
//! struct Tidy;
//!
//! impl Job for Tidy {
//!     fn run(ctx: &Context, _payload: &[u8]) -> Result<(), String> {
//!         let cursor = kv::get_string("cursor")?.unwrap_or_default();
//!         log::info("tidying", &[("from", &cursor)]);
//!         kv::set("cursor", ctx.scheduled_at.as_bytes())
//!     }
//! }
//!
//! wasmcron_sdk::job!(Tidy);
//! ```

use std::time::Duration;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "job",
        pub_export_macro: true,
        default_bindings_module: "wasmcron_sdk::world::bindings",
    });
}

use bindings::wasmcron::job;

pub use crate::Trigger;

/// The facts of the current run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub job: String,
    pub run_id: i64,
    pub attempt: u32,
    pub trigger: Trigger,
    /// When the run was due, RFC 3339 in UTC.
    pub scheduled_at: String,
}

#[doc(hidden)]
impl From<job::types::Context> for Context {
    fn from(context: job::types::Context) -> Self {
        Context {
            job: context.job,
            run_id: context.run_id,
            attempt: context.attempt,
            trigger: Trigger::parse(&context.trigger),
            scheduled_at: context.scheduled_at,
        }
    }
}

/// A job of the world: its `run` does the work; an `Err` fails the run
/// with that message.
pub trait Job {
    fn run(ctx: &Context, payload: &[u8]) -> Result<(), String>;
}

/// Exports `$job` (a type implementing [`Job`]) as this component's `run`.
#[macro_export]
macro_rules! job {
    ($job:ty) => {
        struct __WasmcronJob;

        impl $crate::world::bindings::Guest for __WasmcronJob {
            fn run(
                context: $crate::world::bindings::wasmcron::job::types::Context,
                payload: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<(), ::std::string::String> {
                <$job as $crate::world::Job>::run(&context.into(), &payload)
            }
        }

        $crate::world::bindings::export!(__WasmcronJob);
    };
}

/// Structured logging into the run's record and the host's log.
pub mod log {
    use super::job::log::{Level, log};

    fn emit(level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        log(level, message, &fields);
    }

    pub fn debug(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Debug, message, fields)
    }

    pub fn info(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Info, message, fields)
    }

    pub fn warn(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Warn, message, fields)
    }

    pub fn error(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Error, message, fields)
    }
}

/// Key-value state kept by the host for this job alone.
pub mod kv {
    use super::job::kv;

    pub fn get(key: &str) -> Result<Option<Vec<u8>>, String> {
        kv::get(key)
    }

    /// The value of `key` as UTF-8 text.
    pub fn get_string(key: &str) -> Result<Option<String>, String> {
        get(key)?
            .map(|bytes| String::from_utf8(bytes).map_err(|_| format!("the value of {key:?} is not UTF-8")))
            .transpose()
    }

    pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), String> {
        kv::set(key, value.as_ref())
    }

    pub fn delete(key: &str) -> Result<(), String> {
        kv::delete(key)
    }

    /// Keys starting with `prefix`, in order.
    pub fn list(prefix: &str) -> Result<Vec<String>, String> {
        kv::list_keys(prefix)
    }
}

/// Queues a run of `job` with `payload`, after `delay`; returns its run id.
pub fn enqueue(job: &str, payload: impl AsRef<[u8]>, delay: Duration) -> Result<i64, String> {
    job::queue::enqueue(job, payload.as_ref(), delay.as_millis() as u64)
}
