// The trivial job as a native program, for the "native process per run"
// peer of `cargo xtask bench`: writes "ok\n" to stdout and exits.
fn main() {
    println!("ok");
}
