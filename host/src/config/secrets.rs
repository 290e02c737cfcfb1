//! `[secrets]`: where each of a job's secrets comes from and how the guest
//! receives it, validated at load. No secret is read here — only where to
//! look is checked, so a rotated value is picked up at the next run; the
//! runtime resolves each one at run start (see `runtime::secrets`).
//!
//! ```toml
//! [secrets]
//! SLACK_WEBHOOK = "credential:slack-webhook"   # $CREDENTIALS_DIRECTORY or STATE/credentials
//! PGPASSWORD    = "file:/run/secrets/pg_password"
//! API_TOKEN     = "env:HOST_API_TOKEN"
//! DB_CERT       = { from = "file:certs/db.pem", as = "file" }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::ConfigError;
use super::spec::DirGrant;

/// Where file-delivered secrets appear in the guest.
pub const SECRETS_GUEST_DIR: &str = "/run/secrets";

/// One `[secrets]` entry as written: a source string, or a table with the
/// source and the way it is delivered.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a [secrets] entry must be a source string (\"credential:NAME\", \"file:PATH\" or \"env:VAR\") or a table { from = \"…\", as = \"env\" | \"file\" }"
)]
pub enum RawSecret {
    Source(String),
    Table(RawSecretTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecretTable {
    pub from: String,
    #[serde(rename = "as")]
    pub delivery: Option<String>,
}

/// One secret of a job: the variable (or file) name the guest knows it by,
/// where the host reads it, and how it is handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub name: String,
    pub source: SecretSource,
    pub delivery: Delivery,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file named so in `$CREDENTIALS_DIRECTORY` (systemd's
    /// `LoadCredential=`) or in `STATE/credentials`.
    Credential(String),
    /// A file on the host, its path resolved against the declaration's folder.
    File(PathBuf),
    /// A named variable of the host's environment.
    Env(String),
}

/// How the guest receives a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// An environment variable named as the secret.
    Env,
    /// A read-only file `/run/secrets/NAME`.
    File,
}

impl std::fmt::Display for SecretSource {
    /// The source as written in a declaration (`credential:NAME`, …).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Credential(name) => write!(f, "credential:{name}"),
            SecretSource::File(path) => write!(f, "file:{}", path.display()),
            SecretSource::Env(var) => write!(f, "env:{var}"),
        }
    }
}

/// Validates `[secrets]` of `file` (whose folder is `base`) against the
/// job's `env` keys and `dirs`, in name order.
pub fn validate_secrets(
    file: &Path,
    base: &Path,
    secrets: BTreeMap<String, RawSecret>,
    env: &BTreeMap<String, String>,
    dirs: &[DirGrant],
) -> Result<Vec<SecretSpec>, ConfigError> {
    let mut specs = Vec::with_capacity(secrets.len());
    for (name, raw) in secrets {
        let field = format!("secrets.{name}");
        if !is_variable_name(&name) {
            return Err(ConfigError::invalid(
                file,
                &field,
                &name,
                "is not a variable name; use letters, digits and '_', not starting with a digit (e.g. API_TOKEN)",
            ));
        }
        if name.starts_with("WASMCRON_") {
            return Err(ConfigError::invalid(
                file,
                &field,
                &name,
                "WASMCRON_* variables are set by the host for every run; choose another name",
            ));
        }
        if env.contains_key(&name) {
            return Err(ConfigError::invalid(
                file,
                &field,
                &name,
                "is also a key of `env`; a variable has one value, so remove one of the two",
            ));
        }
        let (from, delivery) = match raw {
            RawSecret::Source(from) => (from, Delivery::Env),
            RawSecret::Table(table) => {
                let delivery = match table.delivery.as_deref() {
                    None | Some("env") => Delivery::Env,
                    Some("file") => Delivery::File,
                    Some(other) => {
                        return Err(ConfigError::invalid(
                            file,
                            &format!("{field}.as"),
                            other,
                            "must be \"env\" (an environment variable, the default) or \"file\" (a read-only file /run/secrets/NAME)",
                        ));
                    }
                };
                (table.from, delivery)
            }
        };
        let source = parse_source(base, &from).map_err(|reason| ConfigError::invalid(file, &field, &from, reason))?;
        specs.push(SecretSpec { name, source, delivery });
    }
    if specs.iter().any(|s| s.delivery == Delivery::File) {
        let taken = dirs.iter().enumerate().find(|(_, d)| {
            Path::new(&d.guest).starts_with(SECRETS_GUEST_DIR) || Path::new(SECRETS_GUEST_DIR).starts_with(&d.guest)
        });
        if let Some((i, dir)) = taken {
            return Err(ConfigError::invalid(
                file,
                &format!("dirs[{i}].guest"),
                &dir.guest,
                format!("overlaps {SECRETS_GUEST_DIR}, where this job's file secrets are mounted; mount it elsewhere"),
            ));
        }
    }
    Ok(specs)
}

/// `credential:NAME`, `file:PATH` or `env:VAR`, or why not.
fn parse_source(base: &Path, text: &str) -> Result<SecretSource, String> {
    let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
    match kind {
        "credential" => {
            if rest.is_empty() || rest == "." || rest == ".." || rest.contains(['/', '\0']) {
                return Err(format!(
                    "credential name {rest:?} must be a plain file name (no '/', not '.' or '..'), as in LoadCredential=NAME:…"
                ));
            }
            Ok(SecretSource::Credential(rest.to_owned()))
        }
        "file" => {
            if rest.is_empty() || rest.contains('\0') {
                return Err("needs a path after \"file:\" (absolute, or relative to the declaration)".into());
            }
            Ok(SecretSource::File(base.join(rest)))
        }
        "env" => {
            if !is_variable_name(rest) {
                return Err(format!(
                    "{rest:?} is not a variable name; write \"env:VAR\" with the host variable's name"
                ));
            }
            Ok(SecretSource::Env(rest.to_owned()))
        }
        _ => Err(
            "must start with \"credential:\" (a systemd credential or STATE/credentials/NAME), \"file:\" (a host file) or \"env:\" (a host variable)"
                .into(),
        ),
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`: a name every shell and language accepts.
fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
