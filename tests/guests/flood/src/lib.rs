//! Hostile job-world guest (build for wasm32-wasip2). Its payload says
//! which host import to abuse:
//!
//!   kv               `kv.set` distinct keys until the host refuses one
//!   kv-delete        `kv.delete` one key until the host refuses
//!   enqueue JOB      `enqueue` runs of JOB until the host refuses one
//!   recurse          recurse without end, logging through the host at
//!                    each level (the stack crosses the component boundary)
//!
//! The floods print how many calls went through, then fail with the
//! host's error.

use wasmcron_sdk::world::{Context, Job, enqueue, kv, log};

struct Flood;

#[expect(unconditional_recursion, reason = "it recurses until the stack runs out: the point of the guest")]
fn recurse(depth: u64) -> u64 {
    log::debug("deeper", &[("depth", &depth.to_string())]);
    // The addition after the call keeps it from becoming a loop.
    1 + recurse(std::hint::black_box(depth + 1))
}

impl Job for Flood {
    fn run(_ctx: &Context, payload: &[u8]) -> Result<(), String> {
        let payload = String::from_utf8_lossy(payload);
        let mut words = payload.split_whitespace();
        let mut calls: u64 = 0;
        let error = match words.next() {
            Some("kv") => loop {
                match kv::set(&format!("k{calls}"), "v") {
                    Ok(()) => calls += 1,
                    Err(error) => break error,
                }
            },
            Some("kv-delete") => loop {
                match kv::delete("k") {
                    Ok(()) => calls += 1,
                    Err(error) => break error,
                }
            },
            Some("enqueue") => {
                let job = words.next().ok_or("enqueue: which job?")?;
                loop {
                    match enqueue(job, b"", std::time::Duration::from_secs(3600)) {
                        Ok(_) => calls += 1,
                        Err(error) => break error,
                    }
                }
            }
            Some("recurse") => return Err(format!("came back from {} levels", recurse(0))),
            other => return Err(format!("unknown action {other:?}")),
        };
        println!("{calls} calls went through");
        Err(error)
    }
}

wasmcron_sdk::job!(Flood);
