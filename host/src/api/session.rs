//! The dashboard's session: `POST /login` takes a token from the login
//! form and keeps it in the session cookie, `POST /logout` drops it, and
//! `GET /api/v1/session` tells a page what its session may do.

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};

use super::auth::{Access, SESSION_COOKIE, cross_site, refuse_cross_site};
use super::error::{NoParams, QueryArgs};
use super::{ApiError, ApiState};

#[derive(Deserialize)]
pub struct Login {
    token: String,
}

/// Where the login form is sent back when its token is not the host's.
const TRY_AGAIN: &str = "/login?error=invalid";

pub async fn login(
    State(state): State<ApiState>,
    headers: HeaderMap,
    form: Result<Form<Login>, FormRejection>,
) -> Result<Response, ApiError> {
    if cross_site(&headers) {
        return Err(refuse_cross_site());
    }
    let Ok(Form(Login { token })) = form else {
        return Ok(Redirect::to(TRY_AGAIN).into_response());
    };
    let token = token.trim();
    if state.tokens.access(token).is_none() {
        tracing::info!("dashboard login refused: not one of this host's tokens");
        return Ok(Redirect::to(TRY_AGAIN).into_response());
    }
    let mut cookie = session_cookie(token.to_owned());
    // Behind a TLS-terminating proxy the browser must send it over TLS only.
    let forwarded_tls = headers.get("x-forwarded-proto").is_some_and(|proto| proto.as_bytes() == b"https");
    cookie.set_secure(forwarded_tls);
    Ok(with_cookie(Redirect::to("/"), cookie))
}

pub async fn logout(headers: HeaderMap) -> Result<Response, ApiError> {
    if cross_site(&headers) {
        return Err(refuse_cross_site());
    }
    let mut cookie = session_cookie(String::new());
    cookie.make_removal();
    Ok(with_cookie(Redirect::to("/login"), cookie))
}

fn session_cookie(token: String) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, token)).http_only(true).same_site(SameSite::Strict).path("/").build()
}

/// A `303 See Other` to where `redirect` points, setting `cookie`.
fn with_cookie(redirect: Redirect, cookie: Cookie<'_>) -> Response {
    let mut response = redirect.into_response();
    // A token is visible ASCII and percent-encoding keeps it so.
    let value = HeaderValue::from_str(&cookie.encoded().to_string()).expect("an encoded cookie is a header value");
    response.headers_mut().insert(header::SET_COOKIE, value);
    response
}

#[derive(Serialize)]
struct Session {
    access: Access,
}

pub async fn show(Extension(access): Extension<Access>, _: QueryArgs<NoParams>) -> Response {
    Json(Session { access }).into_response()
}
