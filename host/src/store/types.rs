//! What the store keeps and is asked for, as plain values: runs to record
//! and how they ended, queries, per-job state, retention. Shared by every
//! backend; no I/O here.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::record::{RunRecord, RunStatus, Trigger};

/// A run to record. `Pending` and `Running` rows are finished later;
/// `Skipped`, `Missed` and `Cancelled` rows are final as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    pub job: String,
    pub status: RunStatus,
    pub trigger: Trigger,
    pub attempt: u32,
    pub scheduled_for: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub module_sha256: Option<String>,
    pub payload: Vec<u8>,
    /// The run that started this one (job world `enqueue`, or a retry
    /// asked for by an operator), if any.
    pub parent_run: Option<i64>,
    /// A trigger's idempotency key: a second trigger of the same job with
    /// the same key is answered with the first run instead of a new one.
    pub idempotency_key: Option<String>,
    /// When a trigger was accepted (set by `trigger_run`): a run due later
    /// than this was delayed (`in`/`at`, `enqueue` with a delay).
    pub triggered_at: Option<DateTime<Utc>>,
}

impl NewRun {
    /// A first attempt of `job` due at `scheduled_for`, pending, with
    /// nothing else known yet; set the other fields with struct update syntax.
    pub fn pending(job: impl Into<String>, trigger: Trigger, scheduled_for: DateTime<Utc>) -> Self {
        NewRun {
            job: job.into(),
            status: RunStatus::Pending,
            trigger,
            attempt: 1,
            scheduled_for,
            started_at: None,
            ended_at: None,
            error: None,
            module_sha256: None,
            payload: Vec::new(),
            parent_run: None,
            idempotency_key: None,
            triggered_at: None,
        }
    }

    /// A fire that did not run (`Skipped` or `Missed`), final as written.
    pub fn not_run(
        job: impl Into<String>,
        status: RunStatus,
        scheduled_for: DateTime<Utc>,
        now: DateTime<Utc>,
        why: String,
    ) -> Self {
        NewRun {
            status,
            ended_at: Some(now),
            error: Some(why),
            ..NewRun::pending(job, Trigger::Schedule, scheduled_for)
        }
    }

    /// The run as the scheduler holds it once written with `id`: the one
    /// place a `PendingRun` is made from what was recorded.
    pub fn into_pending(self, id: i64) -> PendingRun {
        PendingRun {
            id,
            job: self.job,
            trigger: self.trigger,
            attempt: self.attempt,
            delayed: self.triggered_at.is_some_and(|at| self.scheduled_for > at),
            scheduled_for: self.scheduled_for,
            payload: self.payload,
        }
    }
}

/// How a run ended, to be written over its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub status: RunStatus,
    pub ended_at: DateTime<Utc>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub fuel_used: Option<u64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub output_dropped: u64,
}

impl Finished {
    /// Bytes this record holds in memory, roughly: what holding it costs.
    pub fn weight(&self) -> usize {
        self.stdout.len() + self.stderr.len() + self.error.as_ref().map_or(0, String::len) + 128
    }

    /// Drops the captured output, saying so in the record: what the host
    /// gives up first when it cannot write or hold a run's outcome.
    pub fn drop_output(&mut self, why: &str) {
        let dropped = (self.stdout.len() + self.stderr.len()) as u64;
        if dropped == 0 {
            return;
        }
        self.stdout.clear();
        self.stderr.clear();
        self.output_dropped += dropped;
        let note = format!("captured output ({dropped} bytes) dropped: {why}");
        self.error = Some(match self.error.take() {
            Some(error) => format!("{error}; {note}"),
            None => note,
        });
    }
}

/// A run that was accepted but has not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRun {
    pub id: i64,
    pub job: String,
    pub trigger: Trigger,
    pub attempt: u32,
    pub scheduled_for: DateTime<Utc>,
    pub payload: Vec<u8>,
    /// Triggered to start later than it was accepted: if its time came
    /// while the host was down, the job's catch-up policy decides.
    pub delayed: bool,
}

/// Which runs to list: every filter optional, newest first, `limit` at
/// most, strictly older than the `before` cursor (a run id) if given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunQuery {
    pub job: Option<String>,
    pub status: Option<RunStatus>,
    pub trigger: Option<Trigger>,
    /// Scheduled at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Scheduled before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Scheduled for this instant, to the millisecond (as the API shows
    /// times): with `job`, every attempt of one fire.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Text found in the job's name or the run's error (ignoring ASCII
    /// case), or a run id.
    pub search: Option<String>,
    pub before: Option<i64>,
    pub limit: u32,
}

/// A scheduled fire to record, with the overlap policy's verdict: to run
/// (`skipped` is `None`) or skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    pub job: String,
    pub scheduled_for: DateTime<Utc>,
    pub skipped: Option<String>,
    /// How the fire meets runs of its job on other hosts. One host's
    /// scheduler has decided already (`Allow`); a shared store decides
    /// the others with what every host is running.
    pub shared: SharedOverlap,
}

/// A shared store's overlap verdict on a fire (see `Fire::shared`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SharedOverlap {
    #[default]
    Allow,
    /// Recorded `skipped` if a run of the job is running or waiting.
    Skip,
    /// Recorded `skipped` if a run of the job is waiting already (one
    /// may wait behind the running one).
    Queue,
}

/// What recording a fire did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireRecorded {
    /// Recorded as this run.
    Run(i64),
    /// Not recorded: the job is paused (its watermark moves on all the same).
    Paused,
    /// Another host sharing the store recorded this fire first.
    Taken,
}

/// One job's catch-up: rows for the fires it missed or will run, and the
/// watermark up to which its fires are dealt with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUp {
    pub job: String,
    pub runs: Vec<NewRun>,
    pub last_fire: DateTime<Utc>,
}

/// What start-up recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Runs left `running` by a host that died, now `abandoned`.
    pub abandoned: Vec<RunRecord>,
    /// Accepted runs that have not started, the retries of abandoned runs
    /// among them, oldest first.
    pub pending: Vec<PendingRun>,
}

/// A job as the host loaded it (or failed to), for its state row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    /// In service on this module version. `first`: the job is new to this
    /// host, so its history starts now and a restart catches up from here.
    Loaded { job: String, module_sha256: String, first: bool },
    /// Its newest declaration or module does not load; an older version
    /// may stay in service.
    Failed { job: String, error: String },
}

/// What cancelling a run found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// It was pending: it is now `cancelled`.
    WasPending,
    /// It is past pending, with this status: nothing was changed.
    Not(RunStatus),
    /// No run has that id.
    NoSuchRun,
}

/// Per-job state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobState {
    /// Every fire up to this instant has been dealt with (run, skipped or missed).
    pub last_fire: Option<DateTime<Utc>>,
    pub paused: bool,
    /// Why, as whoever paused the job said; cleared on resume.
    pub paused_reason: Option<String>,
    /// The module version the host has in service, and since when.
    pub module_sha256: Option<String>,
    pub loaded_at: Option<DateTime<Utc>>,
    /// Why the newest declaration or module failed to load, while an older
    /// version stays in service; cleared by the next good load.
    pub load_error: Option<String>,
}

/// How much history to keep per job. Runs that did not succeed are kept
/// for `failed_max_age` instead of `max_age`; `max_count` caps each job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_count: u32,
    pub max_age: Duration,
    pub failed_max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_count: 1000,
            max_age: Duration::from_secs(30 * 86400),
            failed_max_age: Duration::from_secs(90 * 86400),
        }
    }
}

/// The most keys one job may hold in the key-value store.
pub const MAX_KEYS_PER_JOB: u32 = 10_000;

/// How long a trigger's idempotency key holds: within it, the same key for
/// the same job answers with the first run; after it, the key is free.
pub const KEY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);
