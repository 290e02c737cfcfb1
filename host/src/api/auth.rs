//! Bearer tokens: an admin token that may do anything, and a read-only
//! token that may only read. At the first start the host writes a random
//! one of each to `STATE/token` and `STATE/token.read` (mode 0600); an
//! operator may supply the admin token instead (`--token-file`,
//! `WASMCRON_TOKEN`). Presented tokens are compared in constant time.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cookie::Cookie;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};

/// The admin token's file in the state folder.
pub const ADMIN_FILE: &str = "token";
/// The read-only token's file in the state folder.
pub const READ_FILE: &str = "token.read";

/// A supplied token shorter than this is refused: it could be guessed.
const MIN_LENGTH: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// May read: `GET` routes.
    Read,
    /// May also change state: trigger, cancel, retry, pause, resume.
    Admin,
}

/// The host's two tokens, kept as digests so that comparing a presented
/// token costs the same whatever its length.
pub struct Tokens {
    admin: [u8; 32],
    read: [u8; 32],
}

impl Tokens {
    pub fn new(admin: &str, read: &str) -> Self {
        Tokens { admin: digest(admin), read: digest(read) }
    }

    /// The host's tokens: the supplied admin token, or the one in
    /// `STATE/token`; the read-only one in `STATE/token.read`. Files that
    /// do not exist yet are written, with fresh random tokens.
    pub fn load_or_create(state: &Path, supplied_admin: Option<String>) -> anyhow::Result<Tokens> {
        std::fs::create_dir_all(state)
            .with_context(|| format!("cannot create the state folder {}; pass --state DIR", state.display()))?;
        let admin = match supplied_admin {
            Some(token) => token,
            None => read_or_create(&state.join(ADMIN_FILE))?,
        };
        let read = read_or_create(&state.join(READ_FILE))?;
        if admin == read {
            bail!(
                "the admin token and the read-only token ({}) are the same; give them different tokens",
                state.join(READ_FILE).display()
            );
        }
        Ok(Tokens::new(&admin, &read))
    }

    /// What a presented token may do, if anything.
    pub fn access(&self, presented: &str) -> Option<Access> {
        let presented = digest(presented);
        // Both compared, always: the time taken says nothing about either.
        let admin = presented.ct_eq(&self.admin);
        let read = presented.ct_eq(&self.read);
        if bool::from(admin) {
            Some(Access::Admin)
        } else if bool::from(read) {
            Some(Access::Read)
        } else {
            None
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Checks a token read from a file or the environment; `source` names
/// where it came from.
pub fn validate(token: &str, source: &str) -> anyhow::Result<String> {
    let token = token.trim();
    if token.len() < MIN_LENGTH {
        bail!(
            "{source}: the token is {} characters; use at least {MIN_LENGTH} (e.g. `openssl rand -hex 32`)",
            token.len()
        );
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("{source}: the token may hold only visible ASCII characters, no spaces");
    }
    Ok(token.to_owned())
}

/// Reads the token in `path`, or writes a new random one there (0600).
fn read_or_create(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_readable_by_others(path);
            validate(&text, &path.display().to_string())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let token = random_token()?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot write the token file {}", path.display()))?;
            writeln!(file, "{token}").with_context(|| format!("cannot write the token file {}", path.display()))?;
            tracing::info!(file = %path.display(), "wrote a new API token");
            Ok(token)
        }
        Err(error) => Err(error).with_context(|| format!("cannot read the token file {}", path.display())),
    }
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(file = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the token file is readable by others; `chmod 600` it");
    }
}

/// 32 random bytes, in hex.
fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The cookie the dashboard's login sets: the token itself, `HttpOnly` and
/// `SameSite=Strict`, so that the page's scripts never hold it and other
/// sites' pages cannot send it.
pub const SESSION_COOKIE: &str = "wasmcron_session";

/// The access the request's session cookie grants, if it carries one of
/// this host's tokens.
pub fn session_access(tokens: &Tokens, headers: &HeaderMap) -> Option<Access> {
    tokens.access(&session_token(headers)?)
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse_encoded)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == SESSION_COOKIE)
        .map(|cookie| cookie.value().to_owned())
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// Whether a browser says the request was made by another site's page:
/// by `Sec-Fetch-Site`, which current browsers send on every request, or
/// failing that by an `Origin` that is not the host asked. A request with
/// neither header (curl, a script) is not a browser's and is let through,
/// as Go's `CrossOriginProtection` and Sidekiq 8 do.
pub fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let authority = origin.to_str().ok().and_then(|origin| origin.split_once("://")).map(|(_, authority)| authority);
    authority.is_none() || authority != headers.get(header::HOST).and_then(|host| host.to_str().ok())
}

/// The answer to a request [`cross_site`] says another site's page made.
pub fn refuse_cross_site() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_site",
        "refused: the request came from another site's page (Origin / Sec-Fetch-Site); use the dashboard on this host, or send `Authorization: Bearer TOKEN`",
    )
}

/// Middleware on every route but the open ones (`is_open`): `401` without
/// a valid bearer token or session cookie, `403` for the read-only token
/// on anything but a read, and `403` for a change asked with the cookie by
/// another site's page. The request goes on carrying its [`Access`].
pub async fn authorize(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let (access, by_cookie) = match bearer_token(headers) {
        Some(presented) => match state.tokens.access(presented) {
            Some(access) => (access, false),
            None => {
                return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the bearer token is not this host's")
                    .into_response();
            }
        },
        None => match session_access(&state.tokens, headers) {
            Some(access) => (access, true),
            None if session_token(headers).is_some() => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the session cookie holds no token of this host's (was it changed?); log in again at /login",
                )
                .into_response();
            }
            None => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "send `Authorization: Bearer TOKEN`; the host's tokens are in STATE/token (admin) and STATE/token.read",
                )
                .into_response();
            }
        },
    };
    let writes = !matches!(*request.method(), Method::GET | Method::HEAD);
    if writes && by_cookie && cross_site(headers) {
        return refuse_cross_site().into_response();
    }
    if writes && access == Access::Read {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the read-only token may only read; use the admin token (STATE/token) to change anything",
        )
        .into_response();
    }
    request.extensions_mut().insert(access);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_written_once_private_and_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let first = Tokens::load_or_create(dir.path(), None).unwrap();
        let admin = std::fs::read_to_string(dir.path().join(ADMIN_FILE)).unwrap();
        let read = std::fs::read_to_string(dir.path().join(READ_FILE)).unwrap();
        for file in [ADMIN_FILE, READ_FILE] {
            let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        assert_eq!(first.access(admin.trim()), Some(Access::Admin));
        assert_eq!(first.access(read.trim()), Some(Access::Read));
        assert_eq!(first.access("not-the-token-at-all"), None);
        assert_eq!(first.access(""), None);

        // The second start keeps them.
        let second = Tokens::load_or_create(dir.path(), None).unwrap();
        assert_eq!(second.access(admin.trim()), Some(Access::Admin));
        assert_eq!(std::fs::read_to_string(dir.path().join(ADMIN_FILE)).unwrap(), admin);
    }

    #[test]
    fn a_supplied_token_replaces_the_file_and_must_be_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::load_or_create(dir.path(), Some("supplied-token-0123456789".into())).unwrap();
        assert_eq!(tokens.access("supplied-token-0123456789"), Some(Access::Admin));
        assert!(!dir.path().join(ADMIN_FILE).exists(), "a supplied admin token is not written down");
        let error = validate("short", "WASMCRON_TOKEN").unwrap_err().to_string();
        assert!(error.contains("WASMCRON_TOKEN") && error.contains("at least 16"), "{error}");
        let error = validate("has a space in the middle", "f").unwrap_err().to_string();
        assert!(error.contains("no spaces"), "{error}");
    }
}
