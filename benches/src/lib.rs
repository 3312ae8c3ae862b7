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
    id         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    token      text PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ip         text NOT NULL DEFAULT '127.0.0.1',
    -- The benchmark's sessions sign in without a User-Agent (Portcullis stores none).
    user_agent text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS tokens_user_id_idx ON tokens (user_id);
-- What else the account page shows (the benchmark's users have none of these, but the
-- ceiling looks, as Portcullis does: the same page needs the same facts).
CREATE TABLE IF NOT EXISTS second_factors (
    user_id    bigint PRIMARY KEY REFERENCES users (id),
    enabled_at timestamptz
);
CREATE TABLE IF NOT EXISTS recovery_codes (
    user_id bigint NOT NULL REFERENCES users (id),
    used_at timestamptz
);
CREATE INDEX IF NOT EXISTS recovery_codes_user_id_idx ON recovery_codes (user_id);
CREATE TABLE IF NOT EXISTS access_requests (
    user_id    bigint NOT NULL REFERENCES users (id),
    role       text NOT NULL,
    path       text NOT NULL,
    status     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS access_requests_user_id_idx ON access_requests (user_id, created_at);
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

/// Times on pages: Portcullis' own function, so all three servers format alike.
pub use portcullis::display::display_time;
