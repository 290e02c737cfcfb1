//! `ConfigError`: what is wrong with one declaration, with the file, the
//! field and its value, and what to write instead.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one file. `Display` gives the whole line a user needs, e.g.
/// `jobs.d/report.toml: schedule "61 * * * *": minute 61 is out of range 0-59`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// The field and the value as written (`schedule "61 * * * *"`), if the
    /// problem belongs to one field.
    pub field: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError { file: file.to_owned(), field: None, message: message.into() }
    }

    /// A problem with `field`, whose value was `value` (shown quoted).
    pub fn field(file: &Path, field: &str, value: impl fmt::Debug, message: impl Into<String>) -> Self {
        ConfigError { file: file.to_owned(), field: Some(format!("{field} {value:?}")), message: message.into() }
    }
}

impl ConfigError {
    /// TEMPORARY
    pub fn job(&self) -> String {
        self.file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}
