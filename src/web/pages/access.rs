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
    display::Zone,
    error::AppError,
    web::{
        AppState, PROTECTED_PAGES,
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

impl AccessRequestView {
    /// `r` with its times in `zone` (the viewer's).
    pub fn new(r: &AccessRequest, zone: &Zone) -> Self {
        AccessRequestView {
            role: r.role.clone(),
            path: r.path.clone(),
            status: r.status.clone(),
            asked: zone.time(r.created_at),
            decided: r.decided_at.map(|at| zone.time(at)),
            decided_by: r.decided_by.clone(),
            note: r.decision_note.clone(),
        }
    }
}

/// The form names the refused page; a `role` field, which older pages posted, is ignored.
#[derive(Debug, Deserialize)]
pub struct RequestForm {
    #[serde(default)]
    path: String,
    #[serde(default)]
    message: MultiLine,
}

/// The role a page needs, from the table the router's gates use: the listed page itself
/// or anything under it (`/admin/users/7` is an `/admin` page). `None` for pages no gate
/// guards by role, where there is nothing to ask for.
fn role_needed(path: &str) -> Option<Role> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    PROTECTED_PAGES
        .iter()
        .find(|page| {
            path.strip_prefix(page.path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .map(|page| page.role)
}

/// Records a pending request for the role the page needs (never one the client names:
/// a member must not be able to put "make me admin" in front of an administrator for a
/// page that needs less) and goes back to the page, which now says the request is waiting.
pub async fn request(
    State(state): State<AppState>,
    SignedForm { user, form, parts }: SignedForm<RequestForm>,
) -> Result<Response, AppError> {
    let Some(path) = safe_next(&form.path) else {
        return Ok(StatusCode::UNPROCESSABLE_ENTITY.into_response());
    };
    let Some(role) = role_needed(&path) else {
        return Ok(StatusCode::UNPROCESSABLE_ENTITY.into_response());
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_comes_from_the_protected_pages() {
        assert_eq!(role_needed("/reports"), Some(Role::Editor));
        assert_eq!(role_needed("/admin"), Some(Role::Admin));
        assert_eq!(role_needed("/admin/users/7"), Some(Role::Admin));
        assert_eq!(role_needed("/admin?page=2"), Some(Role::Admin));
        assert_eq!(role_needed("/account/password"), Some(Role::Member));
        assert_eq!(role_needed("/administrator"), None);
        assert_eq!(role_needed("/reports-old"), None);
        assert_eq!(role_needed("/"), None);
        assert_eq!(role_needed("/nowhere"), None);
    }
}
