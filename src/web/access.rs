//! "Request access" from the 403 page, like a shared document's "You need access": the
//! person asks for the role the page needs; administrators grant or decline with a note;
//! the person sees the outcome on the 403 page and on their account page.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::{AppState, denial, display_time, form::SignedForm};
use crate::{
    audit::AuditEvent,
    auth::{Role, next::safe_next},
    error::AppError,
};

pub const MAX_MESSAGE: usize = 500;

/// A request as the person sees it.
#[derive(Debug, Clone)]
pub struct AccessRequestView {
    pub role: String,
    pub path: String,
    pub status: String,
    pub asked: String,
    pub decided: Option<String>,
    pub decided_by: Option<String>,
    pub note: Option<String>,
}

impl AccessRequestView {
    pub fn pending(&self) -> bool {
        self.status == "pending"
    }

    pub fn declined(&self) -> bool {
        self.status == "declined"
    }
}

struct Row {
    role: String,
    path: String,
    status: String,
    created_at: OffsetDateTime,
    decided_at: Option<OffsetDateTime>,
    decided_by: Option<String>,
    decision_note: Option<String>,
}

impl From<Row> for AccessRequestView {
    fn from(row: Row) -> Self {
        AccessRequestView {
            role: row.role,
            path: row.path,
            status: row.status,
            asked: display_time(row.created_at),
            decided: row.decided_at.map(display_time),
            decided_by: row.decided_by,
            note: row.decision_note,
        }
    }
}

impl From<&crate::auth::session_user::AccessRequestSummary> for AccessRequestView {
    fn from(r: &crate::auth::session_user::AccessRequestSummary) -> Self {
        AccessRequestView {
            role: r.role.clone(),
            path: r.path.clone(),
            status: r.status.clone(),
            asked: display_time(r.created_at),
            decided: r.decided_at.map(display_time),
            decided_by: r.decided_by.clone(),
            note: r.decision_note.clone(),
        }
    }
}

/// The person's most recent request for `role`.
pub async fn latest(
    pool: &PgPool,
    user_id: i64,
    role: Role,
) -> sqlx::Result<Option<AccessRequestView>> {
    Ok(sqlx::query_as!(
        Row,
        r#"
        SELECT role, path, status, created_at, decided_at, decided_by, decision_note
        FROM access_requests WHERE user_id = $1 AND role = $2
        ORDER BY created_at DESC LIMIT 1
        "#,
        user_id,
        role.as_str()
    )
    .fetch_optional(pool)
    .await?
    .map(Into::into))
}

#[derive(Debug, Deserialize)]
pub struct RequestForm {
    #[serde(default)]
    role: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    message: String,
}

/// Records a pending request (one per person and role: asking again while one is pending
/// changes nothing) and goes back to the page, which now says the request is waiting.
pub async fn request(
    State(state): State<AppState>,
    SignedForm { user, form, parts }: SignedForm<RequestForm>,
) -> Result<Response, AppError> {
    let Some(role) = Role::parse(&form.role) else {
        return Ok(StatusCode::UNPROCESSABLE_ENTITY.into_response());
    };
    let path = safe_next(&form.path).unwrap_or_else(|| "/".into());
    if user.role.satisfies(role) {
        // Granted meanwhile: nothing to ask for.
        return Ok(Redirect::to(&path).into_response());
    }
    let message: String = form
        .message
        .trim()
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(MAX_MESSAGE)
        .collect();
    let inserted = sqlx::query_scalar!(
        r#"
        INSERT INTO access_requests (user_id, role, path, message)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (user_id, role) WHERE status = 'pending' DO NOTHING
        RETURNING id
        "#,
        user.user_id,
        role.as_str(),
        path,
        message
    )
    .fetch_optional(&state.pool)
    .await?;
    if inserted.is_some() {
        tracing::info!(user = %user.username, %role, %path, "access requested");
        denial::record(&parts, |meta| {
            AuditEvent::new("access_requested", meta)
                .username(&user.username)
                .reason(role.as_str())
                .detail(serde_json::json!({ "page": path, "message": message }))
        });
    }
    Ok(Redirect::to(&path).into_response())
}
