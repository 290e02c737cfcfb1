//! Helpers for writing wasmcron jobs as WASI command modules, in Rust.
//!
//! A wasmcron job is any WASI program: it needs no SDK. This crate only
//! saves the boilerplate of reading the run's context from the
//! `WASMCRON_*` variables, the trigger's payload from stdin, and turning a
//! `Result` into the exit code the host records.
//!
//! ```no_run
//! // In `main`:
//! wasmcron_sdk::run(|ctx, payload| {
//!     println!("{} run {} (attempt {}), {} bytes of payload", ctx.job, ctx.run_id, ctx.attempt, payload.len());
//!     Ok(())
//! })
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip1`, and point a
//! declaration in `jobs.d/` at the `.wasm` file.
//!
//! With the `world` feature, [`world`] writes jobs of the wasmcron job world
//! instead (typed `run`, logging, key-value state, `enqueue`), built for
//! `wasm32-wasip2`.

use std::fmt;
use std::io::Read;

#[cfg(feature = "world")]
pub mod world;

/// Why the run started, from `WASMCRON_TRIGGER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    CatchUp,
    Retry,
    Manual,
    /// A value this SDK does not know (a newer host, or not run by wasmcron).
    Other(String),
}

impl Trigger {
    fn parse(text: &str) -> Trigger {
        match text {
            "schedule" => Trigger::Schedule,
            "catch-up" => Trigger::CatchUp,
            "retry" => Trigger::Retry,
            "manual" => Trigger::Manual,
            other => Trigger::Other(other.to_owned()),
        }
    }
}

/// The facts of the current run, as the host set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The job's name (its declaration's file stem).
    pub job: String,
    /// The run's id in the host's history.
    pub run_id: String,
    /// 1 for the first try, 2 for the first retry, and so on.
    pub attempt: u32,
    /// When the run was due, RFC 3339 in UTC.
    pub scheduled_at: String,
    pub trigger: Trigger,
}

impl Context {
    /// Reads the context from the environment. Outside wasmcron (say, under
    /// `wasmtime run`) missing variables get neutral values: the job name
    /// `unknown`, attempt 1, trigger `manual`.
    pub fn from_env() -> Context {
        let var = |name: &str| std::env::var(name).ok();
        Context {
            job: var("WASMCRON_JOB").unwrap_or_else(|| "unknown".into()),
            run_id: var("WASMCRON_RUN_ID").unwrap_or_default(),
            attempt: var("WASMCRON_ATTEMPT").and_then(|a| a.parse().ok()).unwrap_or(1),
            scheduled_at: var("WASMCRON_SCHEDULED_AT").unwrap_or_default(),
            trigger: var("WASMCRON_TRIGGER").map(|t| Trigger::parse(&t)).unwrap_or(Trigger::Manual),
        }
    }

    /// True when this run is a retry of a failed one.
    pub fn is_retry(&self) -> bool {
        self.attempt > 1
    }
}

/// The error type a job returns: anything printable.
pub type Error = Box<dyn std::error::Error>;

/// Reads the whole payload (the guest's stdin). Empty when none was given.
pub fn payload() -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Runs `job` with the context and payload, then exits: 0 on `Ok`, 1 on
/// `Err` (after printing the error to stderr, where the host captures it).
pub fn run(job: impl FnOnce(&Context, &[u8]) -> Result<(), Error>) -> ! {
    let context = Context::from_env();
    let result = payload().map_err(Error::from).and_then(|payload| job(&context, &payload));
    match result {
        Ok(()) => std::process::exit(0),
        Err(error) => {
            eprintln!("{}: {}", context.job, Chain(&*error));
            std::process::exit(1)
        }
    }
}

/// Prints an error with its sources, `outer: inner: innermost`.
struct Chain<'a>(&'a dyn std::error::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_parse() {
        assert_eq!(Trigger::parse("catch-up"), Trigger::CatchUp);
        assert_eq!(Trigger::parse("schedule"), Trigger::Schedule);
        assert_eq!(Trigger::parse("later"), Trigger::Other("later".into()));
    }

    #[test]
    fn error_chain_is_printed_whole() {
        let inner = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("reading the report folder")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(Chain(&Outer(inner)).to_string(), "reading the report folder: no such file");
    }
}
