//! The signed-in user's own page.

use askama::Template;
use axum::{extract::State, response::Response};

use super::{AppState, Chrome, display_time, render};
use crate::auth::CurrentUser;

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    chrome: Chrome,
    username: String,
    role: String,
    signed_in_at: String,
    idle_expires_at: String,
    absolute_expires_at: String,
    previous_sign_in: Option<String>,
    previous_ip: Option<String>,
}

pub async fn show(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> Response {
    render(&AccountPage {
        chrome: Chrome::new(&state.site, "Your account", Some(&user)),
        username: user.username.clone(),
        role: user.role.to_string(),
        signed_in_at: display_time(user.created_at),
        idle_expires_at: display_time(user.idle_expires_at),
        absolute_expires_at: display_time(user.absolute_expires_at),
        previous_sign_in: user.prev_sign_in_at.map(display_time),
        previous_ip: user.prev_sign_in_ip.clone(),
    })
}
