//! Declarations: `jobs.d/*.toml` (and bare `.wasm`/`.wat` modules) → `JobSpec`.
//!
//! Loading is a pipeline: read the folder, parse each TOML into a
//! [`raw::RawJob`] that mirrors the file, then validate it into a
//! [`JobSpec`]. One broken file never stops the others: [`load_dir`] returns
//! every good job and every error. This module reads declarations only; the
//! modules they point at are compiled by `runtime`.

mod error;
pub mod network;
mod raw;
mod spec;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use network::{Grant, Network, Scheme};
pub use raw::RawJob;
pub use spec::{CatchUp, DirGrant, DirMode, JobSpec, Limits, MAX_MEMORY, Overlap, Retry};

/// What a folder of declarations gave: good jobs and errors, each sorted by file.
#[derive(Debug, Default)]
pub struct Loaded {
    pub jobs: Vec<JobSpec>,
    pub errors: Vec<ConfigError>,
}

/// Checks a job name against `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(format!(
            "job name {name:?} is not allowed; rename the file so its stem is 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
        ))
    }
}

/// The name of the job that `path` (a declaration or a bare module) declares:
/// its file stem. Derived here and nowhere else; [`validate_name`] says
/// whether it is allowed.
pub fn job_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Reads and validates one declaration file; the job's name is its stem.
pub fn load_file(file: &Path) -> Result<JobSpec, ConfigError> {
    let name = job_name(file);
    validate_name(&name).map_err(|e| ConfigError::bad_name(file, e))?;
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError::unreadable(file, e))?;
    let raw = parse_toml(file, &text)?;
    JobSpec::from_raw(name, file, raw)
}

/// Parses declaration text, turning TOML's error into one line with its position.
pub fn parse_toml(file: &Path, text: &str) -> Result<RawJob, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::toml(file, text, e))
}

/// Loads every declaration in `dir`: each `NAME.toml`, and each `NAME.wasm`
/// or `NAME.wat` that has no `NAME.toml` beside it.
pub fn load_dir(dir: &Path) -> std::io::Result<Loaded> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();

    let declared: BTreeSet<String> = files.iter().filter(|p| has_extension(p, "toml")).map(|p| job_name(p)).collect();
    let mut loaded = Loaded::default();
    let mut bare_seen = BTreeSet::new();
    for file in &files {
        if has_extension(file, "toml") {
            match load_file(file) {
                Ok(job) => loaded.jobs.push(job),
                Err(e) => loaded.errors.push(e),
            }
        } else if has_extension(file, "wasm") || has_extension(file, "wat") {
            let name = job_name(file);
            if declared.contains(&name) || !bare_seen.insert(name.clone()) {
                continue; // declared by its TOML, or NAME.wasm already taken over NAME.wat
            }
            match validate_name(&name) {
                Ok(()) => loaded.jobs.push(JobSpec::for_bare_module(name, file.clone())),
                Err(e) => loaded.errors.push(ConfigError::bad_name(file, e)),
            }
        }
    }
    Ok(loaded)
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension().is_some_and(|e| e == ext)
}

#[cfg(test)]
mod tests;
