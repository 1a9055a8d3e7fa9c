//! Users, sessions, API tokens and public status pages.
//!
//! Passwords are stored as argon2id hashes. Session and API tokens are
//! random 256-bit values shown to their owner once; the store keeps only
//! their SHA-256, which is enough for values that cannot be guessed.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Store, StoreError};

/// What a user or token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Look, never change.
    Read,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Read => "read",
        }
    }

    pub(crate) fn parse(text: &str) -> Role {
        if text == "admin" {
            Role::Admin
        } else {
            Role::Read
        }
    }
}

/// A signed-in user (from a session or an API token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user's or token's name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The session's CSRF token (empty for API tokens, which need none).
    pub csrf: String,
}

/// A new random token, as 64 hex digits.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of a session or API token.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// An argon2id hash in PHC format.
pub fn hash_password(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 hashes any password")
        .to_string()
}

/// Whether `password` matches a stored hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// How long a session lasts.
pub const SESSION_MS: i64 = 12 * 3600 * 1000;

impl Store {
    /// How many users exist.
    pub fn user_count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .map_err(self.sqlite())
    }

    /// Creates a user with a password (hashed here).
    pub fn create_user(&self, name: &str, password: &str, role: Role) -> Result<(), StoreError> {
        Store::check_names("the user name", [name])?;
        let taken: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM users WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .map_err(self.sqlite())?;
        if taken {
            return Err(StoreError::Conflict(format!(
                "a user named '{name}' already exists: choose another name"
            )));
        }
        self.conn
            .execute(
                "INSERT INTO users (name, password_hash, role, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![
                    name,
                    hash_password(password),
                    role.as_str(),
                    jiff::Timestamp::now().as_millisecond()
                ],
            )
            .map_err(self.sqlite())?;
        Ok(())
    }

    /// Checks a name and password; on success opens a session and returns
    /// its token (for the cookie).
    pub fn login(&self, name: &str, password: &str) -> Result<Option<String>, StoreError> {
        let user: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT id, password_hash FROM users WHERE name = ?1 AND disabled_ms IS NULL",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sqlite())?;
        let id = match user {
            Some((id, stored)) if verify_password(password, &stored) => id,
            Some(_) => return Ok(None),
            None => {
                // Spend the same time on an unknown name as on a wrong
                // password, so timing does not tell which names exist.
                let _ = verify_password(password, dummy_hash());
                return Ok(None);
            }
        };
        let token = random_token();
        let now = jiff::Timestamp::now().as_millisecond();
        self.conn
            .execute("DELETE FROM sessions WHERE expires_ms < ?1", [now])
            .map_err(self.sqlite())?;
        self.conn
            .execute(
                "INSERT INTO sessions (token_hash, user_id, csrf, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                params![token_hash(&token), id, random_token(), now + SESSION_MS],
            )
            .map_err(self.sqlite())?;
        Ok(Some(token))
    }

    /// The account behind a session token, if the session is valid.
    pub fn session(&self, token: &str) -> Result<Option<Account>, StoreError> {
        self.conn
            .query_row(
                "SELECT u.name, u.role, s.csrf FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.expires_ms > ?2 AND u.disabled_ms IS NULL",
                params![token_hash(token), jiff::Timestamp::now().as_millisecond()],
                |r| {
                    Ok(Account {
                        name: r.get(0)?,
                        role: Role::parse(&r.get::<_, String>(1)?),
                        csrf: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(self.sqlite())
    }

    /// Ends a session.
    pub fn logout(&self, token: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM sessions WHERE token_hash = ?1",
                [token_hash(token)],
            )
            .map_err(self.sqlite())?;
        Ok(())
    }

    /// Creates an API token; returns the token, which is shown once.
    pub fn create_token(&self, name: &str, scope: Role) -> Result<String, StoreError> {
        Store::check_names("the token name", [name])?;
        let taken: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM api_tokens WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .map_err(self.sqlite())?;
        if taken {
            return Err(StoreError::Conflict(format!(
                "an API token named '{name}' already exists: choose another name, or revoke it first (portwatch access revoke {name})"
            )));
        }
        let token = format!("pw_{}", random_token());
        self.conn
            .execute(
                "INSERT INTO api_tokens (name, token_hash, scope, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![name, token_hash(&token), scope.as_str(), jiff::Timestamp::now().as_millisecond()],
            )
            .map_err(self.sqlite())?;
        Ok(token)
    }

    /// The account behind an API token.
    pub fn token(&self, token: &str) -> Result<Option<Account>, StoreError> {
        self.conn
            .query_row(
                "SELECT name, scope FROM api_tokens WHERE token_hash = ?1",
                [token_hash(token)],
                |r| {
                    Ok(Account {
                        name: r.get(0)?,
                        role: Role::parse(&r.get::<_, String>(1)?),
                        csrf: String::new(),
                    })
                },
            )
            .optional()
            .map_err(self.sqlite())
    }
}

/// A user, as `portwatch access list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// The user name.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// When it was created (ms since the epoch).
    pub created_ms: i64,
    /// When it was disabled, if it is.
    pub disabled_ms: Option<i64>,
}

/// An API token, as `portwatch access list` shows it (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// The token's name.
    pub name: String,
    /// What it may do.
    pub scope: Role,
    /// When it was created (ms since the epoch).
    pub created_ms: i64,
}

impl Store {
    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT name, role, created_ms, disabled_ms FROM users ORDER BY name")
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map([], |r| {
                Ok(UserRow {
                    name: r.get(0)?,
                    role: Role::parse(&r.get::<_, String>(1)?),
                    created_ms: r.get(2)?,
                    disabled_ms: r.get(3)?,
                })
            })
            .map_err(self.sqlite())?;
        rows.collect::<Result<_, _>>().map_err(self.sqlite())
    }

    /// Every API token, by name.
    pub fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT name, scope, created_ms FROM api_tokens ORDER BY name")
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map([], |r| {
                Ok(TokenRow {
                    name: r.get(0)?,
                    scope: Role::parse(&r.get::<_, String>(1)?),
                    created_ms: r.get(2)?,
                })
            })
            .map_err(self.sqlite())?;
        rows.collect::<Result<_, _>>().map_err(self.sqlite())
    }

    /// Revokes the API token named `name`: it stops working at once.
    pub fn revoke_token(&self, name: &str) -> Result<(), StoreError> {
        let removed = self
            .conn
            .execute("DELETE FROM api_tokens WHERE name = ?1", [name])
            .map_err(self.sqlite())?;
        if removed == 0 {
            return Err(StoreError::Conflict(format!(
                "no API token named '{name}' (see portwatch access list)"
            )));
        }
        Ok(())
    }

    /// Sets a user's password and ends their sessions.
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), StoreError> {
        let changed = self
            .conn
            .execute(
                "UPDATE users SET password_hash = ?2 WHERE name = ?1",
                params![name, hash_password(password)],
            )
            .map_err(self.sqlite())?;
        self.end_sessions(name, changed)
    }

    /// Disables (or enables again) a user; disabling ends their sessions.
    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError> {
        let at = disabled.then(|| jiff::Timestamp::now().as_millisecond());
        let changed = self
            .conn
            .execute(
                "UPDATE users SET disabled_ms = ?2 WHERE name = ?1",
                params![name, at],
            )
            .map_err(self.sqlite())?;
        self.end_sessions(name, changed)
    }

    fn end_sessions(&self, name: &str, changed: usize) -> Result<(), StoreError> {
        if changed == 0 {
            return Err(StoreError::Conflict(format!(
                "no user named '{name}' (see portwatch access list)"
            )));
        }
        self.conn
            .execute(
                "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
                [name],
            )
            .map_err(self.sqlite())?;
        Ok(())
    }
}

/// Compares two secrets in time that depends only on their length.
pub fn same_secret(expected: &str, sent: &str) -> bool {
    !expected.is_empty()
        && expected.len() == sent.len()
        && expected
            .bytes()
            .zip(sent.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// An argon2id hash of a random password, verified against when the user
/// name is unknown so that timing does not reveal which names exist.
pub(crate) fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&random_token()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_argon2id_and_verify() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("anything", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), a);
    }
}

/// A public status page: a slug, a title and the names (sensors, servers or
/// groups) it shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatusPage {
    /// The URL part: `/status/{slug}`.
    pub slug: String,
    /// The heading.
    pub title: String,
    /// Sensor paths, server names or group paths.
    pub names: Vec<String>,
    /// The owner's logo, shown beside the title: an image's http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo: Option<String>,
    /// The owner's site, linked from the title: an http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl Store {
    /// Creates or replaces a status page. Every name must select sensors.
    pub fn save_status_page(&self, page: &StatusPage) -> Result<(), StoreError> {
        check_status_page(page)?;
        for name in &page.names {
            self.sensor_ids(name)?;
        }
        self.conn
            .execute(
                "INSERT INTO status_pages (slug, title, sensors, logo, link) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (slug) DO UPDATE SET title = ?2, sensors = ?3, logo = ?4, link = ?5",
                params![
                    page.slug,
                    page.title,
                    serde_json::to_string(&page.names).expect("names serialise"),
                    page.logo,
                    page.link
                ],
            )
            .map_err(self.sqlite())?;
        Ok(())
    }

    /// All status pages.
    pub fn status_pages(&self) -> Result<Vec<StatusPage>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT slug, title, sensors, logo, link FROM status_pages ORDER BY slug")
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map([], |r| {
                Ok(StatusPage {
                    slug: r.get(0)?,
                    title: r.get(1)?,
                    names: r.get::<_, super::Json<_>>(2)?.0,
                    logo: r.get(3)?,
                    link: r.get(4)?,
                })
            })
            .map_err(self.sqlite())?;
        rows.collect::<Result<_, _>>().map_err(self.sqlite())
    }

    /// Deletes a status page.
    pub fn delete_status_page(&self, slug: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM status_pages WHERE slug = ?1", [slug])
            .map_err(self.sqlite())?;
        Ok(())
    }
}

/// Refuses a status page whose slug cannot be a page address, or whose
/// slug or title holds control or invisible characters.
pub(crate) fn check_status_page(page: &StatusPage) -> Result<(), StoreError> {
    Store::check_names("the status page", [page.slug.as_str(), page.title.as_str()])?;
    let valid_slug = !page.slug.is_empty()
        && page.slug.len() <= 64
        && page
            .slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_slug {
        return Err(StoreError::Conflict(format!(
            "'{}' cannot be a page address: use lowercase letters, digits and '-'",
            page.slug
        )));
    }
    for (field, url) in [("logo", &page.logo), ("link", &page.link)] {
        if let Some(url) = url
            && !is_web_url(url)
        {
            return Err(StoreError::Conflict(format!(
                "{field}: '{}' is not a web address: give an http:// or https:// URL of at most 500 characters",
                portwatch_probe::text::header_safe(url, 80)
            )));
        }
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host, no spaces, no quotes and no
/// angle brackets, of at most 500 bytes.
fn is_web_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|rest| {
        !rest.is_empty()
            && !rest.starts_with('/')
            && url.len() <= 500
            && url
                .chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '\\' | '`'))
    })
}
