//! A run's stop switch: a deadline and a cancel flag, shared between the
//! caller (who may cancel), the epoch callback (which traps a guest spinning
//! in wasm) and the run's own future (which drops a guest parked in a host
//! call). Whoever stops the run first records why.
//!
//! Time is tokio's (`tokio::time::Instant`), so a paused test clock moves
//! deadlines too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    TimedOut,
    Cancelled,
}

const RUNNING: u8 = 0;
const TIMED_OUT: u8 = 1;
const CANCELLED: u8 = 2;

#[derive(Debug)]
struct Shared {
    deadline: Instant,
    cancel_requested: AtomicBool,
    stopped: AtomicU8,
    notify: Notify,
}

/// Cloneable handle to one run's stop switch.
#[derive(Debug, Clone)]
pub struct RunControl(Arc<Shared>);

impl RunControl {
    /// A switch whose deadline is `timeout` from now. Time is tokio's, so a
    /// paused test clock moves deadlines too.
    pub fn new(timeout: Duration) -> Self {
        RunControl(Arc::new(Shared {
            deadline: Instant::now() + timeout,
            cancel_requested: AtomicBool::new(false),
            stopped: AtomicU8::new(RUNNING),
            notify: Notify::new(),
        }))
    }

    /// Asks the run to stop; it ends `cancelled` within two epoch ticks.
    pub fn cancel(&self) {
        self.0.cancel_requested.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn deadline(&self) -> Instant {
        self.0.deadline
    }

    /// Decides, at `now`, whether the run must stop, and records why.
    pub(crate) fn check(&self, now: Instant) -> Option<StopReason> {
        if let Some(reason) = self.stopped() {
            return Some(reason);
        }
        if self.0.cancel_requested.load(Ordering::SeqCst) {
            Some(self.stop(StopReason::Cancelled))
        } else if now >= self.0.deadline {
            Some(self.stop(StopReason::TimedOut))
        } else {
            None
        }
    }

    /// Records `reason` unless another was recorded first; returns the winner.
    pub(crate) fn stop(&self, reason: StopReason) -> StopReason {
        let code = match reason {
            StopReason::TimedOut => TIMED_OUT,
            StopReason::Cancelled => CANCELLED,
        };
        match self.0.stopped.compare_exchange(RUNNING, code, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => reason,
            Err(_) => self.stopped().unwrap_or(reason),
        }
    }

    pub(crate) fn stopped(&self) -> Option<StopReason> {
        match self.0.stopped.load(Ordering::SeqCst) {
            TIMED_OUT => Some(StopReason::TimedOut),
            CANCELLED => Some(StopReason::Cancelled),
            _ => None,
        }
    }

    /// Resolves once `cancel` has been called.
    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Register before checking the flag, so a cancel in between is seen.
            notified.as_mut().enable();
            if self.0.cancel_requested.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}
