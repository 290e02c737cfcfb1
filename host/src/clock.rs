//! The scheduler's clock: wall time to decide what is due, tokio time to
//! wait for it. `System` reads the real UTC clock; `Virtual` counts from a
//! fixed UTC origin on tokio's clock, so under a paused tokio runtime a test
//! can run days of schedule in milliseconds, and can make its wall clock
//! jump (`Clock::jump`) as a system clock set by hand or by NTP would.
//!
//! Wall time and tokio's monotonic time part when the wall clock jumps, so
//! no sleep toward a wall-clock instant is longer than `RECHECK`: after a
//! jump forward the caller finds what came due within that bound, rather
//! than after the whole monotonic wait.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// How much earlier than due the tokio timer is asked to wake: its
/// millisecond rounding, plus a thread wake-up and some slack for a busy
/// machine. The rest is slept precisely, blocking this thread.
const COARSE_SLACK: std::time::Duration = std::time::Duration::from_millis(2);

/// The longest a sleep toward a wall-clock instant lasts before the clock
/// is read again: how late a fire may notice a forward jump of the wall
/// clock (tokio's timer is monotonic and does not see it). Ten seconds
/// costs an idle host one wake-up each, and a day of virtual time 8,640.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// The system clock set off by a fixed amount: a host whose clock is
    /// wrong, for the cluster tests (`WASMCRON_CLOCK_SKEW`, seconds).
    Skewed(chrono::Duration),
    Virtual {
        origin: DateTime<Utc>,
        started: Instant,
        /// Microseconds the wall clock was moved by `jump`, shared by every
        /// clone (the scheduler's and its run tasks' copies see one clock).
        jumped: std::sync::Arc<std::sync::atomic::AtomicI64>,
    },
}

impl Clock {
    /// A virtual clock reading `origin` now, advancing with tokio's time.
    pub fn starting_at(origin: DateTime<Utc>) -> Clock {
        Clock::Virtual { origin, started: Instant::now(), jumped: Default::default() }
    }

    /// Moves a virtual clock's wall time by `by` (back if negative), for
    /// every clone of it, as if someone set the system clock; tokio's
    /// monotonic time goes on unchanged. Panics on any other clock: only
    /// tests jump clocks.
    pub fn jump(&self, by: chrono::Duration) {
        let Clock::Virtual { jumped, .. } = self else { panic!("only a virtual clock can be made to jump") };
        let micros = by.num_microseconds().expect("a jump of under 290,000 years");
        jumped.fetch_add(micros, std::sync::atomic::Ordering::SeqCst);
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
            Clock::Virtual { origin, started, jumped } => {
                let jumped = chrono::Duration::microseconds(jumped.load(std::sync::atomic::Ordering::SeqCst));
                *origin + chrono::Duration::from_std(started.elapsed()).unwrap_or(chrono::Duration::MAX) + jumped
            }
        }
    }

    /// Sleeps until the clock reads `at` (returns at once if it already
    /// does), or for `RECHECK` if that is sooner. After a wall-clock jump
    /// it may return early, or up to `RECHECK` late; the caller simply
    /// finds less or more due, and sleeps again if need be.
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        let Ok(wait) = (at - self.now()).to_std() else { return };
        if wait > RECHECK {
            return tokio::time::sleep(RECHECK).await;
        }
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

    #[tokio::test(start_paused = true)]
    async fn a_jump_moves_every_clone_of_a_virtual_clock_and_sleeps_notice_it() {
        let origin = DateTime::parse_from_rfc3339("2026-11-24T00:00:00Z").unwrap().with_timezone(&Utc);
        let clock = Clock::starting_at(origin);
        let clone = clock.clone();
        clock.jump(chrono::Duration::hours(-1));
        assert_eq!(clone.now(), origin - chrono::Duration::hours(1));
        // Sleeping toward a fire an hour away, the clock jumps a day on:
        // the sleep ends within RECHECK, not an hour of tokio time later.
        let sleeping = tokio::spawn({
            let clone = clone.clone();
            async move { clone.sleep_until(origin + chrono::Duration::hours(1)).await }
        });
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        clock.jump(chrono::Duration::days(1));
        let started = Instant::now();
        sleeping.await.unwrap();
        assert!(started.elapsed() <= RECHECK, "slept {:?} after the jump", started.elapsed());
    }

    #[tokio::test]
    async fn the_system_clock_never_wakes_early() {
        for micros in [0, 300, 1_500, 4_000] {
            let at = Utc::now() + chrono::Duration::microseconds(micros);
            Clock::System.sleep_until(at).await;
            assert!(Utc::now() >= at, "woke before {at} (asked for {micros} µs)");
        }
    }
}
