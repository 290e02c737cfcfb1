//! The dashboard: `GET /` (the app, for a browser with a session cookie;
//! anyone else is sent to `/login`), `GET /login` (the token form, which
//! posts to `POST /login` in [`super::session`]) and `GET /assets/{file}`.
//!
//! The page is a thin client of `/api/v1`, as scripts use it: plain HTML,
//! CSS and ES modules from `host/src/dashboard/`, compiled into the binary
//! with `include_str!`, so it works offline and needs no build step. Every
//! page carries a Content-Security-Policy that allows this origin only.
//! Assets are served with an `ETag` and `Cache-Control: no-cache`: a
//! browser asks again each time and is answered `304` until the binary
//! changes, so it never runs a stale script against a newer API.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::{PathArg, QueryArgs};
use super::{ApiError, ApiState};

/// Scripts, styles, images and connections from this origin only: no
/// CDN, no inline script, and no framing by another site.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../dashboard/index.html");
const LOGIN: &str = include_str!("../dashboard/login.html");
/// Where the login page says why the last attempt failed.
const LOGIN_ERROR_SLOT: &str = "<!-- login error -->";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! assets {
    ($($name:literal => $type:literal),* $(,)?) => {
        &[$(Asset { name: $name, content_type: $type, body: include_str!(concat!("../dashboard/", $name)) }),*]
    };
}

/// Every file under `/assets/`.
const ASSETS: &[Asset] = assets! {
    "app.css" => "text/css; charset=utf-8",
    "app.js" => "text/javascript; charset=utf-8",
    "api.js" => "text/javascript; charset=utf-8",
    "live.js" => "text/javascript; charset=utf-8",
    "dom.js" => "text/javascript; charset=utf-8",
    "charts.js" => "text/javascript; charset=utf-8",
    "actions.js" => "text/javascript; charset=utf-8",
    "jobs.js" => "text/javascript; charset=utf-8",
    "runs.js" => "text/javascript; charset=utf-8",
    "run.js" => "text/javascript; charset=utf-8",
    "icon.svg" => "image/svg+xml",
};

/// Each asset's `ETag`, in the order of `ASSETS`: a digest of its bytes.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let digest = Sha256::digest(asset.body.as_bytes());
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// `GET /`: the app, or `303` to `/login` without a valid session.
pub async fn index(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if super::auth::session_access(&state.tokens, &headers).is_none() {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, HeaderValue::from_static("/login"))]).into_response();
    }
    page(INDEX.to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginQuery {
    /// Why the last attempt was refused (`invalid`).
    error: Option<String>,
}

/// `GET /login`: the token form, saying why the last attempt failed.
pub async fn login(QueryArgs(query): QueryArgs<LoginQuery>) -> Response {
    let message = match query.error.as_deref() {
        None => None,
        Some("invalid") => Some(
            "That token is not this host's. Paste the contents of STATE/token (admin) or STATE/token.read (read-only).",
        ),
        Some(_) => Some("Logging in failed; paste a token again."),
    };
    let slot = message
        .map(|message| format!("<p id=\"login-error\" class=\"error\" role=\"alert\">{message}</p>"))
        .unwrap_or_default();
    page(LOGIN.replace(LOGIN_ERROR_SLOT, &slot))
}

fn page(html: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        html,
    )
        .into_response()
}

/// `GET /assets/{file}`: an embedded file, or `304` when the browser's
/// copy (`If-None-Match`) is this one.
pub async fn asset(PathArg(file): PathArg<String>, headers: HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|asset| asset.name == file) else {
        let names: Vec<&str> = ASSETS.iter().map(|asset| asset.name).collect();
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "no_asset",
            format!("the dashboard has no file {file:?}; its files are {}", names.join(", ")),
        )
        .into_response();
    };
    let (asset, etag) = (&ASSETS[index], HeaderValue::from_str(&etags()[index]).expect("hex in quotes"));
    let cache = [(header::ETAG, etag.clone()), (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    let content = [
        (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    (cache, content, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_scripts_import_is_served() {
        for asset in ASSETS.iter().filter(|asset| asset.name.ends_with(".js")) {
            for line in asset.body.lines().filter(|line| line.starts_with("import ")) {
                let target = line.rsplit_once("'./").map(|(_, rest)| rest.trim_end_matches("';")).unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|served| served.name == target),
                    "{} imports {target:?}, which ASSETS does not serve: {line}",
                    asset.name
                );
            }
        }
        for page in [INDEX, LOGIN] {
            for reference in page.split("\"/assets/").skip(1) {
                let name = reference.split('"').next().unwrap_or_default();
                assert!(ASSETS.iter().any(|asset| asset.name == name), "a page links /assets/{name}, not served");
            }
        }
        assert!(LOGIN.contains(LOGIN_ERROR_SLOT), "login.html keeps the slot for the error");
    }

    #[test]
    fn etags_differ_per_file_and_are_quoted() {
        let tags = etags();
        assert_eq!(tags.len(), ASSETS.len());
        let distinct: std::collections::BTreeSet<_> = tags.iter().collect();
        assert_eq!(distinct.len(), tags.len());
        assert!(tags.iter().all(|tag| tag.starts_with('"') && tag.ends_with('"')));
    }
}
