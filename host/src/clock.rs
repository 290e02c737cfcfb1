//! The scheduler's clock: wall time to decide what is due, tokio time to
//! wait for it. `System` reads the real UTC clock; `Virtual` counts from a
//! fixed UTC origin on tokio's clock, so under a paused tokio runtime a test
//! can run days of schedule in milliseconds.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// How much earlier than due the tokio timer is asked to wake: its
/// millisecond rounding, plus a thread wake-up and some slack for a busy
/// machine. The rest is slept precisely, blocking this thread.
const COARSE_SLACK: std::time::Duration = std::time::Duration::from_millis(2);

#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// The system clock set off by a fixed amount: a host whose clock is
    /// wrong, for the cluster tests (`WASMCRON_CLOCK_SKEW`, seconds).
    Skewed(chrono::Duration),
    Virtual {
        origin: DateTime<Utc>,
        started: Instant,
    },
}

impl Clock {
    /// A virtual clock reading `origin` now, advancing with tokio's time.
    pub fn starting_at(origin: DateTime<Utc>) -> Clock {
        Clock::Virtual { origin, started: Instant::now() }
    }

    /// The system clock, or one set off by `WASMCRON_CLOCK_SKEW` seconds
    /// (a test knob: it makes a host's clock wrong on purpose).
    pub fn from_env() -> Result<Clock, String> {
        let Ok(text) = std::env::var("WASMCRON_CLOCK_SKEW") else { return Ok(Clock::System) };
        let seconds: i64 = text.trim().trim_start_matches('+').parse().map_err(|_| {
            format!("WASMCRON_CLOCK_SKEW={text:?}: not a whole number of seconds; write e.g. 180 or -180, or unset it")
        })?;
        Ok(Clock::Skewed(chrono::Duration::seconds(seconds)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Skewed(by) => Utc::now() + *by,
            Clock::Virtual { origin, started } => {
                *origin + chrono::Duration::from_std(started.elapsed()).unwrap_or(chrono::Duration::MAX)
            }
        }
    }

    /// Sleeps until the clock reads `at` (returns at once if it already does).
    /// After a wall-clock jump it may return early or late; the caller
    /// simply finds less or more due.
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        let Ok(wait) = (at - self.now()).to_std() else { return };
        if matches!(self, Clock::Virtual { .. }) {
            return tokio::time::sleep(wait).await;
        }
        // tokio's timer counts whole milliseconds and rounds up, which
        // would make every fire up to 1 ms late. Sleep on it to within
        // `COARSE_SLACK` of `at`, then the rest on this thread, which the
        // OS wakes within microseconds. `wasmcron run` drives the scheduler
        // with `block_on` on the main thread, so this blocks no tokio worker.
        if let Some(coarse) = wait.checked_sub(COARSE_SLACK) {
            tokio::time::sleep(coarse).await;
        }
        // At most the slack: after a wall-clock jump back the rest could be
        // hours, and the caller should find out and sleep again instead.
        if let Ok(rest) = (at - self.now()).to_std() {
            std::thread::sleep(rest.min(COARSE_SLACK));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_system_clock_never_wakes_early() {
        for micros in [0, 300, 1_500, 4_000] {
            let at = Utc::now() + chrono::Duration::microseconds(micros);
            Clock::System.sleep_until(at).await;
            assert!(Utc::now() >= at, "woke before {at} (asked for {micros} µs)");
        }
    }
}
