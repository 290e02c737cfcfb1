//! The CPU-bound kernel of `wasmcron-bench`: SHA-256 over generated data,
//! `KERNEL_BYTES` long (default 64 MiB); prints the digest. Built by
//! `plugins/build.sh hash-kernel`; not an example job.

mod sha256;

fn main() {
    let len = std::env::var("KERNEL_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(64 << 20);
    println!("{}", sha256::hex(&sha256::work(len)));
}
