//! The seams DESIGN.md draws, checked in the source: the store's SQL and
//! its SQLite driver live in `host/src/store/sqlite` and nowhere else, so
//! the scheduler, recovery, reload, the job host and the CLI reach the
//! store only through its interface.

use std::path::Path;

use crate::support::repo_root;

fn sources(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn sql_and_its_driver_stay_inside_the_sqlite_backend() {
    let host = repo_root().join("host/src");
    let backend = host.join("store/sqlite");
    let mut files = Vec::new();
    sources(&host, &mut files);
    assert!(files.len() > 40, "found the sources: {files:?}");
    let offenders: Vec<String> = files
        .iter()
        .filter(|file| !file.starts_with(&backend))
        .filter(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            ["rusqlite", "SELECT ", "INSERT INTO", "UPDATE runs", "PRAGMA "].iter().any(|word| text.contains(word))
        })
        .map(|file| file.strip_prefix(&host).unwrap().display().to_string())
        .collect();
    assert!(offenders.is_empty(), "SQL outside host/src/store/sqlite: {offenders:?}");
}
