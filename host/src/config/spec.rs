//! `JobSpec`: a declaration validated into what the host needs — a parsed
//! schedule, `Duration`s, byte counts, paths resolved against the
//! declaration's folder — with the defaults of DESIGN.md filled in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

use super::error::ConfigError;
use super::network::{self, Network};
use super::raw::{RawDir, RawJob};
use crate::schedule::{self, Schedule};
use crate::units;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_MEMORY: u64 = 256 << 20;
pub const DEFAULT_OUTPUT: u64 = 1 << 20;
pub const DEFAULT_PAYLOAD: u64 = 1 << 20;
pub const DEFAULT_CATCH_UP_WINDOW: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);
/// One wasm page: less memory than this cannot run anything.
const MIN_MEMORY: u64 = 64 << 10;
/// The largest linear memory of wasm32.
pub const MAX_MEMORY: u64 = 4 << 30;
/// Captured output is held in the host's memory until the run is recorded.
const MAX_OUTPUT: u64 = 64 << 20;
/// A trigger's payload is held in memory and stored with its run.
pub const MAX_PAYLOAD: u64 = 64 << 20;
const MAX_ATTEMPTS: i64 = 100;

/// Everything the host knows about one job, valid by construction. Equal
/// specs mean an unchanged declaration: a reload leaves such a job alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub name: String,
    /// The file the job was declared by: its TOML, or the module itself.
    pub source: PathBuf,
    pub module: PathBuf,
    pub schedule: Option<Schedule>,
    pub timezone: Tz,
    pub jitter: Duration,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub catch_up_window: Duration,
    pub enabled: bool,
    pub limits: Limits,
    pub retry: Retry,
    pub dirs: Vec<DirGrant>,
    /// Outbound grants; `None`, no network at all.
    pub network: Option<Network>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Duration,
    pub fuel: Option<u64>,
    pub memory: u64,
    pub output: u64,
    /// A trigger's payload (the guest's stdin), at most.
    pub payload: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, the first included.
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
    pub mode: DirMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirMode {
    ReadOnly,
    ReadWrite,
}

/// What to do when a fire comes while the previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    Skip,
    Queue,
    Allow,
    Replace,
}

/// What to do with fires missed while the host was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    None,
    Once,
    All,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: DEFAULT_TIMEOUT,
            fuel: None,
            memory: DEFAULT_MEMORY,
            output: DEFAULT_OUTPUT,
            payload: DEFAULT_PAYLOAD,
        }
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 1, backoff: DEFAULT_BACKOFF, max_backoff: DEFAULT_MAX_BACKOFF }
    }
}

impl JobSpec {
    /// A job for a bare module in `jobs.d/` with no declaration: defaults, no
    /// schedule (it runs only when triggered).
    pub fn for_bare_module(name: String, module: PathBuf) -> Self {
        JobSpec {
            name,
            source: module.clone(),
            module,
            schedule: None,
            timezone: Tz::UTC,
            jitter: Duration::ZERO,
            args: Vec::new(),
            env: Vec::new(),
            overlap: Overlap::Skip,
            catch_up: CatchUp::Once,
            catch_up_window: DEFAULT_CATCH_UP_WINDOW,
            enabled: true,
            limits: Limits::default(),
            retry: Retry::default(),
            dirs: Vec::new(),
            network: None,
        }
    }

    /// Validates `raw`, read from `file`, into the job called `name`.
    pub fn from_raw(name: String, file: &Path, raw: RawJob) -> Result<Self, ConfigError> {
        let base = file.parent().unwrap_or(Path::new("."));
        let module = match &raw.module {
            Some(module) if module.trim().is_empty() => {
                return Err(ConfigError::invalid(
                    file,
                    "module",
                    module,
                    "is empty; give the path of a .wasm or .wat file",
                ));
            }
            Some(module) => base.join(module),
            None => default_module(base, &name),
        };
        let timezone = match &raw.timezone {
            Some(zone) => {
                schedule::parse_timezone(zone).map_err(|e| ConfigError::invalid(file, "timezone", zone, e))?
            }
            None => Tz::UTC,
        };
        let schedule = match &raw.schedule {
            Some(text) => Some(Schedule::parse(text, timezone).map_err(|e| ConfigError::schedule(file, text, e))?),
            None => None,
        };
        let duration = |field: &str, value: &Option<String>, default: Duration| match value {
            Some(text) => units::parse_duration(text).map_err(|e| ConfigError::invalid(file, field, text, e)),
            None => Ok(default),
        };
        let size = |field: &str, value: &Option<String>, default: u64, min: u64, max: u64| match value {
            Some(text) => {
                let bytes = units::parse_size(text).map_err(|e| ConfigError::invalid(file, field, text, e))?;
                if !(min..=max).contains(&bytes) {
                    return Err(ConfigError::invalid(
                        file,
                        field,
                        text,
                        format!("must be between {min} and {max} bytes"),
                    ));
                }
                Ok(bytes)
            }
            None => Ok(default),
        };

        let timeout = duration("limits.timeout", &raw.limits.timeout, DEFAULT_TIMEOUT)?;
        if timeout.is_zero() {
            return Err(ConfigError::invalid(
                file,
                "limits.timeout",
                raw.limits.timeout.unwrap_or_default(),
                "must be longer than 0; runs always have a finite timeout",
            ));
        }
        let fuel = match raw.limits.fuel {
            Some(fuel) if fuel <= 0 => {
                return Err(ConfigError::invalid(
                    file,
                    "limits.fuel",
                    fuel,
                    "must be a positive number of fuel units; omit it to run unmetered",
                ));
            }
            fuel => fuel.map(|f| f as u64),
        };
        let limits = Limits {
            timeout,
            fuel,
            memory: size("limits.memory", &raw.limits.memory, DEFAULT_MEMORY, MIN_MEMORY, MAX_MEMORY)?,
            output: size("limits.output", &raw.limits.output, DEFAULT_OUTPUT, 0, MAX_OUTPUT)?,
            payload: size("limits.payload", &raw.limits.payload, DEFAULT_PAYLOAD, 0, MAX_PAYLOAD)?,
        };

        let attempts = match raw.retry.attempts {
            Some(n) if !(1..=MAX_ATTEMPTS).contains(&n) => {
                return Err(ConfigError::invalid(
                    file,
                    "retry.attempts",
                    n,
                    format!("must be from 1 (no retries) to {MAX_ATTEMPTS}; it counts the first try"),
                ));
            }
            n => n.unwrap_or(1) as u32,
        };
        let retry = Retry {
            attempts,
            backoff: duration("retry.backoff", &raw.retry.backoff, DEFAULT_BACKOFF)?,
            max_backoff: duration("retry.max_backoff", &raw.retry.max_backoff, DEFAULT_MAX_BACKOFF)?,
        };
        if retry.max_backoff < retry.backoff {
            return Err(ConfigError::invalid(
                file,
                "retry.max_backoff",
                units::format_duration(retry.max_backoff),
                format!(
                    "is shorter than retry.backoff ({}); raise it or lower the backoff",
                    units::format_duration(retry.backoff)
                ),
            ));
        }

        Ok(JobSpec {
            source: file.to_owned(),
            module,
            schedule,
            timezone,
            jitter: duration("jitter", &raw.jitter, Duration::ZERO)?,
            args: raw.args,
            env: validate_env(file, raw.env)?,
            overlap: parse_choice(
                file,
                "overlap",
                &raw.overlap,
                &[
                    ("skip", Overlap::Skip),
                    ("queue", Overlap::Queue),
                    ("allow", Overlap::Allow),
                    ("replace", Overlap::Replace),
                ],
                Overlap::Skip,
            )?,
            catch_up: parse_choice(
                file,
                "catch_up",
                &raw.catch_up,
                &[("none", CatchUp::None), ("once", CatchUp::Once), ("all", CatchUp::All)],
                CatchUp::Once,
            )?,
            catch_up_window: duration("catch_up_window", &raw.catch_up_window, DEFAULT_CATCH_UP_WINDOW)?,
            enabled: raw.enabled.unwrap_or(true),
            limits,
            retry,
            dirs: validate_dirs(file, base, raw.dirs)?,
            network: raw.network.map(|network| network::validate(file, base, network)).transpose()?,
            name,
        })
    }
}

/// `NAME.wasm` beside the declaration, or `NAME.wat` if only that exists.
fn default_module(base: &Path, name: &str) -> PathBuf {
    let wasm = base.join(format!("{name}.wasm"));
    let wat = base.join(format!("{name}.wat"));
    if !wasm.exists() && wat.exists() { wat } else { wasm }
}

fn parse_choice<T: Copy>(
    file: &Path,
    field: &str,
    value: &Option<String>,
    choices: &[(&str, T)],
    default: T,
) -> Result<T, ConfigError> {
    let Some(text) = value else { return Ok(default) };
    choices.iter().find(|(name, _)| name == text).map(|(_, v)| *v).ok_or_else(|| {
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        ConfigError::invalid(file, field, text, format!("must be one of {}", names.join(", ")))
    })
}

fn validate_env(
    file: &Path,
    env: std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    for key in env.keys() {
        if key.is_empty() || key.contains(['=', '\0']) {
            return Err(ConfigError::invalid(
                file,
                "env",
                key,
                "is not a valid variable name (it must be non-empty, without '=' or NUL)",
            ));
        }
        if key.starts_with("WASMCRON_") {
            return Err(ConfigError::invalid(
                file,
                "env",
                key,
                "WASMCRON_* variables are set by the host for every run; choose another name",
            ));
        }
    }
    Ok(env.into_iter().collect())
}

fn validate_dirs(file: &Path, base: &Path, dirs: Vec<RawDir>) -> Result<Vec<DirGrant>, ConfigError> {
    let mut grants: Vec<DirGrant> = Vec::with_capacity(dirs.len());
    for (i, dir) in dirs.into_iter().enumerate() {
        let host = base.join(&dir.host);
        if !host.is_dir() {
            return Err(ConfigError::invalid(
                file,
                &format!("dirs[{i}].host"),
                &dir.host,
                format!(
                    "is not a directory (looked for {}); create it or fix the path, which is relative to the declaration",
                    host.display()
                ),
            ));
        }
        if !dir.guest.starts_with('/') {
            return Err(ConfigError::invalid(
                file,
                &format!("dirs[{i}].guest"),
                &dir.guest,
                "must be an absolute guest path such as \"/data\"",
            ));
        }
        if grants.iter().any(|g| g.guest == dir.guest) {
            return Err(ConfigError::invalid(
                file,
                &format!("dirs[{i}].guest"),
                &dir.guest,
                "is already used by an earlier [[dirs]] entry",
            ));
        }
        let mode = parse_choice(
            file,
            &format!("dirs[{i}].mode"),
            &dir.mode,
            &[("ro", DirMode::ReadOnly), ("rw", DirMode::ReadWrite)],
            DirMode::ReadOnly,
        )?;
        grants.push(DirGrant { host, guest: dir.guest, mode });
    }
    Ok(grants)
}
