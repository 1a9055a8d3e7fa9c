//! Sign-in: sessions in an HttpOnly, SameSite=Strict cookie, bearer API
//! tokens, CSRF tokens on forms, and a limit on failed sign-ins.

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;

use super::{AppError, AppState};
use crate::store::Storage;
use crate::store::StoreError;
use crate::store::accounts::{Account, Role, random_token};
use std::net::{IpAddr, SocketAddr};

/// The largest form a [`CsrfForm`] reads.
const MAX_FORM: usize = 64 * 1024;

/// The CSRF field of a form, whatever else it holds.
#[derive(Debug, serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A form with no fields but its CSRF token (pause, resume, delete, sign
/// out).
#[derive(Debug, serde::Deserialize)]
pub struct NoFields {}

/// A form posted with the session cookie, admitted only when its `csrf`
/// field is the session's CSRF token (else 403). A handler that changes
/// something from a form takes its form through this extractor, so it
/// cannot forget the check. Bearer-token calls carry no CSRF token and need
/// none: a browser never sends the token by itself.
pub struct CsrfForm<T = NoFields>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let signed = signed_in(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
            AppError::BadRequest(format!("the form is larger than {MAX_FORM} bytes"))
                .into_response()
        })?;
        match signed {
            Some((account, true)) => {
                let sent: CsrfField = serde_urlencoded::from_bytes(&bytes)
                    .map_err(|e| AppError::BadRequest(e.to_string()).into_response())?;
                check_csrf(&account, &sent.csrf).map_err(IntoResponse::into_response)?;
            }
            Some((_, false)) => {}
            None => return Err(Redirect::to("/login").into_response()),
        }
        serde_urlencoded::from_bytes(&bytes)
            .map(CsrfForm)
            .map_err(|e| AppError::BadRequest(format!("the form: {e}")).into_response())
    }
}

/// The session cookie.
pub const COOKIE: &str = "pw_session";

/// The cookie that ties the sign-in form to the browser that loaded it
/// (a CSRF token before there is a session).
pub const LOGIN_COOKIE: &str = "pw_login";

/// Creates the `admin` user on first start, with `chosen` (serve passes
/// `PORTWATCH_ADMIN_PASSWORD`) or, when it is unset or empty, a generated
/// password; returns the password when it was generated, so that it is
/// printed once.
pub async fn ensure_admin<S: Storage>(
    db: &S,
    chosen: Option<String>,
) -> Result<Option<String>, StoreError> {
    if db.user_count().await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match chosen {
        Some(password) if !password.is_empty() => (password, false),
        _ => (random_token()[..20].to_owned(), true),
    };
    match db
        .create_user("admin".into(), password.clone(), Role::Admin)
        .await
    {
        Ok(()) => Ok(generated.then_some(password)),
        // Another node sharing the store created it a moment ago: its
        // password is the one it printed.
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

pub(super) fn cookie_value(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn bearer(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(|t| t.trim().to_owned())
}

/// The signed-in account of a request, from its session cookie or bearer
/// token.
pub async fn account(parts: &mut Parts, state: &AppState) -> Result<Option<Account>, AppError> {
    Ok(signed_in(parts, state).await?.map(|(account, _)| account))
}

/// Who signed a request in, looked up once per request and kept in its
/// extensions for the extractors after the first.
#[derive(Clone)]
struct SignedIn(Option<(Account, bool)>);

/// The account and whether it came from the session cookie (rather than a
/// bearer token, which a browser never sends by itself).
async fn signed_in(
    parts: &mut Parts,
    state: &AppState,
) -> Result<Option<(Account, bool)>, AppError> {
    if let Some(SignedIn(known)) = parts.extensions.get::<SignedIn>() {
        return Ok(known.clone());
    }
    let found = if let Some(token) = bearer(parts) {
        let account = state.db.token(token).await?;
        account.map(|a| (a, false))
    } else {
        match cookie_value(parts, COOKIE) {
            Some(token) => {
                let account = state.db.session(token).await?;
                account.map(|a| (a, true))
            }
            None => None,
        }
    };
    parts.extensions.insert(SignedIn(found.clone()));
    Ok(found)
}

/// Whether a request's credentials still sign someone in (a live stream
/// re-checks them, so that signing out or revoking a token ends it).
pub(super) async fn still_signed_in(parts: &Parts, state: &AppState) -> Result<bool, AppError> {
    Ok(if let Some(token) = bearer(parts) {
        state.db.token(token).await?.is_some()
    } else if let Some(token) = cookie_value(parts, COOKIE) {
        state.db.session(token).await?.is_some()
    } else {
        false
    })
}

/// The header that carries the CSRF token on API calls made with the
/// session cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A page visitor who must be signed in; others are sent to /login.
pub struct PageUser(pub Account);

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match account(parts, state).await {
            Ok(Some(account)) => Ok(PageUser(account)),
            Ok(None) => Err(Redirect::to("/login").into_response()),
            Err(error) => Err(error.into_response()),
        }
    }
}

/// An API caller who must be signed in (session or bearer token). A call
/// that changes something with the session cookie must also carry the
/// session's CSRF token in the `X-CSRF-Token` header: a page on another
/// origin can make the browser send the cookie, but not that header.
pub struct ApiUser(pub Account);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (account, by_cookie) = signed_in(parts, state)
            .await?
            .ok_or(AppError::Unauthorized)?;
        if by_cookie && !parts.method.is_safe() {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            check_csrf(&account, sent)?;
        }
        Ok(ApiUser(account))
    }
}

/// A signed-in admin (session or token). On a page, a visitor who is not
/// signed in is sent to /login; on the API, 401. A read-only account gets
/// 403 either way.
pub struct Admin(pub Account);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let account = if parts.uri.path().starts_with("/api/") {
            ApiUser::from_request_parts(parts, state)
                .await
                .map_err(IntoResponse::into_response)?
                .0
        } else {
            PageUser::from_request_parts(parts, state).await?.0
        };
        require_admin(&account).map_err(IntoResponse::into_response)?;
        Ok(Admin(account))
    }
}

/// Refuses read-only accounts.
pub(super) fn require_admin(account: &Account) -> Result<(), AppError> {
    match account.role {
        Role::Admin => Ok(()),
        Role::Read => Err(AppError::Forbidden("this account is read-only")),
    }
}

/// Refuses a form whose CSRF token is not this session's.
pub(super) fn check_csrf(account: &Account, sent: &str) -> Result<(), AppError> {
    if crate::store::accounts::same_secret(&account.csrf, sent) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "the form's security token is missing or stale: reload the page",
        ))
    }
}

/// The client's address: the peer's, or, when the peer is a trusted
/// reverse proxy (`--trusted-proxy`), the nearest untrusted address in
/// `X-Forwarded-For` or `Forwarded`.
pub fn client_ip(parts: &Parts, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())?;
    if !trusted.iter().any(|net| net.contains(peer)) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = forwarded_for(&parts.headers);
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !trusted.iter().any(|net| net.contains(*ip)))
            .unwrap_or(peer),
    )
}

/// The addresses a request passed through, nearest last, from
/// `X-Forwarded-For` or, without it, `Forwarded: for=`.
fn forwarded_for(headers: &axum::http::HeaderMap) -> Vec<IpAddr> {
    let values = |name| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let xff = values("x-forwarded-for");
    let items: Vec<String> = if xff.is_empty() {
        values("forwarded")
            .iter()
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.eq_ignore_ascii_case("for")
                        .then(|| value.trim_matches('"').to_owned())
                })
            })
            .collect()
    } else {
        xff
    };
    items
        .iter()
        .filter_map(|item| parse_forwarded_address(item))
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:443`, `[2001:db8::1]:443` or `2001:db8::1`.
fn parse_forwarded_address(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')?.split(']').next()?.parse().ok()
}

/// An address block, as `--trusted-proxy` takes it: `127.0.0.1/32`,
/// `10.0.0.0/8`, `::1` (a single address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = address.trim().parse().map_err(|_| {
            format!("'{text}' is not an address block: write e.g. 127.0.0.1/32 or 10.0.0.0/8")
        })?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{text}': the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(peer: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::get("/");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        parts
            .extensions
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        parts
    }

    #[test]
    fn forwarded_headers_are_believed_only_from_a_trusted_proxy() {
        let trusted: Vec<Cidr> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let xff = [("x-forwarded-for", "203.0.113.9, 10.1.2.3")];
        // From the proxy: the nearest untrusted hop is the client.
        assert_eq!(
            client_ip(&parts("127.0.0.1:5000", &xff), &trusted),
            Some("203.0.113.9".parse().unwrap())
        );
        // From anyone else, the header is a lie and ignored.
        assert_eq!(
            client_ip(&parts("198.51.100.4:5000", &xff), &trusted),
            Some("198.51.100.4".parse().unwrap())
        );
        // Without --trusted-proxy nothing is believed.
        assert_eq!(
            client_ip(&parts("127.0.0.1:5000", &xff), &[]),
            Some("127.0.0.1".parse().unwrap())
        );
        // A client cannot hide behind a spoofed leftmost entry.
        let spoof = [("x-forwarded-for", "127.0.0.1, 203.0.113.9")];
        assert_eq!(
            client_ip(&parts("127.0.0.1:5000", &spoof), &trusted),
            Some("203.0.113.9".parse().unwrap())
        );
        let forwarded = [("forwarded", "for=\"[2001:db8::5]:4711\";proto=https")];
        assert_eq!(
            client_ip(&parts("127.0.0.1:5000", &forwarded), &trusted),
            Some("2001:db8::5".parse().unwrap())
        );
    }

    fn fresh_store(name: &str) -> (std::path::PathBuf, crate::store::Db) {
        let dir = std::env::temp_dir().join(format!("portwatch-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = crate::store::Db::open(&dir.join("t.db"), 2).unwrap();
        (dir, store)
    }

    /// The first start creates `admin` with a generated password, shown
    /// once (also when the chosen password is empty); later starts create
    /// nobody and show nothing.
    #[tokio::test]
    async fn the_first_admin_is_created_once_with_a_password_that_signs_in() {
        let (dir, store) = fresh_store("admin-generated");
        let password = ensure_admin(&store, Some(String::new()))
            .await
            .unwrap()
            .expect("generated and shown: an empty password is no password");
        assert_eq!(password.len(), 20);
        assert!(
            store
                .login("admin".into(), password.clone())
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(store.user_count().await.unwrap(), 1);
        assert_eq!(
            ensure_admin(&store, None).await.unwrap(),
            None,
            "only on the first start"
        );
        assert_eq!(store.user_count().await.unwrap(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A chosen password is used as it is and never shown.
    #[tokio::test]
    async fn a_chosen_admin_password_is_used_and_not_shown() {
        let (dir, store) = fresh_store("admin-chosen");
        assert_eq!(
            ensure_admin(&store, Some("chosen words".into()))
                .await
                .unwrap(),
            None
        );
        assert!(
            store
                .login("admin".into(), "chosen words".into())
                .await
                .unwrap()
                .is_some()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn address_blocks_parse_and_match() {
        let net: Cidr = "192.0.2.0/24".parse().unwrap();
        assert!(net.contains("192.0.2.200".parse().unwrap()));
        assert!(!net.contains("192.0.3.1".parse().unwrap()));
        assert!(net.contains("::ffff:192.0.2.1".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("203.0.113.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("proxy".parse::<Cidr>().is_err());
    }
}
