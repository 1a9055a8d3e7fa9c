//! Sign-in: sessions in an HttpOnly, SameSite=Strict cookie, bearer API
//! tokens, CSRF tokens on forms, and a limit on failed sign-ins.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use super::{AppError, AppState};
use crate::store::accounts::{Account, Role, random_token};
use crate::store::{Store, StoreError};

/// A form whose only field is the CSRF token (pause, resume, delete, sign
/// out).
#[derive(Debug, serde::Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token, from the page.
    #[serde(default)]
    pub csrf: String,
}

/// The session cookie.
pub const COOKIE: &str = "pw_session";

/// Failed sign-ins allowed per address per minute.
const MAX_FAILURES: u32 = 5;

/// Creates the `admin` user on first start, with `PORTWATCH_ADMIN_PASSWORD`
/// or a generated password; returns the password when it was generated, so
/// that it is printed once.
pub fn ensure_admin(store: &Store) -> Result<Option<String>, StoreError> {
    if store.user_count()? > 0 {
        return Ok(None);
    }
    let (password, generated) = match std::env::var("PORTWATCH_ADMIN_PASSWORD") {
        Ok(password) if !password.is_empty() => (password, false),
        _ => (random_token()[..20].to_owned(), true),
    };
    store.create_user("admin", &password, Role::Admin)?;
    Ok(generated.then_some(password))
}

fn cookie_value(parts: &Parts, name: &str) -> Option<String> {
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
pub async fn account(parts: &Parts, state: &AppState) -> Result<Option<Account>, AppError> {
    if let Some(token) = bearer(parts) {
        return state.store(move |store| store.token(&token)).await;
    }
    match cookie_value(parts, COOKIE) {
        Some(token) => state.store(move |store| store.session(&token)).await,
        None => Ok(None),
    }
}

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

/// An API caller who must be signed in (session or bearer token).
pub struct ApiUser(pub Account);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        account(parts, state)
            .await?
            .map(ApiUser)
            .ok_or(AppError::Unauthorized)
    }
}

impl Account {
    /// Refuses read-only accounts.
    pub fn require_admin(&self) -> Result<(), AppError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Read => Err(AppError::Forbidden("this account is read-only")),
        }
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, sent: &str) -> Result<(), AppError> {
        let expected = self.csrf.as_bytes();
        let same = !expected.is_empty()
            && expected.len() == sent.len()
            && expected
                .iter()
                .zip(sent.as_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "the form's security token is missing or stale: reload the page",
            ))
        }
    }
}

/// The client's address, when the server knows it.
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

impl AppState {
    /// Refuses a sign-in from an address with too many recent failures.
    pub fn login_allowed(&self, ip: Option<IpAddr>) -> Result<(), AppError> {
        let Some(ip) = ip else { return Ok(()) };
        let mut failures = self.failed_logins.lock().expect("login lock");
        failures.retain(|_, (_, since)| since.elapsed() < Duration::from_secs(60));
        match failures.get(&ip) {
            Some((count, _)) if *count >= MAX_FAILURES => Err(AppError::TooMany),
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in.
    pub fn login_failed(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            let mut failures = self.failed_logins.lock().expect("login lock");
            let entry = failures.entry(ip).or_insert((0, Instant::now()));
            entry.0 += 1;
        }
    }
}
