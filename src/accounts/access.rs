//! Access requests: a signed-in person asks for the role a page needs; administrators
//! grant (`admin::grant`, under the admin-set lock) or decline with a note the person reads.

use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::{
    audit::{self, Actor, AuditEvent},
    auth::Role,
};

/// Longest message or decline note kept.
pub const MAX_MESSAGE: usize = 500;

/// A request as the person (and the 403 page) sees it; the session query loads the same
/// shape for the account page.
pub use crate::auth::session::AccessRequestSummary as AccessRequest;

/// The person's most recent request for `role`.
pub async fn latest(
    pool: &PgPool,
    user_id: i64,
    role: Role,
) -> sqlx::Result<Option<AccessRequest>> {
    sqlx::query_as!(
        AccessRequest,
        r#"
        SELECT role, path, status, created_at, decided_at, decided_by, decision_note
        FROM access_requests WHERE user_id = $1 AND role = $2
        ORDER BY created_at DESC LIMIT 1
        "#,
        user_id,
        role.as_str()
    )
    .fetch_optional(pool)
    .await
}

/// Records a pending request (one per person and role: asking again while one is pending
/// changes nothing) with its audit event. True if a new request was recorded.
pub async fn ask(
    pool: &PgPool,
    actor: &Actor,
    user_id: i64,
    role: Role,
    path: &str,
    message: &str,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query_scalar!(
        r#"
        INSERT INTO access_requests (user_id, role, path, message)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (user_id, role) WHERE status = 'pending' DO NOTHING
        RETURNING id
        "#,
        user_id,
        role.as_str(),
        path,
        message
    )
    .fetch_optional(&mut *tx)
    .await?;
    if inserted.is_some() {
        let event = AuditEvent::new("access_requested", actor.meta.clone())
            .username(&actor.username)
            .reason(role.as_str())
            .detail(json!({ "page": path, "message": message }));
        audit::write_in(&mut *tx, &event).await?;
    }
    tx.commit().await?;
    Ok(inserted.is_some())
}

/// A pending request as a grant decision needs it.
#[derive(Debug, Clone)]
pub struct Pending {
    pub username: String,
    pub role: String,
    pub path: String,
}

/// The pending request `request_id`, if there is one.
pub async fn pending(pool: &PgPool, request_id: i64) -> sqlx::Result<Option<Pending>> {
    sqlx::query_as!(
        Pending,
        r#"
        SELECT u.username, r.role, r.path
        FROM access_requests r JOIN users u ON u.id = r.user_id
        WHERE r.id = $1 AND r.status = 'pending'
        "#,
        request_id
    )
    .fetch_optional(pool)
    .await
}

/// Declines a pending request with a note. False if there was no such pending request.
pub async fn decline(
    pool: &PgPool,
    actor: &Actor,
    request_id: i64,
    note: &str,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let declined = sqlx::query!(
        r#"
        UPDATE access_requests r
        SET status = 'declined', decided_at = now(), decided_by = $2, decision_note = $3
        FROM users u
        WHERE r.id = $1 AND r.status = 'pending' AND u.id = r.user_id
        RETURNING u.username, r.role, r.path
        "#,
        request_id,
        actor.username,
        note
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(declined) = declined else {
        return Ok(false);
    };
    let event = AuditEvent::new("access_declined", actor.meta.clone())
        .username(&actor.username)
        .target(&declined.username)
        .reason(declined.role)
        .detail(json!({ "page": declined.path, "note": note }));
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(true)
}

/// A request as the administrators' list shows it.
#[derive(Debug, Clone)]
pub struct ListedRequest {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub current_role: Role,
    pub role: String,
    pub path: String,
    pub message: String,
    pub status: String,
    pub created_at: OffsetDateTime,
    pub decided_at: Option<OffsetDateTime>,
    pub decided_by: Option<String>,
    pub decision_note: Option<String>,
}

/// Pending requests first, then those decided in the last 30 days (at most 200).
pub async fn recent(pool: &PgPool) -> sqlx::Result<Vec<ListedRequest>> {
    sqlx::query_as!(
        ListedRequest,
        r#"
        SELECT r.id, r.user_id, u.username, u.role AS "current_role: Role", r.role, r.path,
               r.message, r.status, r.created_at, r.decided_at, r.decided_by, r.decision_note
        FROM access_requests r JOIN users u ON u.id = r.user_id
        WHERE r.status = 'pending' OR r.decided_at > now() - interval '30 days'
        ORDER BY (r.status = 'pending') DESC, coalesce(r.decided_at, r.created_at) DESC
        LIMIT 200
        "#
    )
    .fetch_all(pool)
    .await
}

/// How many requests wait for a decision (shown in the admin navigation).
pub async fn pending_count(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM access_requests WHERE status = 'pending'"#)
        .fetch_one(pool)
        .await
}
