//! Access requests: pending ones to grant or decline, and the recent decisions.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::admin_chrome;
use crate::{
    audit::AuditEvent,
    auth::{CurrentUser, Role},
    error::AppError,
    web::{
        AppState, Chrome, access::MAX_MESSAGE, denial, display_time, form::SignedForm,
        render_status,
    },
};

struct RequestLine {
    id: i64,
    user_id: i64,
    username: String,
    current_role: String,
    role: String,
    path: String,
    message: String,
    asked: String,
    status: String,
    decided: String,
    decided_by: String,
    note: String,
}

#[derive(Template)]
#[template(path = "admin/requests.html")]
struct RequestsPage {
    chrome: Chrome,
    csrf: String,
    pending: Vec<RequestLine>,
    decided: Vec<RequestLine>,
    done: Option<&'static str>,
    problem: Option<String>,
    /// The pending request whose decline form the problem is about (its field is marked).
    problem_for: Option<i64>,
}

impl RequestsPage {
    fn problem_is_for(&self, id: &i64) -> bool {
        self.problem_for == Some(*id)
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

async fn page(
    state: &AppState,
    user: &crate::auth::SessionUser,
    status: StatusCode,
    done: Option<&'static str>,
    problem: Option<(i64, String)>,
) -> Result<Response, AppError> {
    let rows = sqlx::query!(
        r#"
        SELECT r.id, r.user_id, u.username, u.role AS "current_role: Role", r.role, r.path,
               r.message, r.status, r.created_at, r.decided_at, r.decided_by, r.decision_note
        FROM access_requests r JOIN users u ON u.id = r.user_id
        WHERE r.status = 'pending' OR r.decided_at > now() - interval '30 days'
        ORDER BY (r.status = 'pending') DESC, coalesce(r.decided_at, r.created_at) DESC
        LIMIT 200
        "#
    )
    .fetch_all(&state.pool)
    .await?;
    let (pending, decided): (Vec<RequestLine>, Vec<RequestLine>) = rows
        .into_iter()
        .map(|r| RequestLine {
            id: r.id,
            user_id: r.user_id,
            username: r.username,
            current_role: r.current_role.to_string(),
            role: r.role,
            path: r.path,
            message: r.message,
            asked: display_time(r.created_at),
            status: r.status,
            decided: r.decided_at.map(display_time).unwrap_or_default(),
            decided_by: r.decided_by.unwrap_or_default(),
            note: r.decision_note.unwrap_or_default(),
        })
        .partition(|line| line.status == "pending");
    // `render_status` marks the page as finished: a 400 without that mark would be
    // replaced by the generic "Bad request" page, and the reason to fix would be lost.
    Ok(render_status(
        status,
        &RequestsPage {
            chrome: admin_chrome(state, "Access requests", user).await?,
            csrf: user.csrf_token.clone(),
            pending,
            decided,
            done,
            problem_for: problem.as_ref().map(|(id, _)| *id),
            problem: problem.map(|(_, text)| text),
        },
    ))
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<DoneQuery>,
) -> Result<Response, AppError> {
    let done = match query.done.as_deref() {
        Some("granted") => Some("Access granted. It applies from the person's next request."),
        Some("declined") => Some("Request declined. The person sees your note."),
        _ => None,
    };
    page(&state, &user, StatusCode::OK, done, None).await
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

/// Grants: the person's role becomes the requested one (never lowered), effective on
/// their next request.
pub async fn grant(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    SignedForm {
        user: admin, parts, ..
    }: SignedForm<Empty>,
) -> Result<Response, AppError> {
    let mut tx = state.pool.begin().await?;
    let request = sqlx::query!(
        r#"
        SELECT r.user_id, r.role, r.path, u.username, u.role AS "current_role: Role"
        FROM access_requests r JOIN users u ON u.id = r.user_id
        WHERE r.id = $1 AND r.status = 'pending'
        FOR UPDATE OF r
        "#,
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(request) = request else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let Some(role) = Role::parse(&request.role) else {
        return Ok(StatusCode::UNPROCESSABLE_ENTITY.into_response());
    };
    if !request.current_role.satisfies(role) {
        sqlx::query!(
            "UPDATE users SET role = $2, updated_at = now() WHERE id = $1",
            request.user_id,
            role as Role
        )
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query!(
        r#"
        UPDATE access_requests SET status = 'granted', decided_at = now(), decided_by = $2
        WHERE id = $1
        "#,
        id,
        admin.username
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    denial::record(&parts, |meta| {
        AuditEvent::new("access_granted", meta)
            .username(&admin.username)
            .target(&request.username)
            .reason(role.as_str())
            .detail(json!({ "page": request.path, "from": request.current_role, "to": role }))
    });
    Ok(Redirect::to("/admin/requests?done=granted").into_response())
}

#[derive(Debug, Deserialize)]
pub struct DeclineForm {
    #[serde(default)]
    note: String,
}

/// Declines, with a note the person will read.
pub async fn decline(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    SignedForm {
        user: admin,
        form,
        parts,
    }: SignedForm<DeclineForm>,
) -> Result<Response, AppError> {
    let note: String = form
        .note
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE)
        .collect();
    if note.is_empty() {
        return page(
            &state,
            &admin,
            StatusCode::BAD_REQUEST,
            None,
            Some((id, "Say why you decline: the person will read it.".into())),
        )
        .await;
    }
    let declined = sqlx::query!(
        r#"
        UPDATE access_requests r
        SET status = 'declined', decided_at = now(), decided_by = $2, decision_note = $3
        FROM users u
        WHERE r.id = $1 AND r.status = 'pending' AND u.id = r.user_id
        RETURNING u.username, r.role, r.path
        "#,
        id,
        admin.username,
        note
    )
    .fetch_optional(&state.pool)
    .await?;
    let Some(declined) = declined else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    denial::record(&parts, |meta| {
        AuditEvent::new("access_declined", meta)
            .username(&admin.username)
            .target(&declined.username)
            .reason(declined.role.clone())
            .detail(json!({ "page": declined.path, "note": note }))
    });
    Ok(Redirect::to("/admin/requests?done=declined").into_response())
}
