//! (c) How fast a runaway guest is stopped: a tight loop cancelled from
//! outside, and one running into its deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;

use wasmcron::config::JobSpec;
use wasmcron::runtime::{EPOCH_TICK, RunContext, RunControl, RunOutcome, Runtime};

use crate::report::{Figure, ms, spread};
use crate::suite::Sizes;

const SPIN_WAT: &str = r#"(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))"#;

pub(crate) fn cancel(runtime: &Arc<Runtime>, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let compiled = runtime.compile(SPIN_WAT.as_bytes(), false)?;
    let mut job = JobSpec::for_bare_module("spin".into(), "spin.wat".into());
    let deadline = Duration::from_millis(50);
    job.limits.timeout = deadline;
    let mut cancelled = Vec::new();
    let mut timed_out = Vec::new();
    for i in 0..sizes.cancels * 2 {
        let control = RunControl::new(deadline);
        let cancel = i % 2 == 0;
        let (outcome, late) = tokio.block_on(async {
            // Cancel at a point unrelated to the epoch ticks.
            let delay = Duration::from_micros(20_000 + (i as u64 * 1_237) % 5_000);
            let canceller = cancel.then(|| {
                let control = control.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    control.cancel();
                    Instant::now()
                })
            });
            let report = runtime.run(&compiled, &job, &RunContext::manual(0, Vec::new()), &control).await;
            let ended = Instant::now();
            let stop_at = match canceller {
                Some(cancelled_at) => cancelled_at.await?,
                None => control.deadline().into_std(),
            };
            anyhow::Ok((report.outcome, ended.saturating_duration_since(stop_at)))
        })?;
        let expected = if cancel { RunOutcome::Cancelled } else { RunOutcome::TimedOut };
        ensure!(outcome == expected, "the spinning guest ended {outcome:?}, not {expected:?}");
        if cancel { cancelled.push(late) } else { timed_out.push(late) }
    }
    cancelled.sort();
    timed_out.sort();
    let tick = format!("epoch tick {} ms", EPOCH_TICK.as_millis());
    // The target is on the worst case: a stop must land within 20 ms.
    let worst = |id: &str, figure: String, sorted: &[Duration]| {
        let max = ms(sorted.last().copied().unwrap_or_default());
        Figure::new(id, figure, max, "ms").at_most(20.0).detail(spread(sorted))
    };
    Ok(vec![
        worst("cancel.max", format!("a tight loop cancelled: cancel → run ended ({tick})"), &cancelled),
        worst(
            "deadline.max",
            format!("a tight loop past limits.timeout (50 ms): deadline → run ended ({tick})"),
            &timed_out,
        ),
    ])
}
