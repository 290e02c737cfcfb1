//! The scheduler's clock: wall time to decide what is due, tokio time to
//! wait for it. `System` reads the real UTC clock; `Virtual` counts from a
//! fixed UTC origin on tokio's clock, so under a paused tokio runtime a test
//! can run days of schedule in milliseconds.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub enum Clock {
    System,
    Virtual { origin: DateTime<Utc>, started: Instant },
}

impl Clock {
    /// A virtual clock reading `origin` now, advancing with tokio's time.
    pub fn starting_at(origin: DateTime<Utc>) -> Clock {
        Clock::Virtual { origin, started: Instant::now() }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Virtual { origin, started } => {
                *origin + chrono::Duration::from_std(started.elapsed()).unwrap_or(chrono::Duration::MAX)
            }
        }
    }

    /// Sleeps until the clock reads `at` (returns at once if it already does).
    /// After a wall-clock jump the caller simply finds less or more due.
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        if let Ok(wait) = (at - self.now()).to_std() {
            tokio::time::sleep(wait).await;
        }
    }
}
