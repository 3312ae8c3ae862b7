//! What signed-in people do to their own account: change the password, sign out other
//! sessions. Each change commits together with its audit event.

use serde_json::json;
use sqlx::PgPool;

use super::{revoke_sessions, set_password_hash};
use crate::audit::{self, Actor, AuditEvent};

/// Stores a new password hash (checked and hashed by the caller) and signs out every other
/// session of the user; `current_session` continues. Returns how many sessions ended.
pub async fn change_password(
    pool: &PgPool,
    actor: &Actor,
    user_id: i64,
    current_session: i64,
    hash: &str,
) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    set_password_hash(&mut *tx, user_id, hash).await?;
    let ended =
        revoke_sessions(&mut *tx, user_id, Some(current_session), "password_changed").await?;
    let event = AuditEvent::new("password_changed", actor.meta.clone())
        .username(&actor.username)
        .detail(json!({ "other_sessions_revoked": ended }));
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(ended)
}

/// Signs out one of the user's live sessions. False if it is not theirs or already ended.
pub async fn revoke_session(
    pool: &PgPool,
    actor: &Actor,
    user_id: i64,
    session_id: i64,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    if !super::revoke_session(&mut *tx, user_id, session_id, "user").await? {
        return Ok(false);
    }
    let event = actor
        .event("session_revoked", &actor.username)
        .reason("user")
        .detail(json!({ "session": session_id }));
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(true)
}

/// Signs out every session of the user but `keep`. Returns how many ended.
pub async fn revoke_other_sessions(
    pool: &PgPool,
    actor: &Actor,
    user_id: i64,
    keep: i64,
) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    let ended = revoke_sessions(&mut *tx, user_id, Some(keep), "user").await?;
    let event = actor
        .event("session_revoked", &actor.username)
        .reason("user_others")
        .detail(json!({ "count": ended }));
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(ended)
}

/// Two-step verification as its owner sees it.
#[derive(Debug, Clone, Default)]
pub struct SecondFactorStatus {
    pub enabled: bool,
    pub codes_left: i64,
    pub last_recovery_used_at: Option<time::OffsetDateTime>,
}

pub async fn second_factor_status(pool: &PgPool, user_id: i64) -> sqlx::Result<SecondFactorStatus> {
    let row = sqlx::query!(
        r#"
        SELECT EXISTS (SELECT 1 FROM totp_credentials
                       WHERE user_id = $1 AND enabled_at IS NOT NULL) AS "enabled!",
               (SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL)
                   AS "codes_left!",
               (SELECT max(used_at) FROM recovery_codes WHERE user_id = $1) AS last_used
        "#,
        user_id
    )
    .fetch_one(pool)
    .await?;
    Ok(SecondFactorStatus {
        enabled: row.enabled,
        codes_left: row.codes_left,
        last_recovery_used_at: row.last_used,
    })
}

/// Turns the owner's second factor off (recovery codes included) and signs out their other
/// sessions: a factor removed changes how the account is protected (ASVS 5.0 7.4.3).
pub async fn turn_off_second_factor(
    pool: &PgPool,
    actor: &Actor,
    user_id: i64,
    keep_session: i64,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let removed = crate::auth::second_factor::remove(
        &mut tx,
        actor,
        "second_factor_disabled",
        user_id,
        &actor.username,
    )
    .await?;
    revoke_sessions(
        &mut *tx,
        user_id,
        Some(keep_session),
        "second_factor_disabled",
    )
    .await?;
    tx.commit().await?;
    Ok(removed)
}

/// A second factor was turned on, replaced or removed, or new recovery codes made: the
/// owner's other remembered sessions ("keep me signed in") end, so a device kept signed in
/// does not outlive a change to how the account is protected. Returns how many ended.
pub async fn end_remembered_elsewhere(
    pool: &PgPool,
    user_id: i64,
    current_session: i64,
) -> sqlx::Result<u64> {
    let ended = sqlx::query!(
        r#"
        UPDATE sessions SET revoked_at = now(), revoked_reason = 'second_factor_changed'
        WHERE user_id = $1 AND id <> $2 AND remembered
          AND revoked_at IS NULL AND ended_at > now()
        "#,
        user_id,
        current_session
    )
    .execute(pool)
    .await?
    .rows_affected();
    if ended > 0 {
        tracing::info!(
            user_id,
            ended,
            "second factor changed: remembered sessions ended"
        );
    }
    Ok(ended)
}
