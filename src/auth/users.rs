//! User accounts: names, password rules and the queries the CLI and pages share.

use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use unicode_normalization::UnicodeNormalization;

use super::{Role, password::PasswordHasher};
use crate::error::AppError;

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
}

pub use super::policy::PasswordProblem;

/// Checks a new password against the policy (see `auth::policy`) and returns the
/// normalized form that gets hashed.
pub fn check_new_password(
    raw: &str,
    min_chars: usize,
    username: Option<&str>,
) -> Result<String, PasswordProblem> {
    super::policy::check(raw, min_chars, username)
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
    App(#[from] AppError),
}

impl From<sqlx::Error> for UserError {
    fn from(err: sqlx::Error) -> Self {
        UserError::App(AppError::from(err))
    }
}

pub async fn count(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM users"#)
        .fetch_one(pool)
        .await
}

pub async fn create(
    pool: &PgPool,
    hasher: &PasswordHasher,
    raw_username: &str,
    raw_password: &str,
    role: Role,
    min_password_chars: usize,
) -> Result<UserRow, UserError> {
    let username = Username::parse(raw_username)?;
    let password = check_new_password(raw_password, min_password_chars, Some(&username.display))?;
    let hash = hasher.hash(password).await.map_err(AppError::from)?;
    let row = sqlx::query_as!(
        UserRow,
        r#"
        INSERT INTO users (username, username_key, password_hash, role)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (username_key) DO NOTHING
        RETURNING id, username, role AS "role: Role", disabled_at, created_at,
                  last_sign_in_at, last_sign_in_ip
        "#,
        username.display,
        username.key,
        hash,
        role as Role,
    )
    .fetch_optional(pool)
    .await?;
    row.ok_or(UserError::Taken(username.display))
}

pub async fn find(pool: &PgPool, raw_username: &str) -> Result<UserRow, UserError> {
    let username = Username::parse(raw_username)?;
    sqlx::query_as!(
        UserRow,
        r#"
        SELECT id, username, role AS "role: Role", disabled_at, created_at,
               last_sign_in_at, last_sign_in_ip
        FROM users WHERE username_key = $1
        "#,
        username.key,
    )
    .fetch_optional(pool)
    .await?
    .ok_or(UserError::NotFound(username.display))
}

pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"
        SELECT id, username, role AS "role: Role", disabled_at, created_at,
               last_sign_in_at, last_sign_in_ip
        FROM users ORDER BY username_key
        "#
    )
    .fetch_all(pool)
    .await
}

pub async fn set_role(pool: &PgPool, user_id: i64, role: Role) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE users SET role = $2, updated_at = now() WHERE id = $1",
        user_id,
        role as Role
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn set_disabled(pool: &PgPool, user_id: i64, disabled: bool) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        UPDATE users
        SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END, updated_at = now()
        WHERE id = $1
        "#,
        user_id,
        disabled
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Disables a user and revokes their sessions, so re-enabling later does not bring old
/// sessions back. Returns how many sessions ended.
pub async fn disable(pool: &PgPool, user_id: i64) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "UPDATE users SET disabled_at = coalesce(disabled_at, now()), updated_at = now() WHERE id = $1",
        user_id
    )
    .execute(&mut *tx)
    .await?;
    let ended = revoke_sessions(&mut *tx, user_id, None, "user_disabled").await?;
    tx.commit().await?;
    Ok(ended)
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

/// Replaces the hash with a stronger one of the same password (parameter upgrade at
/// sign-in). Not a password change: `password_changed_at` and sessions stay as they are.
pub async fn set_password_hash_keeping_sessions(
    pool: &PgPool,
    user_id: i64,
    hash: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE users SET password_hash = $2 WHERE id = $1",
        user_id,
        hash
    )
    .execute(pool)
    .await?;
    Ok(())
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

/// A user's live sessions, most recently active first (at most 50).
pub async fn live_sessions(
    pool: &PgPool,
    user_id: i64,
) -> sqlx::Result<Vec<super::session_user::SessionSummary>> {
    sqlx::query_as!(
        super::session_user::SessionSummary,
        r#"
        SELECT id, created_at, last_seen_at, ended_at AS "expires_at!", ip, user_agent
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
