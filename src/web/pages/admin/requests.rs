//! Access requests: pending ones to grant or decline, and the recent decisions.

use askama::Template;
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::{
    admin_chrome,
    confirm::{Confirm, ConfirmForm, confirm_page, confirmed},
};
use crate::{
    accounts::{
        access::{self, MAX_MESSAGE},
        admin::{self, AdminError},
    },
    audit::Actor,
    auth::{Role, SessionUser},
    display::Zone,
    error::AppError,
    web::{
        AppState,
        http::{
            Chrome, CurrentUser, MultiLine, TextQuery, fresh::FreshForm, render_status,
            request::audit_meta,
        },
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
    user: &SessionUser,
    status: StatusCode,
    done: Option<&'static str>,
    problem: Option<(i64, String)>,
) -> Result<Response, AppError> {
    let rows = access::recent(&state.pool).await?;
    let zone = Zone::of(user.time_zone.as_deref());
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
            asked: zone.time(r.created_at),
            status: r.status,
            decided: r.decided_at.map(|at| zone.time(at)).unwrap_or_default(),
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
    TextQuery(query): TextQuery<DoneQuery>,
) -> Result<Response, AppError> {
    let done = match query.done.as_deref() {
        Some("granted") => Some("Access granted. It applies from the person's next request."),
        Some("declined") => Some("Request declined. The person sees your note."),
        _ => None,
    };
    page(&state, &user, StatusCode::OK, done, None).await
}

/// Grants: the person's role becomes the requested one (never lowered), effective on
/// their next request. Making someone an administrator asks for confirmation first: it
/// hands over every account, and a Grant button among others is easy to press.
pub async fn grant(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    FreshForm {
        user: admin,
        form,
        parts,
    }: FreshForm<ConfirmForm>,
) -> Result<Response, AppError> {
    let Some(request) = access::pending(&state.pool, id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    if Role::parse(&request.role) == Some(Role::Admin) && !confirmed(&form.confirm) {
        let who = &request.username;
        return Ok(confirm_page(
            &state,
            &admin,
            Confirm {
                heading: format!("Make {who} an administrator?"),
                consequences: vec![
                    format!(
                        "From their next request, {who} can create, change, disable and delete \
                         every account (yours included), grant roles and read the audit trail."
                    ),
                    format!("They asked for it on the page {}.", request.path),
                ],
                action: format!("/admin/requests/{id}/grant"),
                fields: vec![],
                button: "Yes, make them an administrator",
                cancel: "/admin/requests".into(),
            },
        ));
    }
    let actor = Actor::new(&admin.username, audit_meta(&parts));
    match admin::grant(&state.pool, &actor, id).await {
        Ok(_) => {}
        Err(AdminError::NotFound) => return Ok(StatusCode::NOT_FOUND.into_response()),
        Err(err) => return Err(err.into()),
    }
    Ok(Redirect::to("/admin/requests?done=granted").into_response())
}

#[derive(Debug, Deserialize)]
pub struct DeclineForm {
    #[serde(default)]
    note: MultiLine,
}

/// Declines, with a note the person will read.
pub async fn decline(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    FreshForm {
        user: admin,
        form,
        parts,
    }: FreshForm<DeclineForm>,
) -> Result<Response, AppError> {
    let note: String = form
        .note
        .as_str()
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
    let actor = Actor::new(&admin.username, audit_meta(&parts));
    if !access::decline(&state.pool, &actor, id, &note).await? {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    Ok(Redirect::to("/admin/requests?done=declined").into_response())
}
