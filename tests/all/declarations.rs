//! The declaration corpus in `tests/declarations/`: every broken file's
//! message matches the `.err` beside it, and `check` lists them all while
//! the one good declaration still loads.

use crate::support::{describe, repo_root, text, wasmcron};

#[test]
fn each_broken_declaration_gets_its_expected_message() {
    let dir = repo_root().join("tests/declarations");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") || path.file_stem().unwrap() == "good" {
            continue;
        }
        let expected_file = path.with_extension("err");
        let expected = std::fs::read_to_string(&expected_file)
            .unwrap_or_else(|_| panic!("{} has no {} beside it", path.display(), expected_file.display()));
        let error = wasmcron::config::load_file(&path).expect_err(&format!("{} should be rejected", path.display()));
        let expected = expected.trim_end().replace("{dir}", &dir.display().to_string());
        assert_eq!(error.to_string(), format!("{}: {expected}", path.display()));
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} cases found");
}

#[test]
fn check_lists_every_error_and_loads_the_good_job() {
    let output = wasmcron().args(["check", "--jobs"]).arg(repo_root().join("tests/declarations")).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(text(&output.stdout).contains("ok     good"), "{}", describe(&output));
    let stderr = text(&output.stderr);
    let errors = stderr.lines().filter(|l| l.starts_with("error  ")).count();
    let cases = std::fs::read_dir(repo_root().join("tests/declarations"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "err"))
        .count();
    assert_eq!(errors, cases, "{stderr}");
}
