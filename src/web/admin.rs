//! Administration (admins only): the users and their roles.

use askama::Template;
use axum::{extract::State, response::Response};

use super::{AppState, Chrome, display_time, render};
use crate::{
    auth::{CurrentUser, users},
    error::AppError,
};

struct UserLine {
    username: String,
    role: String,
    enabled: bool,
    created: String,
    last_sign_in: String,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    chrome: Chrome,
    users: Vec<UserLine>,
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Response, AppError> {
    let users = users::list(&state.pool)
        .await?
        .into_iter()
        .map(|u| UserLine {
            username: u.username,
            role: u.role.to_string(),
            enabled: u.disabled_at.is_none(),
            created: display_time(u.created_at),
            last_sign_in: u
                .last_sign_in_at
                .map(display_time)
                .unwrap_or_else(|| "never".into()),
        })
        .collect();
    Ok(render(&AdminPage {
        chrome: Chrome::new(&state.site, "Administration", Some(&user)),
        users,
    }))
}
