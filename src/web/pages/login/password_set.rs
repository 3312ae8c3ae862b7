//! The sign-in page after a password was chosen with a one-time link
//! (`pages::password_link`). Its own notice, not a session `Notice`: no session ended here,
//! and the JSON API never answers with it.

use axum::{http::StatusCode, response::Response};
use tower_cookies::Cookies;

use super::{FORGET_PAGES, LoginPage, anonymous_csrf_cookie};
use crate::web::{
    AppState,
    http::{Chrome, render_status},
    pages::passkey_sign_in::PasskeyUi,
};

pub fn page(state: &AppState, cookies: &Cookies, next: Option<String>) -> Response {
    let cookie = anonymous_csrf_cookie(state, cookies);
    render_status(
        StatusCode::OK,
        &LoginPage {
            chrome: Chrome::new(&state.site, "Sign in", None),
            notice: Some("Your password is set. Sign in with it."),
            notice_help: Some(
                "The link you used no longer works, and every session of your account was \
                 signed out."
                    .into(),
            ),
            notice_contact: false,
            // Pages of the account's old sessions may be in this browser's cache.
            forget_pages: Some(FORGET_PAGES),
            error: None,
            username: String::new(),
            next: next.unwrap_or_default(),
            csrf: state.csrf.anonymous_token(&cookie),
            passkeys: PasskeyUi::new(state),
            passkey_error: None,
            remember_days: super::remember_days(state),
            remember: false,
        },
    )
}
