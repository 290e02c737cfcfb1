//! `wasmcron new`: for every language, the scaffold as generated builds
//! with its own `build.sh`, passes `wasmcron check`, and runs.

use crate::support::{Sandbox, describe, guests, repo_root, text};

fn scaffold(lang: &str, expected: &str) {
    guests(); // installs the toolchains the scaffolds build with
    let sandbox = Sandbox::new();
    let name = format!("demo-{lang}");
    let src = sandbox.path("src");
    let output = sandbox.wasmcron(&["new", &name, "--lang", lang, "--dir", src.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let output = std::process::Command::new("bash")
        .arg(src.join(&name).join("build.sh"))
        // Rust scaffolds share one target folder, so their dependencies build once.
        .env("CARGO_TARGET_DIR", repo_root().join("target/scaffolds"))
        .output()
        .unwrap();
    assert!(output.status.success(), "build.sh failed: {}", describe(&output));

    let output = sandbox.wasmcron(&["check"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(text(&output.stdout).contains(&format!("ok     {name}")), "{}", describe(&output));

    let (record, code) = sandbox.once_json(&name);
    assert_eq!((record["status"].as_str(), code), (Some("succeeded"), 0), "{record}");
    let stdout = record["stdout"].as_str().unwrap();
    assert!(stdout.starts_with(&format!("{name}: hello from {expected}")), "{stdout}");

    // A second scaffold of the same name is refused, and nothing is overwritten.
    let output = sandbox.wasmcron(&["new", &name, "--lang", lang, "--dir", src.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("already exists"), "{}", describe(&output));
}

#[test]
fn rust() {
    scaffold("rust", "Rust (run");
}

#[test]
fn rust_world() {
    scaffold("rust-world", "Rust in the job world (run 1 of this job");
}

#[test]
fn c() {
    scaffold("c", "C (run");
}

#[test]
fn zig() {
    scaffold("zig", "Zig (run");
}

#[test]
fn assemblyscript() {
    scaffold("assemblyscript", "AssemblyScript (run");
}

#[test]
fn python() {
    scaffold("python", "Python in the job world (run 1 of this job");
}

#[test]
fn javascript() {
    scaffold("javascript", "JavaScript in the job world (run 1 of this job");
}

#[test]
fn go() {
    scaffold("go", "Go (run");
}

#[test]
fn a_bad_name_is_refused_with_the_rule() {
    let sandbox = Sandbox::new();
    let output = sandbox.wasmcron(&["new", "Bad Name", "--lang", "c"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("job name \"Bad Name\" is not allowed"), "{}", describe(&output));
}
