//! First run without the command line: while the database has no user, `serve` prints a
//! one-time link (`/setup?token=…`) that lets the operator create the first administrator
//! in the browser.
//!
//! A token is good for [`TOKEN_LIFETIME`], and only the newest one is kept: each start
//! without users issues a fresh one and forgets the old, so a link that reached a journal
//! or a proxy log stops working within the hour. Only the token's SHA-256 is stored.

use serde_json::json;
use sqlx::{PgExecutor, PgPool};
use subtle::ConstantTimeEq;

use super::{
    Username,
    links::{hash_token as hash, new_token},
};
use crate::{
    audit::{self, AuditEvent, RequestMeta},
    auth::Role,
};

/// How long a setup link works.
pub const TOKEN_LIFETIME: time::Duration = time::Duration::hours(1);

/// Serializes the creation of the first user (here and `admin::create_first`): two at once
/// create one.
pub(crate) const FIRST_USER_LOCK: i64 = 7266112354;

/// Creates a setup token if the database has no user yet, replacing any older one;
/// returns it (to print).
pub async fn issue_token(pool: &PgPool) -> sqlx::Result<Option<String>> {
    if super::count(pool).await? > 0 {
        return Ok(None);
    }
    let token = new_token();
    let mut tx = pool.begin().await?;
    sqlx::query!("DELETE FROM setup_tokens")
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "INSERT INTO setup_tokens (token_hash) VALUES ($1)",
        hash(&token)
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(token))
}

/// Whether `token` is the live setup token (issued within the hour), compared in constant
/// time against each stored hash.
pub async fn token_is_valid(executor: impl PgExecutor<'_>, token: &str) -> sqlx::Result<bool> {
    if token.is_empty() || token.len() > 100 {
        return Ok(false);
    }
    let candidate = hash(token);
    let lifetime = TOKEN_LIFETIME.whole_seconds() as f64;
    let stored = sqlx::query_scalar!(
        r#"
        SELECT token_hash FROM setup_tokens
        WHERE created_at > now() - make_interval(secs => $1)
        "#,
        lifetime
    )
    .fetch_all(executor)
    .await?;
    Ok(stored.iter().fold(false, |found, known| {
        found | bool::from(known.ct_eq(&candidate))
    }))
}

/// Creates the first administrator with a password hash, if `token` is still live and the
/// database still has no user; false otherwise. Serialized: two browsers racing with the
/// same link create one administrator.
pub async fn create_first_admin(
    pool: &PgPool,
    token: &str,
    username: &Username,
    hash: &str,
    meta: RequestMeta,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", FIRST_USER_LOCK)
        .execute(&mut *tx)
        .await?;
    let existing = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM users"#)
        .fetch_one(&mut *tx)
        .await?;
    if existing > 0 || !token_is_valid(&mut *tx, token).await? {
        return Ok(false);
    }
    sqlx::query!(
        "INSERT INTO users (username, username_key, password_hash, role) VALUES ($1, $2, $3, $4)",
        username.display,
        username.key,
        hash,
        Role::Admin as Role,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("DELETE FROM setup_tokens")
        .execute(&mut *tx)
        .await?;
    let event = AuditEvent::new("user_created", meta)
        .username("setup")
        .target(&username.display)
        .detail(json!({ "role": "admin" }));
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(true)
}
