//! First run without the command line: the page behind the one-time link `serve` prints
//! while the database has no user (`/setup?token=…`, like Jenkins' initial admin
//! password; see `accounts::setup`). The route answers 404 for anything else, and for good
//! once any user exists.

use askama::Template;
use axum::{
    extract::State,
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use tower_cookies::Cookies;

use crate::{
    accounts::{
        self, Username,
        setup::{create_first_admin, token_is_valid},
    },
    auth::Notice,
    error::AppError,
    web::{
        AppState,
        http::{Chrome, TextForm, TextQuery, denial, render_status, request::audit_meta},
        pages::login,
    },
};

#[derive(Default)]
struct SetupErrors {
    username: Option<String>,
    password: Option<String>,
    confirm: Option<String>,
}

impl SetupErrors {
    fn any(&self) -> bool {
        self.username.is_some() || self.password.is_some() || self.confirm.is_some()
    }
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    chrome: Chrome,
    token: String,
    csrf: String,
    username: String,
    errors: SetupErrors,
    min_password: usize,
}

#[derive(Debug, Deserialize)]
pub struct SetupQuery {
    #[serde(default)]
    token: String,
}

fn page(
    state: &AppState,
    cookies: &Cookies,
    status: StatusCode,
    token: String,
    username: String,
    errors: SetupErrors,
) -> Response {
    let cookie = login::anonymous_csrf_cookie(state, cookies);
    render_status(
        status,
        &SetupPage {
            chrome: Chrome::new(&state.site, "Set up Portcullis", None),
            token,
            csrf: state.csrf.anonymous_token(&cookie),
            username,
            errors,
            min_password: state.settings.password_min_length,
        },
    )
}

pub async fn form(
    State(state): State<AppState>,
    cookies: Cookies,
    TextQuery(query): TextQuery<SetupQuery>,
) -> Result<Response, AppError> {
    if accounts::count(&state.pool).await? > 0 || !token_is_valid(&state.pool, &query.token).await?
    {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    Ok(page(
        &state,
        &cookies,
        StatusCode::OK,
        query.token,
        "admin".into(),
        SetupErrors::default(),
    ))
}

#[derive(Debug, Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm_password: String,
}

pub async fn submit(
    State(state): State<AppState>,
    cookies: Cookies,
    parts: Parts,
    TextForm(form): TextForm<SetupForm>,
) -> Result<Response, AppError> {
    if !super::login::anonymous_csrf_ok(&state, &cookies, &form.csrf) {
        return Ok(denial::csrf_failed(&parts, None, "/").await);
    }
    if accounts::count(&state.pool).await? > 0 || !token_is_valid(&state.pool, &form.token).await? {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    let mut errors = SetupErrors::default();
    let username = match Username::parse(&form.username) {
        Ok(username) => Some(username),
        Err(problem) => {
            errors.username = Some(problem.to_string());
            None
        }
    };
    let display = username.as_ref().map(|u| u.display.clone());
    let password = match accounts::check_new_password(
        &state.hasher,
        &form.password,
        state.settings.password_min_length,
        display.as_deref(),
    )
    .await?
    {
        Ok(password) => Some(password),
        Err(problem) => {
            errors.password = Some(problem.to_string());
            None
        }
    };
    if form.confirm_password != form.password {
        errors.confirm = Some("The two passwords differ.".into());
    }
    let typed: String = form
        .username
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let (Some(username), Some(password), false) = (username, password, errors.any()) else {
        return Ok(page(
            &state,
            &cookies,
            StatusCode::BAD_REQUEST,
            form.token,
            typed,
            errors,
        ));
    };
    let hash = state.hasher.hash(password).await?;
    if !create_first_admin(
        &state.pool,
        &form.token,
        &username,
        &hash,
        audit_meta(&parts),
    )
    .await?
    {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    tracing::info!(user = %username.display, "first administrator created at /setup");
    Ok(Redirect::to(&denial::login_url(Some(Notice::SetupDone), Some("/admin"))).into_response())
}
