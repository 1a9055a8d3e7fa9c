//! The rules every request passes, so that no handler can forget them:
//!
//! - A change (any method but GET, HEAD and OPTIONS) that a browser says
//!   comes from another origin (`Sec-Fetch-Site`, or an `Origin` that is
//!   neither this host nor `--public-url`) is refused with 403, signed in or
//!   not. Bearer-token calls are not browser calls and skip this check.
//! - A change made with the session cookie must carry the session's CSRF
//!   token: the `csrf` field of a form, or the `X-CSRF-Token` header.
//! - A heartbeat sensor's push URL (`/push/TOKEN`) is exempt: its token
//!   is the credential, and jobs call it without a session.
//! - A change needs an admin (session or token); read-only accounts may
//!   only sign out.
//! - Every response to a signed-in request gets `Cache-Control: no-store`
//!   unless the handler chose otherwise.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{COOKIE, CSRF_HEADER, check_csrf, cookie_value, require_admin};
use super::{AppError, AppState};

/// The largest form body read for its CSRF token (the router refuses
/// larger bodies anyway).
const MAX_FORM: usize = 64 * 1024;

pub(super) async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let bearer = parts.headers.contains_key(header::AUTHORIZATION);
    let cookie = cookie_value(&parts, COOKIE);
    let signed_in = bearer || cookie.is_some();
    let mut body = body;
    let path = parts.uri.path().to_owned();
    // A push URL's token is its credential: a job's call needs no session
    // (and a browser's cookie, if one comes along, changes nothing).
    let push = path.starts_with("/push/");
    if !parts.method.is_safe() && path != "/login" && !push {
        if !bearer && cross_origin(&parts.headers, state.public_url.as_deref()) {
            return AppError::Forbidden("a change from another site is refused").into_response();
        }
        let account = match super::auth::account(&mut parts, &state).await {
            Ok(account) => account,
            Err(error) => return error.into_response(),
        };
        if let Some(account) = account {
            if !bearer {
                let (sent, kept) = match csrf_sent(&parts.headers, body).await {
                    Ok(found) => found,
                    Err(response) => return response,
                };
                if let Err(error) = check_csrf(&account, &sent) {
                    return error.into_response();
                }
                body = kept;
            }
            if path != "/logout"
                && let Err(error) = require_admin(&account)
            {
                return error.into_response();
            }
        }
    }
    let api = parts.uri.path().starts_with("/api/");
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if api {
        response = json_error(response).await;
    }
    if signed_in {
        response
            .headers_mut()
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    response
}

/// An API error that a request extractor answered in plain text (a body
/// that is not JSON, a bad query or path) becomes `{"error": "…"}`, as
/// every other API error is.
async fn json_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !status.is_client_error() || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let text = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_owned()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::json!({ "error": text }).to_string();
    Response::from_parts(parts, Body::from(body))
}

/// Whether the browser says the request comes from another origin.
fn cross_origin(headers: &HeaderMap, public_url: Option<&str>) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text("sec-fetch-site") {
        // "none" is a request the user typed or bookmarked.
        if !matches!(site, "same-origin" | "none") {
            return true;
        }
    }
    let Some(origin) = text("origin") else {
        return false;
    };
    let host = text("host").unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    let public = public_url.map(|url| url.trim_end_matches('/'));
    !(origin_host.eq_ignore_ascii_case(host)
        || public.is_some_and(|p| p.eq_ignore_ascii_case(origin)))
}

/// The CSRF token a change carries: the header, or the `csrf` field of a
/// form (the body is read and handed on unchanged).
async fn csrf_sent(headers: &HeaderMap, body: Body) -> Result<(String, Body), Response> {
    if let Some(token) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        return Ok((token.to_owned(), body));
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Ok((String::new(), body));
    }
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        AppError::BadRequest(format!("the form is larger than {} KiB", MAX_FORM / 1024))
            .into_response()
    })?;
    let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .ok()
        .and_then(|fields| fields.into_iter().find(|(k, _)| k == "csrf"))
        .map(|(_, v)| v)
        .unwrap_or_default();
    Ok((token, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn origins_other_than_this_host_are_cross_origin() {
        let same = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(!cross_origin(&same, None));
        let other_port = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9999"),
        ]);
        assert!(cross_origin(&other_port, None));
        let null = headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert!(cross_origin(&null, None));
        let proxied = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://mon.example.com"),
        ]);
        assert!(!cross_origin(&proxied, Some("https://mon.example.com/")));
        assert!(cross_origin(&proxied, Some("https://other.example.com")));
        let site = headers(&[("sec-fetch-site", "same-site")]);
        assert!(
            cross_origin(&site, None),
            "another port of the same host is same-site"
        );
        assert!(!cross_origin(
            &headers(&[("sec-fetch-site", "same-origin")]),
            None
        ));
        assert!(!cross_origin(&headers(&[]), None), "curl sends neither");
    }
}
