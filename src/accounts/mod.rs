//! User accounts: names, the password rules for new passwords, and the reads and writes
//! that the pages and the command line share. Changes an administrator makes (role,
//! status, password reset, deletion, access grants) go through `admin`, which enforces
//! "at least one enabled administrator" for every door alike.

pub mod access;
pub mod admin;
pub mod email;
pub mod links;
pub mod own;
pub mod recovery;
pub mod setup;

use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use unicode_normalization::UnicodeNormalization;

use crate::auth::{
    Role,
    password::{HashError, PasswordHasher},
    session::SessionSummary,
};

pub const MAX_USERNAME_CHARS: usize = 64;

/// A username as shown, and the key that makes it unique regardless of case and Unicode form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    pub display: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameProblem {
    #[error("Enter a username.")]
    Empty,
    #[error("Use at most {MAX_USERNAME_CHARS} characters.")]
    TooLong,
    #[error("Use only letters, digits and . _ - @ + (no spaces).")]
    BadCharacter,
}

impl Username {
    /// Trims, NFKC-normalizes and checks a username; the key is its lowercase form.
    pub fn parse(raw: &str) -> Result<Username, UsernameProblem> {
        let display: String = raw.trim().nfkc().collect();
        if display.is_empty() {
            return Err(UsernameProblem::Empty);
        }
        if display.chars().count() > MAX_USERNAME_CHARS {
            return Err(UsernameProblem::TooLong);
        }
        if !display
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'))
        {
            return Err(UsernameProblem::BadCharacter);
        }
        let key = display.to_lowercase();
        Ok(Username { display, key })
    }

    /// The key of a stored (already valid) name; any other text, lowercased.
    pub fn key_of(name: &str) -> String {
        Username::parse(name).map_or_else(|_| name.to_lowercase(), |u| u.key)
    }
}

pub use crate::auth::policy::PasswordProblem;

/// Checks a new password against the policy (see `auth::policy`) on a hashing worker and
/// returns the normalized form that gets hashed, or what is wrong with it; `Err` when the
/// workers are saturated.
pub async fn check_new_password(
    hasher: &PasswordHasher,
    raw: &str,
    min_chars: usize,
    username: Option<&str>,
) -> Result<Result<String, PasswordProblem>, HashError> {
    crate::auth::policy::check_on(hasher, raw, min_chars, username).await
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub disabled_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub last_sign_in_at: Option<OffsetDateTime>,
    pub last_sign_in_ip: Option<String>,
    pub password_changed_at: OffsetDateTime,
    /// Created by invitation and no password chosen yet: nobody can sign in to it.
    pub invited: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Username(#[from] UsernameProblem),
    #[error(transparent)]
    Password(#[from] PasswordProblem),
    #[error("a user named {0} already exists")]
    Taken(String),
    #[error("no user named {0}")]
    NotFound(String),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub async fn count(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM users"#)
        .fetch_one(pool)
        .await
}

/// Inserts a user (callers go through `admin::create` or the first-run setup, which
/// record it in the audit trail).
pub(crate) async fn insert(
    executor: impl PgExecutor<'_>,
    hasher: &PasswordHasher,
    raw_username: &str,
    raw_password: &str,
    role: Role,
    min_password_chars: usize,
) -> Result<UserRow, UserError> {
    let username = Username::parse(raw_username)?;
    let password = check_new_password(
        hasher,
        raw_password,
        min_password_chars,
        Some(&username.display),
    )
    .await??;
    let hash = hasher.hash(password).await?;
    insert_row(executor, username, Some(hash), role).await
}

/// Inserts the user row: with a password hash, or without one for an invitation
/// (`links::issue_invite`). `Taken` if the name (any case or Unicode form) exists.
pub(crate) async fn insert_row(
    executor: impl PgExecutor<'_>,
    username: Username,
    password_hash: Option<String>,
    role: Role,
) -> Result<UserRow, UserError> {
    let row = sqlx::query_as!(
        UserRow,
        r#"
        INSERT INTO users (username, username_key, password_hash, role)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (username_key) DO NOTHING
        RETURNING id, username, role AS "role: Role", disabled_at, created_at,
                  last_sign_in_at, last_sign_in_ip, password_changed_at,
               password_hash IS NULL AS "invited!"
        "#,
        username.display,
        username.key,
        password_hash,
        role as Role,
    )
    .fetch_optional(executor)
    .await?;
    row.ok_or(UserError::Taken(username.display))
}

/// The user with this name (any case or Unicode form).
pub async fn find(pool: &PgPool, raw_username: &str) -> Result<UserRow, UserError> {
    let username = Username::parse(raw_username)?;
    lookup(pool, None, Some(&username.key))
        .await?
        .ok_or(UserError::NotFound(username.display))
}

/// The user with this id, if any.
pub async fn by_id(executor: impl PgExecutor<'_>, id: i64) -> sqlx::Result<Option<UserRow>> {
    lookup(executor, Some(id), None).await
}

/// One user by id or by name key (one query text for both, so the columns stay in step).
async fn lookup(
    executor: impl PgExecutor<'_>,
    id: Option<i64>,
    key: Option<&str>,
) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"
        SELECT id, username, role AS "role: Role", disabled_at, created_at,
               last_sign_in_at, last_sign_in_ip, password_changed_at,
               password_hash IS NULL AS "invited!"
        FROM users WHERE id = $1 OR username_key = $2
        "#,
        id,
        key,
    )
    .fetch_optional(executor)
    .await
}

/// A user as the administration list shows them.
#[derive(Debug, Clone)]
pub struct ListedUser {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub disabled_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub last_sign_in_at: Option<OffsetDateTime>,
    pub sessions: i64,
    /// Invited, link not used yet (no password).
    pub invited: bool,
}

/// One page of users whose name contains `q` (case-insensitively), by name.
pub struct UserPage {
    pub total: i64,
    pub page: i64,
    pub pages: i64,
    pub users: Vec<ListedUser>,
}

/// Users whose name key contains `q`, `page_size` at a time (`page` from 1, clamped).
pub async fn search(pool: &PgPool, q: &str, page: i64, page_size: i64) -> sqlx::Result<UserPage> {
    let key = Username::parse(q)
        .map(|u| u.key)
        .unwrap_or_else(|_| q.trim().to_lowercase());
    let pattern = format!("%{}%", like_escape(&key));
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM users WHERE username_key LIKE $1"#,
        pattern
    )
    .fetch_one(pool)
    .await?;
    let pages = ((total + page_size - 1) / page_size).max(1);
    let page = page.clamp(1, pages);
    let users = sqlx::query_as!(
        ListedUser,
        r#"
        SELECT u.id, u.username, u.role AS "role: Role", u.disabled_at, u.created_at,
               u.last_sign_in_at,
               (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.ended_at > now())
                   AS "sessions!",
               u.password_hash IS NULL AS "invited!"
        FROM users u
        WHERE u.username_key LIKE $1
        ORDER BY u.username_key
        LIMIT $2 OFFSET $3
        "#,
        pattern,
        page_size,
        (page - 1) * page_size
    )
    .fetch_all(pool)
    .await?;
    Ok(UserPage {
        total,
        page,
        pages,
        users,
    })
}

/// `text` with LIKE's wildcards escaped, to match literally inside a pattern.
pub fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"
        SELECT id, username, role AS "role: Role", disabled_at, created_at,
               last_sign_in_at, last_sign_in_ip, password_changed_at,
               password_hash IS NULL AS "invited!"
        FROM users ORDER BY username_key
        "#
    )
    .fetch_all(pool)
    .await
}

/// Stores a new password hash. Sessions are not touched here: callers decide which to
/// revoke (all of them from the CLI, all but the current one on the account page).
pub async fn set_password_hash(
    executor: impl PgExecutor<'_>,
    user_id: i64,
    hash: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE users SET password_hash = $2, password_changed_at = now(), updated_at = now() WHERE id = $1",
        user_id,
        hash
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Replaces the hash `old` with a stronger one of the same password (parameter upgrade at
/// sign-in). Not a password change: `password_changed_at` and sessions stay as they are.
/// Only if the stored hash is still `old`: a password changed meanwhile is never undone.
/// True if the hash was replaced.
pub async fn upgrade_password_hash(
    pool: &PgPool,
    user_id: i64,
    old: &str,
    new: &str,
) -> sqlx::Result<bool> {
    let result = sqlx::query!(
        "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
        user_id,
        old,
        new
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Revokes a user's live sessions, except `keep` (a session row id). Revoked rows stay as
/// tombstones so their holders are told they were signed out. Returns how many ended.
pub async fn revoke_sessions(
    executor: impl PgExecutor<'_>,
    user_id: i64,
    keep: Option<i64>,
    reason: &str,
) -> sqlx::Result<u64> {
    let result = sqlx::query!(
        r#"
        UPDATE sessions SET revoked_at = now(), revoked_reason = $3
        WHERE user_id = $1 AND revoked_at IS NULL AND ended_at > now()
          AND ($2::bigint IS NULL OR id <> $2)
        "#,
        user_id,
        keep,
        reason
    )
    .execute(executor)
    .await?;
    Ok(result.rows_affected())
}

/// Revokes one of a user's live sessions (`reason`: who did it). False if it is not theirs
/// or already ended.
pub async fn revoke_session(
    executor: impl PgExecutor<'_>,
    user_id: i64,
    session_id: i64,
    reason: &str,
) -> sqlx::Result<bool> {
    let revoked = sqlx::query!(
        r#"
        UPDATE sessions SET revoked_at = now(), revoked_reason = $3
        WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND ended_at > now()
        "#,
        session_id,
        user_id,
        reason
    )
    .execute(executor)
    .await?
    .rows_affected();
    Ok(revoked == 1)
}

/// A user's live sessions, most recently active first (at most 50).
pub async fn live_sessions(pool: &PgPool, user_id: i64) -> sqlx::Result<Vec<SessionSummary>> {
    sqlx::query_as!(
        SessionSummary,
        r#"
        SELECT id, created_at, last_seen_at, ended_at AS "expires_at!", ip, user_agent,
               auth_method
        FROM sessions WHERE user_id = $1 AND ended_at > now()
        ORDER BY last_seen_at DESC LIMIT 50
        "#,
        user_id
    )
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_trimmed_normalized_and_case_insensitive() {
        let a = Username::parse("  Alice ").expect("valid");
        assert_eq!(a.display, "Alice");
        assert_eq!(a.key, "alice");
        assert_eq!(Username::parse("ＡＬＩＣＥ").expect("valid").key, "alice");
        assert_eq!(Username::parse("Zoë").expect("valid").key, "zoë");
    }

    #[test]
    fn bad_usernames_say_why() {
        assert_eq!(Username::parse("   "), Err(UsernameProblem::Empty));
        assert_eq!(
            Username::parse(&"a".repeat(65)),
            Err(UsernameProblem::TooLong)
        );
        for bad in [
            "a b",
            "a\0b",
            "a'; DROP TABLE users;--",
            "<script>",
            "a\u{202e}b",
        ] {
            assert_eq!(
                Username::parse(bad),
                Err(UsernameProblem::BadCharacter),
                "{bad:?}"
            );
        }
    }
}
