//! The seams DESIGN.md draws, checked in the source: the store's SQL and
//! its drivers live in the backends (`host/src/store/sqlite`,
//! `host/src/store/postgres`) and nowhere else, so the scheduler,
//! recovery, reload, the job host and the CLI reach the store only
//! through its interface; and neither backend reaches for the other's driver.

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
fn sql_and_its_drivers_stay_inside_the_store_backends() {
    let host = repo_root().join("host/src");
    let (sqlite, postgres) = (host.join("store/sqlite"), host.join("store/postgres"));
    let mut files = Vec::new();
    sources(&host, &mut files);
    assert!(files.len() > 40, "found the sources: {files:?}");
    let uses = |file: &Path, words: &[&str]| {
        let text = std::fs::read_to_string(file).unwrap();
        words.iter().any(|word| text.contains(word))
    };
    let sql = ["SELECT ", "INSERT INTO", "UPDATE runs", "PRAGMA "];
    let shown = |file: &std::path::PathBuf| file.strip_prefix(&host).unwrap().display().to_string();
    // The fuzzing module drives the API, not SQL; the store URL parser
    // checks a PostgreSQL URL with the driver's own parser.
    let offenders: Vec<String> = files
        .iter()
        .filter(|file| !file.starts_with(&sqlite) && !file.starts_with(&postgres))
        .filter(|file| {
            uses(file, &sql)
                || uses(file, &["rusqlite"])
                || (!file.ends_with("store/url.rs") && uses(file, &["tokio_postgres", "deadpool"]))
        })
        .map(shown)
        .collect();
    assert!(offenders.is_empty(), "SQL or a store driver outside host/src/store/{{sqlite,postgres}}: {offenders:?}");
    let crossed: Vec<String> = files
        .iter()
        .filter(|file| {
            (file.starts_with(&sqlite) && uses(file, &["tokio_postgres", "deadpool"]))
                || (file.starts_with(&postgres) && uses(file, &["rusqlite"]))
        })
        .map(shown)
        .collect();
    assert!(crossed.is_empty(), "a backend using the other's driver: {crossed:?}");
}
