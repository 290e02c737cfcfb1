//! `ConfigError`: what is wrong with one declaration — the file, the job it
//! declares, the field and its value as written, the cause — and what to
//! write instead.
//!
//! `Display` is the whole line a user reads, the cause's message included,
//! e.g. `jobs.d/report.toml: schedule "61 * * * *": minute 61 is out of range 0-59`;
//! print it with `{}`. The cause is also kept whole as the error's
//! `source()`, for code that inspects it, so a report that walks the chain
//! (anyhow's `{:#}`) would show the cause twice: hand it to anyhow with
//! `anyhow::Error::msg`, as its Display, not by `?`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::spec::JobSpec;
use crate::runtime::CompileError;
use crate::schedule::ScheduleError;

/// One problem in one file. Every variant names the `file` (the declaration,
/// or a bare module) and the `job` it declares, which is that file's stem.
/// A `value` is shown as written in the declaration: a string quoted
/// (`"61 * * * *"`), a number bare (`-5`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file's stem is not a valid job name.
    #[error("{}: {reason}", .file.display())]
    BadName { file: PathBuf, job: String, reason: String },

    /// The declaration cannot be read.
    #[error("{}: cannot be read: {source}", .file.display())]
    Unreadable {
        file: PathBuf,
        job: String,
        #[source]
        source: io::Error,
    },

    /// The declaration is not TOML, or its TOML does not fit a declaration
    /// (an unknown key, a wrong type). `message` is TOML's on one line, with
    /// a hint where there is one; `line` is where it points, 1-based.
    /// `source` is boxed (toml's error is 88 bytes, and would make every
    /// `Result<_, ConfigError>` large), so `source()` downcasts to
    /// `Box<toml::de::Error>`.
    #[error("{}: {}{message}", .file.display(), LinePrefix(.line))]
    Toml {
        file: PathBuf,
        job: String,
        line: Option<usize>,
        message: String,
        #[source]
        source: Box<toml::de::Error>,
    },

    /// A field's value is not allowed; `reason` says why and what to write.
    #[error("{}: {field} {value}: {reason}", .file.display())]
    Invalid { file: PathBuf, job: String, field: String, value: String, reason: String },

    /// The `schedule` does not parse.
    #[error("{}: schedule {value}: {source}", .file.display())]
    Schedule {
        file: PathBuf,
        job: String,
        value: String,
        #[source]
        source: ScheduleError,
    },

    /// The job's module cannot be read. `module` is its resolved path.
    #[error("{}: {}cannot be read: {source}{}", .file.display(), ModulePrefix(.file, .module), read_hint(.source))]
    ModuleUnreadable {
        file: PathBuf,
        job: String,
        module: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The job's module does not compile or link; `source` holds
    /// wasmtime's error where it gave one.
    #[error("{}: {}{source}", .file.display(), ModulePrefix(.file, .module))]
    Compile {
        file: PathBuf,
        job: String,
        module: PathBuf,
        #[source]
        source: CompileError,
    },
}

impl ConfigError {
    /// `file`'s stem is not a job name; `reason` is [`validate_name`](super::validate_name)'s.
    pub fn bad_name(file: &Path, reason: impl Into<String>) -> Self {
        ConfigError::BadName { file: file.to_owned(), job: super::job_name(file), reason: reason.into() }
    }

    /// The declaration `file` cannot be read.
    pub fn unreadable(file: &Path, source: io::Error) -> Self {
        ConfigError::Unreadable { file: file.to_owned(), job: super::job_name(file), source }
    }

    /// TOML rejected `text`, read from `file`: its message on one line,
    /// with the line it points at.
    pub fn toml(file: &Path, text: &str, source: toml::de::Error) -> Self {
        let line = source.span().map(|span| text[..span.start].matches('\n').count() + 1);
        let mut message = source.message().trim_end().replace('\n', " ");
        if message.starts_with("unknown field") {
            message.push_str("; remove it or fix its spelling");
        }
        ConfigError::Toml { file: file.to_owned(), job: super::job_name(file), line, message, source: Box::new(source) }
    }

    /// A problem with `field`, whose value was `value` (shown as written:
    /// quoted if a string).
    pub fn invalid(file: &Path, field: &str, value: impl fmt::Debug, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: file.to_owned(),
            job: super::job_name(file),
            field: field.to_owned(),
            value: format!("{value:?}"),
            reason: reason.into(),
        }
    }

    /// The schedule `text` in `file` does not parse.
    pub fn schedule(file: &Path, text: &str, source: ScheduleError) -> Self {
        ConfigError::Schedule { file: file.to_owned(), job: super::job_name(file), value: format!("{text:?}"), source }
    }

    /// The module of `spec` cannot be read.
    pub fn module_unreadable(spec: &JobSpec, source: io::Error) -> Self {
        ConfigError::ModuleUnreadable {
            file: spec.source.clone(),
            job: spec.name.clone(),
            module: spec.module.clone(),
            source,
        }
    }

    /// The module of `spec` does not compile.
    pub fn compile(spec: &JobSpec, source: CompileError) -> Self {
        ConfigError::Compile { file: spec.source.clone(), job: spec.name.clone(), module: spec.module.clone(), source }
    }

    /// The file the problem is in: a declaration, or a bare module.
    pub fn file(&self) -> &Path {
        match self {
            ConfigError::BadName { file, .. }
            | ConfigError::Unreadable { file, .. }
            | ConfigError::Toml { file, .. }
            | ConfigError::Invalid { file, .. }
            | ConfigError::Schedule { file, .. }
            | ConfigError::ModuleUnreadable { file, .. }
            | ConfigError::Compile { file, .. } => file,
        }
    }

    /// The job the file declares: its stem (see [`job_name`](super::job_name)).
    pub fn job(&self) -> &str {
        match self {
            ConfigError::BadName { job, .. }
            | ConfigError::Unreadable { job, .. }
            | ConfigError::Toml { job, .. }
            | ConfigError::Invalid { job, .. }
            | ConfigError::Schedule { job, .. }
            | ConfigError::ModuleUnreadable { job, .. }
            | ConfigError::Compile { job, .. } => job,
        }
    }

    /// The field the problem belongs to (`schedule`, `limits.memory`,
    /// `dirs[0].host`, `module`), if it belongs to one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            ConfigError::Schedule { .. } => Some("schedule"),
            ConfigError::ModuleUnreadable { file, module, .. } | ConfigError::Compile { file, module, .. } => {
                (file != module).then_some("module")
            }
            ConfigError::BadName { .. } | ConfigError::Unreadable { .. } | ConfigError::Toml { .. } => None,
        }
    }
}

/// `line N: `, where TOML gave a position.
struct LinePrefix<'a>(&'a Option<usize>);

impl fmt::Display for LinePrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self.0 {
            Some(line) => write!(f, "line {line}: "),
            None => Ok(()),
        }
    }
}

/// `module "PATH": ` when a declaration names the module; nothing for a
/// bare module, which is the file itself.
struct ModulePrefix<'a>(&'a Path, &'a Path);

impl fmt::Display for ModulePrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ModulePrefix(file, module) = *self;
        if file == module { Ok(()) } else { write!(f, "module {:?}: ", module.display().to_string()) }
    }
}

fn read_hint(error: &io::Error) -> &'static str {
    if error.kind() == io::ErrorKind::NotFound {
        "; build the job first, or fix `module` (it is relative to the declaration)"
    } else {
        ""
    }
}
