//! Fuzz targets: each takes raw bytes, runs them through the real
//! component (parser, scheduler maths, router, sandbox) and panics if a
//! property DESIGN.md promises does not hold. `fuzz/` (cargo-fuzz,
//! libFuzzer, coverage-guided) calls these for its long runs; the test
//! below replays every committed corpus and regression file through them
//! and adds a few seconds of seeded random input, in `cargo test`.
//!
//! Not part of the product's interface: kept public only so that the fuzz
//! crate, a workspace of its own, can reach it.

mod api;
mod declarations;
pub mod oracle;
mod sandbox;
pub mod schedules;
mod units;

#[cfg(test)]
mod tests;

/// A target: takes any bytes, panics if a property does not hold.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz/fuzz_targets/NAME.rs`, corpus
/// and regression folders.
pub const TARGETS: &[(&str, Target)] = &[
    ("declaration_text", declarations::declaration_text),
    ("declaration_structured", declarations::declaration_structured),
    ("schedule_text", schedules::schedule_text),
    ("schedule_oracle", schedules::schedule_oracle),
    ("units", units::units),
    ("api_request", api::api_request),
    ("sandbox", sandbox::sandbox_run),
];

pub use api::api_request;
pub use declarations::{declaration_structured, declaration_text};
pub use sandbox::{resident_kib, sandbox_run, sandbox_tally};
pub use schedules::{schedule_oracle, schedule_text};
pub use units::units;
