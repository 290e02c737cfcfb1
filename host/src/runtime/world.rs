//! The job world (`sdk/wit/job.wit`) on the host side: bindings generated
//! by `bindgen!`, and the host functions behind its imports. Storage and
//! queueing are not the runtime's business: they come from whoever runs the
//! job, through [`JobHost`], so this module stays a leaf.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::HasSelf;

use super::output::CapturedPipe;
use super::state::{GuestState, WasiP2};

wasmtime::component::bindgen!({
    path: "../sdk/wit",
    world: "job",
    imports: { default: async },
    exports: { default: async },
});

pub use wasmcron::job::log::Level;
pub use wasmcron::job::types::Context as JobContext;

pub type HostFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// What a job-world guest can ask of the host, for the job `job`.
pub trait JobHost: Send + Sync {
    fn kv_get<'a>(&'a self, job: &'a str, key: &'a str) -> HostFuture<'a, Option<Vec<u8>>>;
    fn kv_set<'a>(&'a self, job: &'a str, key: &'a str, value: Vec<u8>) -> HostFuture<'a, ()>;
    fn kv_delete<'a>(&'a self, job: &'a str, key: &'a str) -> HostFuture<'a, ()>;
    fn kv_list<'a>(&'a self, job: &'a str, prefix: &'a str) -> HostFuture<'a, Vec<String>>;
    /// Queues a run of `job`, with `parent_run` as its parent; returns its id.
    fn enqueue<'a>(&'a self, parent_run: i64, job: &'a str, payload: Vec<u8>, delay: Duration) -> HostFuture<'a, i64>;
}

/// A job world guest's view of the host: who it is, and where things go.
pub(crate) struct JobApi {
    pub host: Arc<dyn JobHost>,
    pub job: String,
    pub run_id: i64,
    /// Log lines are written to the run's captured stderr too.
    pub log: CapturedPipe,
    /// Calls this run has made that write (see `MAX_ENQUEUES_PER_RUN`,
    /// `MAX_KV_WRITES_PER_RUN`).
    pub used: RunBudget,
}

pub const MAX_KEY: usize = 512;
pub const MAX_VALUE: usize = 256 << 10;
/// Runs one run may enqueue. Fixed: a job that fans out wider should
/// enqueue runs that enqueue in turn. Each enqueue is a durable store
/// write, and a guest looping on it would otherwise fill the store and the
/// queue for every job within its timeout.
pub const MAX_ENQUEUES_PER_RUN: u32 = 1_000;
/// `kv.set` and `kv.delete` calls one run may make, for the same reason
/// (each is a committed SQLite write); fixed. Reads are not counted.
pub const MAX_KV_WRITES_PER_RUN: u32 = 10_000;

/// What one run has used of its per-run caps.
#[derive(Debug, Default)]
pub(crate) struct RunBudget {
    enqueues: std::sync::atomic::AtomicU32,
    kv_writes: std::sync::atomic::AtomicU32,
}

impl RunBudget {
    /// Counts one call against `cap`; the guest's error once it is used up.
    fn take(counter: &std::sync::atomic::AtomicU32, cap: u32, what: &str, api: &JobApi) -> Result<(), String> {
        let used = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if used < cap {
            return Ok(());
        }
        if used == cap {
            tracing::warn!(job = %api.job, run_id = api.run_id, cap, "{what}: the run's cap is used up");
        }
        Err(format!(
            "{what}: this run has made {cap} such calls, the most one run may (a fixed per-run limit \
             of the job world, not configurable; spread the work over more runs)"
        ))
    }
}

pub(crate) fn add_to_linker(linker: &mut wasmtime::component::Linker<GuestState<WasiP2>>) -> wasmtime::Result<()> {
    Job::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
}

impl GuestState<WasiP2> {
    fn api(&self) -> Result<&JobApi, String> {
        self.wasi.api.as_ref().ok_or_else(|| "this host offers no job world to this run".to_owned())
    }
}

impl wasmcron::job::types::Host for GuestState<WasiP2> {}

impl wasmcron::job::log::Host for GuestState<WasiP2> {
    async fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let Ok(api) = self.api() else { return };
        // Redacted before they are quoted below, which would hide a value
        // with a quote or backslash in it from the stream's redaction.
        let message = api.log.redact_text(&message);
        let fields: Vec<(String, String)> =
            fields.iter().map(|(key, value)| (api.log.redact_text(key), api.log.redact_text(value))).collect();
        let mut line = format!("[{}] {message}", level_name(level));
        for (key, value) in &fields {
            line.push_str(&format!(" {key}={value:?}"));
        }
        line.push('\n');
        api.log.write_line(line.as_bytes());
        let (job, run_id) = (api.job.as_str(), api.run_id);
        match level {
            Level::Trace => tracing::trace!(job, run_id, ?fields, "{message}"),
            Level::Debug => tracing::debug!(job, run_id, ?fields, "{message}"),
            Level::Info => tracing::info!(job, run_id, ?fields, "{message}"),
            Level::Warn => tracing::warn!(job, run_id, ?fields, "{message}"),
            Level::Error => tracing::error!(job, run_id, ?fields, "{message}"),
        }
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(format!("key of {} bytes: keys must be 1 to {MAX_KEY} bytes", key.len()));
    }
    Ok(())
}

impl wasmcron::job::kv::Host for GuestState<WasiP2> {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, String> {
        let api = self.api()?;
        check_key(&key)?;
        api.host.kv_get(&api.job, &key).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        let api = self.api()?;
        check_key(&key)?;
        if value.len() > MAX_VALUE {
            return Err(format!("value of {} bytes for {key:?}: values may be at most {MAX_VALUE} bytes", value.len()));
        }
        RunBudget::take(&api.used.kv_writes, MAX_KV_WRITES_PER_RUN, "kv.set", api)?;
        api.host.kv_set(&api.job, &key, value).await
    }

    async fn delete(&mut self, key: String) -> Result<(), String> {
        let api = self.api()?;
        check_key(&key)?;
        RunBudget::take(&api.used.kv_writes, MAX_KV_WRITES_PER_RUN, "kv.delete", api)?;
        api.host.kv_delete(&api.job, &key).await
    }

    async fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, String> {
        let api = self.api()?;
        api.host.kv_list(&api.job, &prefix).await
    }
}

impl wasmcron::job::queue::Host for GuestState<WasiP2> {
    async fn enqueue(&mut self, job: String, payload: Vec<u8>, delay_ms: u64) -> Result<i64, String> {
        let api = self.api()?;
        RunBudget::take(&api.used.enqueues, MAX_ENQUEUES_PER_RUN, "queue.enqueue", api)?;
        api.host.enqueue(api.run_id, &job, payload, Duration::from_millis(delay_ms)).await
    }
}
