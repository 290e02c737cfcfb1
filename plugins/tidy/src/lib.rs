//! Example job of the job world (build for wasm32-wasip2): a maintenance
//! pass that works through a backlog in batches, keeping its cursor in the
//! host's key-value store so each run carries on where the last stopped —
//! across restarts and reloads. When the backlog is done it starts the job
//! named by `FOLLOW_UP` (if set) with `enqueue`, passing a summary as its
//! payload.
//!
//! Settings (declaration `env`): `BACKLOG` items in all (default 25),
//! `BATCH` per run (default 10), `FOLLOW_UP` a job to enqueue when done.

use wasmcron_sdk::world::{Context, Job, enqueue, kv, log};

struct Tidy;

fn setting(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(text) => text.parse().map_err(|_| format!("{name}={text:?} is not a whole number")),
        Err(_) => Ok(default),
    }
}

impl Job for Tidy {
    fn run(ctx: &Context, _payload: &[u8]) -> Result<(), String> {
        let (backlog, batch) = (setting("BACKLOG", 25)?, setting("BATCH", 10)?);
        let cursor: u64 = match kv::get_string("cursor")? {
            Some(text) => text.parse().map_err(|_| format!("stored cursor {text:?} is not a number"))?,
            None => 0,
        };
        let next = (cursor + batch).min(backlog);
        kv::set("cursor", next.to_string())?;
        kv::set(&format!("runs/{:08}", ctx.run_id), format!("{cursor}..{next}"))?;
        log::info("tidied a batch", &[("from", &cursor.to_string()), ("to", &next.to_string())]);
        println!("{}: items {cursor}..{next} of {backlog}", ctx.job);
        if next == backlog
            && cursor < backlog
            && let Ok(follow_up) = std::env::var("FOLLOW_UP")
        {
            let summary = format!("{} tidied {backlog} items", ctx.job);
            let id = enqueue(&follow_up, summary, std::time::Duration::ZERO)?;
            log::info("backlog done; follow-up enqueued", &[("job", &follow_up), ("run_id", &id.to_string())]);
        }
        Ok(())
    }
}

wasmcron_sdk::job!(Tidy);
