//! "Forgot your password?" (`/login/forgot`, only with `--smtp-url`): a username or e-mail
//! address in, always the same answer out. The lookup and the mail happen in the
//! background (`accounts::recovery`), so neither the page nor its timing says whether an
//! account matched.

use askama::Template;
use axum::{
    extract::State,
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use tower_cookies::Cookies;

use crate::{
    accounts::recovery::{Recovery, ResetRequest},
    error::AppError,
    web::{
        AppState,
        http::{
            Chrome, TextForm, denial, errors,
            input::FormRejection,
            render_status,
            request::{audit_meta, client_ip},
        },
        pages::login::anonymous_csrf_cookie,
    },
};

pub const PATH: &str = "/login/forgot";

#[derive(Template)]
#[template(path = "forgot.html")]
struct ForgotPage {
    chrome: Chrome,
    csrf: String,
    /// The request was taken: the one answer, whatever was typed.
    sent: bool,
    error: Option<&'static str>,
}

fn recovery(state: &AppState) -> Option<&Recovery> {
    state.recovery.as_ref()
}

fn forgot_page(
    state: &AppState,
    cookies: &Cookies,
    status: StatusCode,
    sent: bool,
    error: Option<&'static str>,
) -> Response {
    let cookie = anonymous_csrf_cookie(state, cookies);
    let page = ForgotPage {
        chrome: Chrome::new(&state.site, "Forgot your password?", None),
        csrf: state.csrf.anonymous_token(&cookie),
        sent,
        error,
    };
    render_status(status, &page)
}

pub async fn form(State(state): State<AppState>, cookies: Cookies) -> Response {
    if recovery(&state).is_none() {
        return errors::not_found().await.into_response();
    }
    forgot_page(&state, &cookies, StatusCode::OK, false, None)
}

#[derive(Debug, Deserialize)]
pub struct ForgotForm {
    /// A username or an e-mail address.
    #[serde(default)]
    account: String,
    #[serde(default)]
    csrf: String,
}

/// Takes the request and answers the same page whatever happens next: no account, no
/// verified address, over the throttle's budget, or a link on its way.
pub async fn submit(
    State(state): State<AppState>,
    cookies: Cookies,
    parts: Parts,
    input: Result<TextForm<ForgotForm>, FormRejection>,
) -> Result<Response, AppError> {
    // Bad input is refused as on every form (400 naming the field), mail on or off.
    let form = match input {
        Ok(TextForm(form)) => form,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let Some(recovery) = recovery(&state) else {
        return Ok(errors::not_found().await.into_response());
    };
    if !super::login::anonymous_csrf_ok(&state, &cookies, &form.csrf) {
        return Ok(denial::csrf_failed(&parts, None, PATH).await);
    }
    let typed = form.account.trim();
    if typed.is_empty() {
        return Ok(forgot_page(
            &state,
            &cookies,
            StatusCode::BAD_REQUEST,
            false,
            Some("Enter your username or your e-mail address."),
        ));
    }
    recovery
        .start(ResetRequest {
            typed: typed.chars().take(254).collect(),
            ip: client_ip(&parts),
            meta: audit_meta(&parts),
        })
        .await?;
    Ok(forgot_page(&state, &cookies, StatusCode::OK, true, None))
}
