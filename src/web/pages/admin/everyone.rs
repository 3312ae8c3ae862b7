//! "Sign out everyone": every live session of every user ends, but the one that asked. For
//! an incident (a leaked database backup, a compromised proxy): it needs a recent
//! authentication (`FreshForm`) and the words typed out, so that no stray click or replayed
//! form does it.

use askama::Template;
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::admin_chrome;
use crate::{
    accounts::admin,
    audit::Actor,
    error::AppError,
    web::{
        AppState,
        http::{Chrome, fresh::FreshForm, render_status, request::audit_meta},
    },
};

/// What the administrator types to confirm.
pub const CONFIRMATION: &str = "sign out everyone";

#[derive(Debug, Deserialize)]
pub struct EveryoneForm {
    #[serde(default)]
    confirmation: String,
}

#[derive(Template)]
#[template(path = "admin/everyone.html")]
struct EveryonePage {
    chrome: Chrome,
    csrf: String,
    typed: String,
    error: Option<&'static str>,
}

/// Signs out everyone but this session, once the confirmation is typed (any case, spaces
/// around it ignored); otherwise the form again, 400, with the field marked.
pub async fn revoke(
    State(state): State<AppState>,
    FreshForm { user, form, parts }: FreshForm<EveryoneForm>,
) -> Result<Response, AppError> {
    let typed = form.confirmation.trim();
    if !typed.eq_ignore_ascii_case(CONFIRMATION) {
        let error = if typed.is_empty() {
            "Type “sign out everyone” to confirm."
        } else {
            "That is not “sign out everyone”. Type it exactly to confirm."
        };
        return Ok(render_status(
            StatusCode::BAD_REQUEST,
            &EveryonePage {
                chrome: admin_chrome(&state, "Sign out everyone", &user).await?,
                csrf: user.csrf_token.clone(),
                typed: typed.chars().take(64).collect(),
                error: Some(error),
            },
        ));
    }
    let actor = Actor::new(&user.username, audit_meta(&parts));
    admin::revoke_everyone(&state.pool, &actor, user.session_id).await?;
    Ok(Redirect::to("/admin?done=everyone_signed_out").into_response())
}
