//! `Handle`: how the rest of the host reaches a running scheduler — the
//! API, the job world's `enqueue`, the CLI's commands through the API.
//! Commands travel over a bounded channel and each is answered with a
//! typed result; the jobs view is a `watch` snapshot.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};

use super::view::JobsView;
use crate::record::RunStatus;

/// Commands waiting for the scheduler at most; senders wait beyond it.
pub(super) const COMMAND_QUEUE: usize = 1024;

#[derive(Clone)]
pub struct Handle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) view: watch::Receiver<JobsView>,
}

/// A run to start by request, now or at `at`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriggerRequest {
    pub job: String,
    /// The guest's stdin.
    pub payload: Vec<u8>,
    /// When to start it; now if absent (or past).
    pub at: Option<DateTime<Utc>>,
    /// A second request with the same key (for the same job) gets the
    /// first one's run instead of a new run.
    pub key: Option<String>,
}

/// A trigger's answer: the run, and whether this request created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Triggered {
    pub run_id: i64,
    pub created: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no job named {0:?} is loaded; see `wasmcron jobs`")]
    UnknownJob(String),
    #[error("{queued} triggered runs are already waiting, the most this host accepts (--max-queued); try again later")]
    QueueFull { queued: usize },
    #[error("the payload is {size} bytes; job {job:?} accepts at most {limit} (`[limits] payload` in its declaration)")]
    PayloadTooLarge { job: String, size: usize, limit: u64 },
    #[error("no run {0}; list runs with `wasmcron runs`")]
    NoSuchRun(i64),
    #[error("run {id} has already ended ({status})")]
    RunEnded { id: i64, status: RunStatus },
    #[error("run {id} has not ended yet ({status}); cancel it first, or wait for it")]
    RunNotEnded { id: i64, status: RunStatus },
    #[error("the store cannot take the run: {0}")]
    Store(String),
    #[error("the host is shutting down")]
    ShuttingDown,
}

/// The longest reason a pause may carry, in characters.
pub const MAX_PAUSE_REASON: usize = 500;

/// A pause reason as given: trimmed, none if blank; an error saying why
/// if it is too long or spans lines.
pub fn pause_reason(text: &str) -> Result<Option<String>, String> {
    let text = text.trim();
    if text.chars().count() > MAX_PAUSE_REASON {
        return Err(format!("the pause reason is {} characters; keep it to {MAX_PAUSE_REASON}", text.chars().count()));
    }
    if text.chars().any(char::is_control) {
        return Err("the pause reason must be one line of text, without control characters".into());
    }
    Ok(Some(text.to_owned()).filter(|text| !text.is_empty()))
}

impl CommandError {
    /// The stable code the API answers it with, and the reason a refused
    /// trigger is counted under.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::UnknownJob(_) => "unknown_job",
            CommandError::QueueFull { .. } => "queue_full",
            CommandError::PayloadTooLarge { .. } => "payload_too_large",
            CommandError::NoSuchRun(_) => "no_such_run",
            CommandError::RunEnded { .. } => "run_ended",
            CommandError::RunNotEnded { .. } => "run_not_ended",
            CommandError::Store(_) => "store_unavailable",
            CommandError::ShuttingDown => "shutting_down",
        }
    }
}

pub(super) type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

pub(super) enum Command {
    Trigger(TriggerRequest, Reply<Triggered>),
    Cancel(i64, Reply<()>),
    Retry(i64, Reply<i64>),
    Pause {
        job: String,
        paused: bool,
        reason: Option<String>,
        reply: Reply<()>,
    },
    /// The job world's `enqueue`: a run of `job` started by run `parent_run`.
    Enqueue {
        parent_run: i64,
        job: String,
        payload: Vec<u8>,
        delay: Duration,
        reply: Reply<i64>,
    },
}

impl Command {
    /// Whether it asks for a new run (a trigger, `enqueue` or retry).
    pub(super) fn is_trigger(&self) -> bool {
        matches!(self, Command::Trigger(..) | Command::Enqueue { .. } | Command::Retry(..))
    }

    /// Answers the command with `ShuttingDown`: what a draining scheduler does.
    pub(super) fn refuse(self) {
        fn no<T>(reply: Reply<T>) {
            let _ = reply.send(Err(CommandError::ShuttingDown));
        }
        match self {
            Command::Trigger(_, reply) => no(reply),
            Command::Cancel(_, reply) | Command::Pause { reply, .. } => no(reply),
            Command::Retry(_, reply) | Command::Enqueue { reply, .. } => no(reply),
        }
    }
}

impl Handle {
    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.map_err(|_| CommandError::ShuttingDown)?;
        answer.await.map_err(|_| CommandError::ShuttingDown)?
    }

    /// Starts a run of a job now or later; answers once the run is durably
    /// recorded.
    pub async fn trigger(&self, request: TriggerRequest) -> Result<Triggered, CommandError> {
        self.ask(|reply| Command::Trigger(request, reply)).await
    }

    /// Cancels a run: a running guest is stopped (recorded `cancelled`
    /// when it ends), a pending or delayed one never starts.
    pub async fn cancel(&self, run_id: i64) -> Result<(), CommandError> {
        self.ask(|reply| Command::Cancel(run_id, reply)).await
    }

    /// Starts a new run (attempt 1, trigger `manual`, with the same
    /// payload) of a run that has ended, recording it as the parent.
    pub async fn retry(&self, run_id: i64) -> Result<i64, CommandError> {
        self.ask(|reply| Command::Retry(run_id, reply)).await
    }

    /// Pauses (with an optional reason, shown while paused) or resumes `job`.
    pub async fn pause(&self, job: &str, paused: bool, reason: Option<String>) -> Result<(), CommandError> {
        self.ask(|reply| Command::Pause { job: job.to_owned(), paused, reason, reply }).await
    }

    /// A run of `job` enqueued by run `parent_run` (job world `enqueue`).
    pub async fn enqueue(
        &self,
        parent_run: i64,
        job: &str,
        payload: Vec<u8>,
        delay: Duration,
    ) -> Result<i64, CommandError> {
        self.ask(|reply| Command::Enqueue { parent_run, job: job.to_owned(), payload, delay, reply }).await
    }

    /// The jobs view, kept current by the scheduler.
    pub fn jobs(&self) -> watch::Receiver<JobsView> {
        self.view.clone()
    }
}
