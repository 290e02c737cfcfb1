//! A run's secrets: read at run start from where `[secrets]` says (so a
//! rotated value is seen by the next run, no restart), handed to the guest
//! as variables or as read-only files under `/run/secrets`, and turned into
//! the [`Redactor`] that keeps their values out of everything recorded.
//!
//! Values live in [`Secret`], whose `Debug` shows nothing, and are never
//! logged; errors name the secret and where it was looked for, never what
//! was found. One trailing `"\n"` is stripped from a value read from a file
//! or credential (`echo` and `systemd-creds` add it); nothing else is.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::Runtime;
use super::outcome::RunOutcome;
use super::redact::{MIN_REDACTED_LEN, Redactor};
use crate::config::{Delivery, JobSpec, SECRETS_GUEST_DIR, SecretSource, SecretSpec};

/// The largest secret read: values are held in memory and searched for in
/// all the run's output.
const MAX_SECRET: u64 = 1 << 20;

/// Where `credential:NAME` secrets are looked for, in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialDirs {
    /// `$CREDENTIALS_DIRECTORY`: systemd's `LoadCredential=` folder.
    pub systemd: Option<PathBuf>,
    /// `STATE/credentials`, for hosts not run by systemd.
    pub state: Option<PathBuf>,
}

impl CredentialDirs {
    /// `$CREDENTIALS_DIRECTORY` when it is set, then `STATE/credentials`.
    pub fn from_env(state_dir: &Path) -> Self {
        let systemd = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|v| !v.is_empty()).map(PathBuf::from);
        CredentialDirs { systemd, state: Some(state_dir.join("credentials")) }
    }
}

impl Runtime {
    /// This runtime, looking for `credential:` secrets in `dirs`. Without
    /// it, it looks nowhere and such secrets fail their runs.
    pub fn with_credentials(mut self, dirs: CredentialDirs) -> Self {
        self.credentials = dirs;
        self
    }
}

/// A secret's value. Its `Debug` is `Secret(..)`, whatever it holds.
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A run's secrets, read and ready to hand over; the files' folder is
/// removed when this is dropped, after the run.
#[derive(Debug, Default)]
pub(super) struct Resolved {
    env: Vec<(String, Secret)>,
    files: Option<tempfile::TempDir>,
    redactor: Option<Arc<Redactor>>,
}

impl Resolved {
    pub fn redactor(&self) -> Option<Arc<Redactor>> {
        self.redactor.clone()
    }

    /// Gives the guest its variables and, if it has file secrets, the
    /// read-only folder `/run/secrets`.
    pub fn apply(&self, builder: &mut WasiCtxBuilder) -> Result<(), String> {
        for (name, Secret(value)) in &self.env {
            // Checked to be UTF-8 when read.
            builder.env(name, std::str::from_utf8(value).unwrap_or_default());
        }
        if let Some(dir) = &self.files {
            builder
                .preopened_dir(dir.path(), SECRETS_GUEST_DIR, FsPerms::ReadOnly)
                .map_err(|e| format!("cannot open the secrets folder for the guest as {SECRETS_GUEST_DIR}: {e:#}"))?;
        }
        Ok(())
    }
}

/// [`resolve`] on a blocking thread, as the files are read there; at once
/// for a job with no secrets.
pub(super) async fn resolve_blocking(job: &JobSpec, dirs: &CredentialDirs) -> Result<Resolved, String> {
    if job.secrets.is_empty() {
        return Ok(Resolved::default());
    }
    let (job, dirs) = (job.clone(), dirs.clone());
    tokio::task::spawn_blocking(move || resolve(&job, &dirs))
        .await
        .unwrap_or_else(|e| Err(format!("reading the job's secrets failed: {e}")))
}

/// `outcome` with the secrets' values redacted from its error message
/// (a trap's, the guest's own, an exit's).
pub(super) fn redact_outcome(outcome: RunOutcome, redactor: Option<&Redactor>) -> RunOutcome {
    match (outcome, redactor) {
        (RunOutcome::Failed { exit_code, error }, Some(redactor)) => {
            RunOutcome::Failed { exit_code, error: redactor.redact_str(&error) }
        }
        (outcome, _) => outcome,
    }
}

/// Reads every secret of `job`, writes its file secrets into a private
/// folder of their own, and builds the run's redactor. Blocking file work:
/// call it off the async workers.
pub(super) fn resolve(job: &JobSpec, dirs: &CredentialDirs) -> Result<Resolved, String> {
    let mut resolved = Resolved::default();
    let mut values: Vec<(&str, Secret)> = Vec::with_capacity(job.secrets.len());
    for secret in &job.secrets {
        let value = read(secret, dirs).map_err(|why| {
            format!("secret {}: {why}, or fix [secrets] {} in {}", secret.name, secret.name, job.source.display())
        })?;
        if value.0.len() < MIN_REDACTED_LEN {
            tracing::warn!(job = %job.name, secret = %secret.name,
                "secret is shorter than {MIN_REDACTED_LEN} bytes, so it is not redacted from the run's output");
        }
        values.push((&secret.name, value));
    }
    resolved.redactor =
        Redactor::new(values.iter().map(|(name, Secret(value))| (*name, value.as_slice()))).map(Arc::new);
    for (spec, (name, value)) in job.secrets.iter().zip(values) {
        match spec.delivery {
            Delivery::Env => {
                if std::str::from_utf8(&value.0).is_err() || value.0.contains(&0) {
                    return Err(format!(
                        "secret {name}: its value is not UTF-8 text without NUL bytes, so it cannot be an environment variable; declare it {{ from = \"{}\", as = \"file\" }} in {}",
                        spec.source,
                        job.source.display()
                    ));
                }
                resolved.env.push((name.to_owned(), value));
            }
            Delivery::File => {
                let dir = match &mut resolved.files {
                    Some(dir) => dir,
                    none => none.insert(private_dir().map_err(|e| {
                        format!("secret {name}: cannot create a private folder for the run's secret files: {e}")
                    })?),
                };
                write_private(&dir.path().join(name), &value.0)
                    .map_err(|e| format!("secret {name}: cannot write it for the guest: {e}"))?;
            }
        }
    }
    Ok(resolved)
}

/// Reads one secret's value, or says where it was looked for and how to
/// provide it.
fn read(secret: &SecretSpec, dirs: &CredentialDirs) -> Result<Secret, String> {
    let bytes = match &secret.source {
        SecretSource::Credential(name) => {
            let places: Vec<(String, &Path)> = [
                dirs.systemd.as_deref().map(|d| (format!("$CREDENTIALS_DIRECTORY ({})", d.display()), d)),
                dirs.state.as_deref().map(|d| (d.display().to_string(), d)),
            ]
            .into_iter()
            .flatten()
            .collect();
            if places.is_empty() {
                return Err(format!(
                    "credential {name:?}: this host has no credentials folder ($CREDENTIALS_DIRECTORY is not set and no state folder was given); run the host with --state DIR and create DIR/credentials/{name}"
                ));
            }
            let mut found = None;
            for (_, dir) in &places {
                let path = dir.join(name);
                match read_file(&path) {
                    Ok(bytes) => {
                        found = Some(bytes);
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("credential {name:?}: cannot read {}: {e}", path.display())),
                }
            }
            let Some(bytes) = found else {
                let looked: Vec<&str> = places.iter().map(|(label, _)| label.as_str()).collect();
                let unset = if dirs.systemd.is_none() { " ($CREDENTIALS_DIRECTORY is not set)" } else { "" };
                return Err(format!(
                    "credential {name:?} not found in {}{unset}; create the file",
                    looked.join(" or ")
                ));
            };
            strip_newline(bytes)
        }
        SecretSource::File(path) => match read_file(path) {
            Ok(bytes) => strip_newline(bytes),
            Err(e) => return Err(format!("cannot read {}: {e}; create the file", path.display())),
        },
        SecretSource::Env(var) => match std::env::var_os(var) {
            Some(value) => std::os::unix::ffi::OsStringExt::into_vec(value),
            None => {
                return Err(format!(
                    "the host's environment variable {var} is not set; set it where wasmcron is started"
                ));
            }
        },
    };
    Ok(Secret(bytes))
}

fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(MAX_SECRET + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SECRET {
        return Err(std::io::Error::other(format!("it is larger than the {MAX_SECRET} bytes a secret may have")));
    }
    Ok(bytes)
}

/// One trailing newline off, as `echo` and `systemd-creds` add one.
fn strip_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    bytes
}

/// A new folder only this user can enter (0700 from its creation on).
fn private_dir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new().prefix("wasmcron-secrets-").permissions(std::fs::Permissions::from_mode(0o700)).tempdir()
}

/// Writes `bytes` to a new file readable by this user only (0400).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o400).open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::load_file;

    /// A job declared in `dir` with `secrets` (TOML lines of `[secrets]`).
    fn job(dir: &Path, secrets: &str) -> JobSpec {
        let file = dir.join("a.toml");
        std::fs::write(&file, format!("[secrets]\n{secrets}")).unwrap();
        load_file(&file).unwrap()
    }

    fn value(resolved: &Resolved, name: &str) -> String {
        let (_, Secret(bytes)) = resolved.env.iter().find(|(n, _)| n == name).unwrap();
        String::from_utf8(bytes.clone()).unwrap()
    }

    fn folders(root: &Path) -> CredentialDirs {
        for dir in ["systemd", "state/credentials"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        CredentialDirs { systemd: Some(root.join("systemd")), state: Some(root.join("state/credentials")) }
    }

    #[test]
    fn credentials_are_read_from_systemd_first_then_the_state_folder() {
        let root = tempfile::tempdir().unwrap();
        let dirs = folders(root.path());
        std::fs::write(root.path().join("systemd/both"), "from systemd\n").unwrap();
        std::fs::write(root.path().join("state/credentials/both"), "from state\n").unwrap();
        std::fs::write(root.path().join("state/credentials/only-state"), "state value\n\n").unwrap();
        let job = job(root.path(), "BOTH = \"credential:both\"\nONLY = \"credential:only-state\"");
        let resolved = resolve(&job, &dirs).unwrap();
        assert_eq!(value(&resolved, "BOTH"), "from systemd", "$CREDENTIALS_DIRECTORY wins; one newline stripped");
        assert_eq!(value(&resolved, "ONLY"), "state value\n", "only one trailing newline is stripped");
    }

    #[test]
    fn a_missing_secret_names_itself_every_place_looked_and_the_fix() {
        let root = tempfile::tempdir().unwrap();
        let dirs = folders(root.path());
        let job = job(root.path(), "SLACK_WEBHOOK = \"credential:slack-webhook\"");
        let error = resolve(&job, &dirs).unwrap_err();
        assert_eq!(
            error,
            format!(
                "secret SLACK_WEBHOOK: credential \"slack-webhook\" not found in $CREDENTIALS_DIRECTORY ({}) or {}; create the file, or fix [secrets] SLACK_WEBHOOK in {}",
                root.path().join("systemd").display(),
                root.path().join("state/credentials").display(),
                root.path().join("a.toml").display()
            )
        );
        let state_only = CredentialDirs { systemd: None, ..dirs };
        let error = resolve(&job, &state_only).unwrap_err();
        assert!(error.contains("not found in /") && error.contains("($CREDENTIALS_DIRECTORY is not set)"), "{error}");
        let error = resolve(&job, &CredentialDirs::default()).unwrap_err();
        assert!(error.contains("this host has no credentials folder"), "{error}");

        let job = self::job(root.path(), "PGPASSWORD = \"file:pg_password\"\nTOKEN = \"env:WASMCRON_TEST_UNSET_VAR\"");
        let error = resolve(&job, &CredentialDirs::default()).unwrap_err();
        assert!(error.starts_with("secret PGPASSWORD: cannot read ") && error.contains("pg_password"), "{error}");
        std::fs::write(root.path().join("pg_password"), "pw\n").unwrap();
        let error = resolve(&job, &CredentialDirs::default()).unwrap_err();
        assert!(
            error.starts_with(
                "secret TOKEN: the host's environment variable WASMCRON_TEST_UNSET_VAR is not set; set it where wasmcron is started, or fix [secrets] TOKEN in"
            ),
            "{error}"
        );
    }

    #[test]
    fn host_variables_and_files_are_read_at_each_resolution() {
        let root = tempfile::tempdir().unwrap();
        let job = job(root.path(), "PATH_COPY = \"env:PATH\"\nPW = \"file:pw\"");
        std::fs::write(root.path().join("pw"), "first\n").unwrap();
        let first = resolve(&job, &CredentialDirs::default()).unwrap();
        assert_eq!(value(&first, "PATH_COPY"), std::env::var("PATH").unwrap());
        assert_eq!(value(&first, "PW"), "first");
        std::fs::write(root.path().join("pw"), "second").unwrap();
        assert_eq!(value(&resolve(&job, &CredentialDirs::default()).unwrap(), "PW"), "second", "rotation is seen");
    }

    #[test]
    fn file_secrets_are_private_files_removed_with_the_run() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cert.pem"), b"\xff\x00binary cert\n").unwrap();
        let job = job(root.path(), "DB_CERT = { from = \"file:cert.pem\", as = \"file\" }");
        let resolved = resolve(&job, &CredentialDirs::default()).unwrap();
        assert!(resolved.env.is_empty(), "a file secret is no variable");
        let dir = resolved.files.as_ref().unwrap().path().to_owned();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("DB_CERT")), 0o400);
        assert_eq!(std::fs::read(dir.join("DB_CERT")).unwrap(), b"\xff\x00binary cert");
        drop(resolved);
        assert!(!dir.exists(), "removed when the run's secrets are dropped");
    }

    #[test]
    fn a_value_no_variable_can_hold_must_be_a_file() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("bin"), b"\xff\xfe\xfd\xfc").unwrap();
        let job = job(root.path(), "BIN = \"file:bin\"");
        let error = resolve(&job, &CredentialDirs::default()).unwrap_err();
        assert!(error.contains("cannot be an environment variable; declare it { from = \"file:"), "{error}");
    }

    #[test]
    fn nothing_shows_a_value_in_debug_and_errors_are_redacted() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("pw"), "hunter2-hunter2").unwrap();
        let job = job(root.path(), "PW = \"file:pw\"");
        let resolved = resolve(&job, &CredentialDirs::default()).unwrap();
        assert!(!format!("{resolved:?}").contains("hunter2"), "{resolved:?}");
        assert_eq!(format!("{:?}", Secret(b"hunter2".to_vec())), "Secret(..)");
        let failed = RunOutcome::Failed { exit_code: None, error: "guest said hunter2-hunter2!".into() };
        let redacted = redact_outcome(failed, resolved.redactor().as_deref());
        assert_eq!(redacted.error().unwrap(), "guest said [REDACTED:PW]!");
    }
}
