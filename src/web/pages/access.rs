//! "Request access" from the 403 page, like a shared document's "You need access": the
//! person asks for the role the page needs; administrators grant or decline with a note;
//! the person sees the outcome on the 403 page and on their account page.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use crate::{
    accounts::access::{self, AccessRequest, MAX_MESSAGE},
    audit::Actor,
    auth::{Role, next::safe_next},
    display::display_time,
    error::AppError,
    web::{
        AppState,
        http::{MultiLine, form::SignedForm, request::audit_meta},
    },
};

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

impl From<&AccessRequest> for AccessRequestView {
    fn from(r: &AccessRequest) -> Self {
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

#[derive(Debug, Deserialize)]
pub struct RequestForm {
    #[serde(default)]
    role: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    message: MultiLine,
}

/// Records a pending request and goes back to the page, which now says the request is
/// waiting.
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
        .as_str()
        .trim()
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(MAX_MESSAGE)
        .collect();
    let actor = Actor::new(&user.username, audit_meta(&parts));
    if access::ask(&state.pool, &actor, user.user_id, role, &path, &message).await? {
        tracing::info!(user = %user.username, %role, %path, "access requested");
    }
    Ok(Redirect::to(&path).into_response())
}
