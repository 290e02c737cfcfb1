//! wasmcron's integration tests: one binary, a module per theme. They drive
//! the real `wasmcron` binary (or the library, where a test needs a handle
//! the CLI does not expose) against real modules — `.wat` fixtures in
//! `tests/fixtures`, and guests built from source by `support::guests`.

mod abi;
mod abuse;
mod api;
mod backup;
mod cli;
mod clockjump;
mod cluster;
mod commands;
mod control;
mod crashloop;
mod daemon;
mod dashboard;
mod declarations;
mod examples;
mod faketime;
mod faults;
mod hostile;
mod layers;
mod metrics;
mod network;
mod openapi;
mod operations;
mod reaching;
mod reload;
mod scaffold;
mod scheduler;
mod secrets;
mod storefaults;
mod support;
mod systemd;
mod world;
