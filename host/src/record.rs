//! The vocabulary of run history, shared by `runtime` (which produces
//! outcomes) and `store` (which keeps them): triggers, statuses and the run
//! record that `once --json` and `runs --json` print. Plain data, no I/O.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

/// Why a run started; the guest sees it as `WASMCRON_TRIGGER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    CatchUp,
    Retry,
    Manual,
}

/// Where a run is in its life, or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    OutOfFuel,
    Cancelled,
    Abandoned,
    Skipped,
    Missed,
}

macro_rules! words {
    ($ty:ident $label:literal { $($variant:ident => $word:literal),* $(,)? }) => {
        impl $ty {
            pub const ALL: &[$ty] = &[$($ty::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $word),* }
            }
        }

        impl FromStr for $ty {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($word => Ok($ty::$variant),)*
                    _ => Err(format!(
                        "{text:?} is not a {}; use one of {}",
                        $label,
                        [$($word),*].join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

words!(Trigger "trigger" { Schedule => "schedule", CatchUp => "catch-up", Retry => "retry", Manual => "manual" });
words!(RunStatus "status" {
    Pending => "pending",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    TimedOut => "timed_out",
    OutOfFuel => "out_of_fuel",
    Cancelled => "cancelled",
    Abandoned => "abandoned",
    Skipped => "skipped",
    Missed => "missed",
});

/// One run as recorded. Field names are the contract of `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub job: String,
    pub status: RunStatus,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub attempt: u32,
    pub trigger: Trigger,
    #[serde(serialize_with = "rfc3339")]
    pub scheduled_for: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub ended_at: Option<DateTime<Utc>>,
    pub fuel_used: Option<u64>,
    pub module_sha256: Option<String>,
    #[serde(serialize_with = "lossy_text")]
    pub stdout: Vec<u8>,
    #[serde(serialize_with = "lossy_text")]
    pub stderr: Vec<u8>,
    /// Bytes of output dropped past `limits.output`.
    pub output_dropped: u64,
    /// The run that enqueued this one (job world `enqueue`), if any.
    pub parent_run: Option<i64>,
}

/// The one text form of instants in records, the database and the CLI.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn rfc3339<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*time))
}

fn rfc3339_opt<S: Serializer>(time: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => rfc3339(time, s),
        None => s.serialize_none(),
    }
}

fn lossy_text<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>(), Ok(*status));
        }
        for trigger in Trigger::ALL {
            assert_eq!(trigger.as_str().parse::<Trigger>(), Ok(*trigger));
        }
        let error = "done".parse::<RunStatus>().unwrap_err();
        assert!(error.contains("\"done\" is not a status; use one of pending, running"), "{error}");
    }
}
