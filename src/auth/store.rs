//! tower-sessions' `SessionStore` over our own `sessions` table.
//!
//! tower-sessions' PostgreSQL store keeps `(id, data, expiry)` only, so a user's sessions
//! could not be listed or revoked. Ours keeps the owner and lifetimes in columns: the
//! [`SessionBinding`] a handler inserts at sign-in is written to those columns (and read
//! back from them on load), the rest of the session data goes to `data`.
//!
//! A record without a binding is refused: only a successful sign-in creates a row, so
//! anonymous visitors never cost a write.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::OffsetDateTime;
use tower_sessions::{
    SessionStore,
    session::{Id, Record},
    session_store,
};

/// The key under which the binding travels in tower-sessions' data map.
pub const BINDING_KEY: &str = "portcullis.binding";

/// Who a session belongs to and how long it may live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionBinding {
    pub user_id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub absolute_expires_at: OffsetDateTime,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub prev_sign_in_at: Option<OffsetDateTime>,
    pub prev_sign_in_ip: Option<String>,
    /// The account's `password_changed_at` when the password was verified. The row is only
    /// written if it is still the same (and the account still enabled): a sign-in that
    /// raced a password change or a disable cannot leave a working session behind.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub password_changed_at: Option<OffsetDateTime>,
    /// When the holder last proved who they are (sign-in or re-authentication).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub authenticated_at: Option<OffsetDateTime>,
    /// How they signed in: "password", "password+totp", "password+recovery",
    /// "password+passkey", "passkey".
    #[serde(default)]
    pub auth_method: Option<String>,
    /// "Keep me signed in": the session lasts until then instead (with no idle limit),
    /// unless the account is an administrator's, whose limits stay the usual ones.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub remember_until: Option<OffsetDateTime>,
}

/// The stored form of a session id: SHA-256 of its 16 bytes. A leaked table or backup
/// holds no usable cookies.
pub fn token_hash(id: Id) -> Vec<u8> {
    Sha256::digest(id.0.to_le_bytes()).to_vec()
}

#[derive(Debug, Clone)]
pub struct PgSessionStore {
    pool: PgPool,
    idle_timeout: time::Duration,
}

impl PgSessionStore {
    pub fn new(pool: PgPool, idle_timeout: time::Duration) -> Self {
        Self { pool, idle_timeout }
    }
}

fn backend(err: sqlx::Error) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

fn split(record: &Record) -> session_store::Result<(Option<SessionBinding>, serde_json::Value)> {
    let mut data = record.data.clone();
    let binding = data
        .remove(BINDING_KEY)
        .map(serde_json::from_value::<SessionBinding>)
        .transpose()
        .map_err(|e| session_store::Error::Decode(e.to_string()))?;
    let data =
        serde_json::to_value(data).map_err(|e| session_store::Error::Encode(e.to_string()))?;
    Ok((binding, data))
}

#[async_trait]
impl SessionStore for PgSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let (binding, data) = split(record)?;
        let Some(binding) = binding else {
            return Err(session_store::Error::Encode(
                "refusing to store a session that no sign-in created".into(),
            ));
        };
        let idle = self.idle_timeout.whole_microseconds() as f64 / 1e6;
        loop {
            // FOR SHARE on the user row: a concurrent password change or disable (which
            // updates that row, then revokes the user's sessions) either waits for this
            // insert and then revokes it, or has committed and makes this insert find no row.
            let inserted = sqlx::query_scalar!(
                r#"
                INSERT INTO sessions (token_hash, user_id, data, created_at, last_seen_at,
                                      idle_expires_at, absolute_expires_at, ip, user_agent,
                                      prev_sign_in_at, prev_sign_in_ip, authenticated_at,
                                      auth_method, remembered)
                SELECT $1, u.id, $3, $4, now(),
                       CASE WHEN $14::timestamptz IS NOT NULL AND u.role <> 'admin' THEN $14
                            ELSE least(now() + make_interval(secs => $5), $6) END,
                       CASE WHEN $14::timestamptz IS NOT NULL AND u.role <> 'admin' THEN $14
                            ELSE $6 END,
                       $7, $8, $9, $10,
                       coalesce($12::timestamptz, $4::timestamptz), $13,
                       $14::timestamptz IS NOT NULL
                FROM users u
                WHERE u.id = $2 AND u.disabled_at IS NULL
                  AND ($11::timestamptz IS NULL OR u.password_changed_at = $11)
                FOR SHARE
                ON CONFLICT (token_hash) DO NOTHING
                RETURNING id
                "#,
                token_hash(record.id),
                binding.user_id,
                data,
                binding.created_at,
                idle,
                binding.absolute_expires_at,
                binding.ip,
                binding.user_agent,
                binding.prev_sign_in_at,
                binding.prev_sign_in_ip,
                binding.password_changed_at,
                binding.authenticated_at,
                binding.auth_method,
                binding.remember_until,
            )
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
            if inserted.is_some() {
                return Ok(());
            }
            let collided = sqlx::query_scalar!(
                r#"SELECT EXISTS (SELECT 1 FROM sessions WHERE token_hash = $1) AS "exists!""#,
                token_hash(record.id)
            )
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
            if !collided {
                return Err(session_store::Error::Backend(
                    "the account was disabled or its password changed during sign-in".into(),
                ));
            }
            // A 128-bit collision is practically impossible, but never overwrite a session.
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let (_, data) = split(record)?;
        // Never resurrects: a session revoked or deleted meanwhile stays gone. Unchanged data
        // writes nothing: tower-sessions' layer saves again after a sign-in saved the new
        // session itself, and a row rewritten for nothing would cost a commit and its flush.
        sqlx::query!(
            r#"
            UPDATE sessions SET data = $2
            WHERE token_hash = $1 AND revoked_at IS NULL AND data IS DISTINCT FROM $2
            "#,
            token_hash(record.id),
            data,
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row = sqlx::query!(
            r#"
            SELECT s.user_id, s.data, s.created_at, s.absolute_expires_at,
                   s.ended_at AS "ended_at!", s.ip, s.user_agent, s.prev_sign_in_at,
                   s.prev_sign_in_ip, u.password_changed_at,
                   coalesce(s.authenticated_at, s.created_at) AS "authenticated_at!",
                   s.auth_method, s.remembered
            FROM sessions s JOIN users u ON u.id = s.user_id
            WHERE s.token_hash = $1 AND s.ended_at > now()
            "#,
            token_hash(*id),
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut data: std::collections::HashMap<String, serde_json::Value> =
            serde_json::from_value(row.data)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let binding = SessionBinding {
            user_id: row.user_id,
            created_at: row.created_at,
            absolute_expires_at: row.absolute_expires_at,
            ip: row.ip,
            user_agent: row.user_agent,
            prev_sign_in_at: row.prev_sign_in_at,
            prev_sign_in_ip: row.prev_sign_in_ip,
            password_changed_at: Some(row.password_changed_at),
            authenticated_at: Some(row.authenticated_at),
            auth_method: row.auth_method,
            // Carried over when the id is cycled (re-authentication, password change).
            remember_until: row.remembered.then_some(row.absolute_expires_at),
        };
        data.insert(
            BINDING_KEY.to_owned(),
            serde_json::to_value(binding)
                .map_err(|e| session_store::Error::Encode(e.to_string()))?,
        );
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date: row.ended_at,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query!(
            "DELETE FROM sessions WHERE token_hash = $1",
            token_hash(*id)
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
}

/// Deletes sessions that ended more than `tombstone` ago, in batches, so a large backlog
/// never becomes one long transaction. Returns how many rows went.
pub async fn delete_ended(pool: &PgPool, tombstone: time::Duration) -> sqlx::Result<u64> {
    const BATCH: i64 = 1000;
    const MAX_BATCHES: usize = 100;
    let keep = tombstone.whole_microseconds() as f64 / 1e6;
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        let deleted = sqlx::query!(
            r#"
            DELETE FROM sessions WHERE id IN (
                SELECT id FROM sessions
                WHERE ended_at < now() - make_interval(secs => $1)
                LIMIT $2
                FOR UPDATE SKIP LOCKED)
            "#,
            keep,
            BATCH,
        )
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < BATCH as u64 {
            break;
        }
    }
    Ok(total)
}
