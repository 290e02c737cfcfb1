//! {{name}}: a wasmcron job of the job world (wit/job.wit). `run` gets the
//! run's context and payload; the host offers logging, key-value state
//! private to this job, and `enqueue`.

wit_bindgen::generate!({ path: "wit", world: "job" });

use wasmcron::job::{kv, log};

struct Job;

impl Guest for Job {
    fn run(context: wasmcron::job::types::Context, _payload: Vec<u8>) -> Result<(), String> {
        let runs = match kv::get("runs")? {
            Some(bytes) => String::from_utf8_lossy(&bytes).parse::<u64>().unwrap_or(0) + 1,
            None => 1,
        };
        kv::set("runs", runs.to_string().as_bytes())?;
        log::log(log::Level::Info, "hello", &[("runs".into(), runs.to_string())]);
        println!("{}: hello from Rust in the job world (run {runs} of this job, {})", context.job, context.trigger);
        Ok(())
    }
}

export!(Job);
