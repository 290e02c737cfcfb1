//! How a run ended, as a value: built once from wasmtime's result by
//! downcasting (`I32Exit`, `Trap::OutOfFuel`, `Trap::Interrupt`), then stored
//! and shown as it is.

use std::fmt;

use wasmtime::Trap;
use wasmtime_wasi::I32Exit;

use super::control::StopReason;
use crate::record::RunStatus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded,
    /// A non-zero exit code, or a trap (then `exit_code` is `None`).
    Failed {
        exit_code: Option<i32>,
        error: String,
    },
    TimedOut,
    OutOfFuel,
    Cancelled,
}

impl RunOutcome {
    /// The status the run is recorded with.
    pub fn status(&self) -> RunStatus {
        match self {
            RunOutcome::Succeeded => RunStatus::Succeeded,
            RunOutcome::Failed { .. } => RunStatus::Failed,
            RunOutcome::TimedOut => RunStatus::TimedOut,
            RunOutcome::OutOfFuel => RunStatus::OutOfFuel,
            RunOutcome::Cancelled => RunStatus::Cancelled,
        }
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self {
            RunOutcome::Succeeded => Some(0),
            RunOutcome::Failed { exit_code, .. } => *exit_code,
            _ => None,
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, RunOutcome::Succeeded)
    }

    /// Classifies the error a guest call ended with. `stopped` says whether
    /// the host stopped the run itself, and why.
    pub(crate) fn from_error(error: &wasmtime::Error, stopped: Option<StopReason>) -> Self {
        if let Some(exit) = error.downcast_ref::<I32Exit>() {
            return match exit.0 {
                0 => RunOutcome::Succeeded,
                code => RunOutcome::Failed { exit_code: Some(code), error: format!("exited with code {code}") },
            };
        }
        if let Some(super::run::GuestError(message)) = error.downcast_ref() {
            return RunOutcome::Failed { exit_code: None, error: message.clone() };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => RunOutcome::OutOfFuel,
            Some(Trap::Interrupt) => RunOutcome::from_stop(stopped.unwrap_or(StopReason::Cancelled)),
            _ => RunOutcome::Failed { exit_code: None, error: format!("{error:?}") },
        }
    }

    pub(crate) fn from_stop(reason: StopReason) -> Self {
        match reason {
            StopReason::TimedOut => RunOutcome::TimedOut,
            StopReason::Cancelled => RunOutcome::Cancelled,
        }
    }

    /// The error text stored with the run, if any.
    pub fn error(&self) -> Option<String> {
        match self {
            RunOutcome::Succeeded => None,
            RunOutcome::Failed { error, .. } => Some(error.clone()),
            RunOutcome::TimedOut => Some("stopped at limits.timeout".into()),
            RunOutcome::OutOfFuel => Some("ran out of fuel (limits.fuel)".into()),
            RunOutcome::Cancelled => Some("cancelled".into()),
        }
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunOutcome::Failed { error, .. } => write!(f, "failed: {error}"),
            other => f.write_str(other.status().as_str()),
        }
    }
}
