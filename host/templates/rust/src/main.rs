//! {{name}}: a wasmcron job as a WASI command. The run's facts are in
//! WASMCRON_* variables, the payload is stdin, and the exit code is the
//! outcome (0 succeeded, anything else failed).

use std::io::Read;

fn main() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let mut payload = Vec::new();
    if let Err(error) = std::io::stdin().read_to_end(&mut payload) {
        eprintln!("cannot read the payload: {error}");
        std::process::exit(1);
    }
    println!(
        "{}: hello from Rust (run {}, attempt {}, trigger {}, {} bytes of payload)",
        var("WASMCRON_JOB"),
        var("WASMCRON_RUN_ID"),
        var("WASMCRON_ATTEMPT"),
        var("WASMCRON_TRIGGER"),
        payload.len()
    );
}
