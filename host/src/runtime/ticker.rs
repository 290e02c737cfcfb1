//! The epoch ticker: one thread per `Runtime` that advances both engines'
//! epochs every `EPOCH_TICK`, so the epoch callback (see `run`) can trap a
//! guest spinning in wasm once its deadline passes or a cancel comes.
//!
//! It ticks only while guests run. Ticking for the life of the process
//! woke an idle host 200 times a second for nothing — about 5,500 wake-ups
//! in 28 s with one daily job. So `Runtime::run` holds a [`Running`] guard
//! for the length of each run: the first one wakes the thread, which ticks
//! until a second (`LINGER_TICKS`) has passed with no guard alive (each
//! dropped however its run ended, or with its future), then parks.
//!
//! The thread ends when its `Runtime` is dropped (the `Ticker`'s drop wakes
//! it to notice), or — as it always has — when every engine is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::Duration;

use wasmtime::{Engine, EngineWeak};

/// How often the epoch advances while a guest runs. A spinning guest is
/// checked at every tick, so cancellation and timeouts land within two ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Ticks the ticker goes on for once no guest runs, before it parks: a
/// busy host's guests come and go thousands of times a second, and parking
/// between them cost 13% of throughput at `max_running` 256 (measured);
/// an idle host still sleeps, a second after its last run.
const LINGER_TICKS: u32 = 200;

#[derive(Debug, Default)]
struct Shared {
    /// Guests running now, counted by their `Running` guards.
    running: AtomicUsize,
    /// The `Runtime` is gone: no run can start again.
    closed: AtomicBool,
    /// Ticks so far, for tests.
    ticks: AtomicU64,
}

/// The `Runtime`'s handle on its ticker thread.
#[derive(Debug)]
pub(crate) struct Ticker {
    shared: Arc<Shared>,
    thread: Thread,
}

/// Keeps the ticker ticking while it lives: held by one run.
#[derive(Debug)]
pub(crate) struct Running<'a>(&'a Ticker);

impl Ticker {
    /// Starts a parked ticker thread for `engines`. It holds weak
    /// references, so it keeps no engine alive.
    pub(crate) fn start(engines: &[&Engine]) -> Ticker {
        let engines: Vec<EngineWeak> = engines.iter().map(|e| e.weak()).collect();
        let shared = Arc::new(Shared::default());
        let ticking = shared.clone();
        let thread = thread::Builder::new()
            .name("wasmcron-epoch".into())
            .spawn(move || tick_while_running(&ticking, &engines))
            .expect("spawning the epoch ticker thread");
        Ticker { shared, thread: thread.thread().clone() }
    }

    /// Counts a guest as running until the guard is dropped, waking the
    /// ticker if it was the only one.
    pub(crate) fn running(&self) -> Running<'_> {
        if self.shared.running.fetch_add(1, Ordering::SeqCst) == 0 {
            self.thread.unpark();
        }
        Running(self)
    }

    #[cfg(test)]
    pub(crate) fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::SeqCst)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.shared.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// The ticker thread's loop. An `unpark` that comes before the `park` it is
/// meant for is not lost: `park` then returns at once.
fn tick_while_running(shared: &Shared, engines: &[EngineWeak]) {
    // Ticks in a row with no guest running; starts past the linger, so a
    // new ticker is parked until the first run.
    let mut idle = LINGER_TICKS;
    loop {
        while shared.running.load(Ordering::SeqCst) == 0 && idle >= LINGER_TICKS {
            if shared.closed.load(Ordering::SeqCst) {
                return;
            }
            thread::park();
            idle = 0;
        }
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        thread::sleep(EPOCH_TICK);
        idle = if shared.running.load(Ordering::SeqCst) == 0 { idle + 1 } else { 0 };
        let mut alive = false;
        for engine in engines.iter().filter_map(EngineWeak::upgrade) {
            engine.increment_epoch();
            alive = true;
        }
        if !alive {
            return;
        }
        shared.ticks.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, mpsc};
    use std::task::Poll;
    use std::time::Duration;

    use super::{EPOCH_TICK, LINGER_TICKS};
    use crate::config::JobSpec;
    use crate::runtime::{RunContext, RunControl, RunOutcome, Runtime};

    /// Spins in wasm without calling the host: only an epoch tick stops it.
    const SPIN_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $forever (br $forever))))"#;

    /// Sleeps an hour in `poll_oneoff`: parked in the host, no ticks needed.
    const SLEEP_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\01\00\00\00")
  (data (i32.const 24) "\00\a0\8b\30\46\03\00\00")
  (func (export "_start") (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#;

    fn spin_job() -> JobSpec {
        JobSpec::for_bare_module("spin".into(), "spin.wat".into())
    }

    /// Runs the spinner until `timeout` on a thread of its own. Were the
    /// ticker asleep it would spin for ever, so give up after a minute
    /// rather than hang the suite.
    fn spin_until(runtime: &Arc<Runtime>, timeout: Duration) -> RunOutcome {
        let runtime = runtime.clone();
        let (done, outcome) = mpsc::channel();
        std::thread::spawn(move || {
            let compiled = runtime.compile(SPIN_WAT.as_bytes(), false).unwrap();
            let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let control = RunControl::new(timeout);
            let report =
                tokio.block_on(runtime.run(&compiled, &spin_job(), &RunContext::manual(1, Vec::new()), &control));
            let _ = done.send(report.outcome);
        });
        outcome.recv_timeout(Duration::from_secs(60)).expect("the spinning guest was never stopped")
    }

    #[test]
    fn ticks_only_while_a_guest_runs() {
        let runtime = Arc::new(Runtime::new().unwrap());
        std::thread::sleep(EPOCH_TICK * 20);
        assert_eq!(runtime.ticker.ticks(), 0, "no guest has run yet");

        assert_eq!(spin_until(&runtime, Duration::from_millis(50)), RunOutcome::TimedOut);
        let ended = runtime.ticker.ticks();
        assert!(ended > 0, "the deadline was seen at a tick");

        // It lingers for `LINGER_TICKS`, then parks: no tick after that.
        std::thread::sleep(EPOCH_TICK * (LINGER_TICKS + 40));
        let parked = runtime.ticker.ticks();
        assert!(parked - ended <= u64::from(LINGER_TICKS) + 1, "{} ticks after the run", parked - ended);
        std::thread::sleep(EPOCH_TICK * 40);
        let idle = runtime.ticker.ticks();
        assert_eq!(idle, parked, "ticks while idle, past the linger");

        assert_eq!(spin_until(&runtime, Duration::from_millis(50)), RunOutcome::TimedOut, "the ticker woke");
        assert!(runtime.ticker.ticks() > idle);
    }

    #[test]
    fn a_run_dropped_midway_stops_counting() {
        let runtime = Runtime::new().unwrap();
        let compiled = runtime.compile(SLEEP_WAT.as_bytes(), false).unwrap();
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let job = JobSpec::for_bare_module("sleep".into(), "sleep.wat".into());
        let (context, control) = (RunContext::manual(1, Vec::new()), RunControl::new(Duration::from_secs(3600)));
        let run = runtime.run(&compiled, &job, &context, &control);
        let running = |runtime: &Runtime| runtime.ticker.shared.running.load(Ordering::SeqCst);
        let dropped = tokio.block_on(async {
            tokio::pin!(run);
            // One poll starts the run, which cannot end within it.
            let first = std::future::poll_fn(|cx| Poll::Ready(run.as_mut().poll(cx))).await;
            assert!(first.is_pending());
            assert_eq!(running(&runtime), 1);
            tokio::time::timeout(Duration::from_millis(50), run).await
        });
        assert!(dropped.is_err(), "the sleeper cannot finish on its own");
        assert_eq!(running(&runtime), 0, "the dropped run no longer counts");
    }
}
