//! Pieces the benchmark's comparison apps share with its driver: the page they serve and
//! the tables they read.
//!
//! The ceiling and the peer serve the same `/account` and 403 pages as Portcullis (same
//! layout and facts, comparable bytes), so the comparison measures authentication cost,
//! not template size.

pub mod page;

/// The password every seeded user has. Long, because the password policy will soon
/// require 15+ characters.
pub const PASSWORD: &str = "bench password number one 2026";

/// The cookie the ceiling app reads its token from.
pub const CEILING_COOKIE: &str = "ceiling_token";

/// Users of the ceiling app: no password (it never signs anyone in) and a table of
/// bearer tokens, one row per seeded "session".
pub const CEILING_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS users (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username text NOT NULL UNIQUE,
    role     text NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token      text PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
"#;

/// Users of the peer app, as in axum-login's examples (plus a role for the 403 page).
pub const PEER_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS users (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username text NOT NULL UNIQUE,
    password text NOT NULL,
    role     text NOT NULL
);
"#;

/// Runs each `;`-separated statement of a schema (sqlx's extended protocol takes one
/// statement at a time).
pub async fn apply_schema(pool: &sqlx::PgPool, schema: &str) -> sqlx::Result<()> {
    for statement in schema.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        sqlx::query(statement).execute(pool).await?;
    }
    Ok(())
}

/// Times on pages, formatted like Portcullis does: UTC, to the second.
pub fn display_time(at: time::OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| at.to_string())
}
