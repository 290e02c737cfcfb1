//! The scheduler's heartbeat for a supervisor's watchdog (systemd's
//! `WatchdogSec`): the actor's own loop beats on a real-time interval, so
//! a loop that wedges — stuck in a store call, a bug spinning in a
//! handler — stops beating, and the supervisor restarts the host. A
//! heartbeat from a task of its own would keep beating for a dead
//! scheduler; this one must never move off the loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};

/// Told, from the scheduler's loop, that the loop is turning.
pub trait Liveness: Send + Sync {
    fn alive(&self);
}

pub(super) struct Heartbeat {
    interval: Interval,
    liveness: Arc<dyn Liveness>,
}

impl Heartbeat {
    /// Beats every `every`, the first at once. Needs the tokio runtime's context.
    pub fn new(every: Duration, liveness: Arc<dyn Liveness>) -> Self {
        let mut interval = tokio::time::interval(every);
        // After a stall, one beat and then the usual pace: the supervisor
        // needs to hear that the loop turns again, not a burst of beats.
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Heartbeat { interval, liveness }
    }
}

/// Waits for the next beat and gives it; never resolves without a heartbeat.
pub(super) async fn beat(heartbeat: &mut Option<Heartbeat>) {
    let Some(heartbeat) = heartbeat else { return std::future::pending().await };
    heartbeat.interval.tick().await;
    heartbeat.liveness.alive();
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Liveness for Count {
        fn alive(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn beats_at_its_pace_and_once_after_a_stall() {
        let count = Arc::new(Count::default());
        let mut heartbeat = Some(Heartbeat::new(Duration::from_secs(5), count.clone()));
        let window = tokio::time::sleep(Duration::from_millis(10_001));
        tokio::pin!(window);
        loop {
            tokio::select! {
                () = beat(&mut heartbeat) => {}
                () = &mut window => break,
            }
        }
        assert_eq!(count.0.load(Ordering::Relaxed), 3, "at 0 s, 5 s and 10 s");
        // A loop that did not turn for a minute beats once when it does, then keeps the pace.
        tokio::time::advance(Duration::from_secs(60)).await;
        beat(&mut heartbeat).await;
        assert_eq!(count.0.load(Ordering::Relaxed), 4);
        let next = tokio::time::timeout(Duration::from_millis(4_900), beat(&mut heartbeat)).await;
        assert!(next.is_err(), "no burst of missed beats after the stall");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_heartbeat_never_resolves() {
        let never = tokio::time::timeout(Duration::from_secs(3600), beat(&mut None)).await;
        assert!(never.is_err());
    }
}
