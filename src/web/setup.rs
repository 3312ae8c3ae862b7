//! First run without the command line: while the database has no user, `serve` prints a
//! one-time link (`/setup?token=…`, like Jenkins' initial admin password) that lets the
//! operator create the first administrator in the browser. The route answers 404 for
//! anything else, and for good once any user exists.

use askama::Template;
use axum::{
    Form,
    extract::{Query, State},
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use tower_cookies::Cookies;

use super::{AppState, Chrome, denial, login, render_status};
use crate::{
    audit::AuditEvent,
    auth::{
        Notice, Role,
        users::{self, Username},
    },
    error::AppError,
};

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates a setup token if the database has no user yet; returns it (to print).
pub async fn issue_token(pool: &PgPool) -> sqlx::Result<Option<String>> {
    if users::count(pool).await? > 0 {
        return Ok(None);
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    sqlx::query!(
        "INSERT INTO setup_tokens (token_hash) VALUES ($1)",
        hash(&token)
    )
    .execute(pool)
    .await?;
    Ok(Some(token))
}

/// Whether `token` is a live setup token, compared in constant time against each stored hash.
async fn token_is_valid(executor: impl sqlx::PgExecutor<'_>, token: &str) -> sqlx::Result<bool> {
    if token.is_empty() || token.len() > 100 {
        return Ok(false);
    }
    let candidate = hash(token);
    let stored = sqlx::query_scalar!("SELECT token_hash FROM setup_tokens")
        .fetch_all(executor)
        .await?;
    Ok(stored.iter().fold(false, |found, known| {
        found | bool::from(known.ct_eq(&candidate))
    }))
}

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
    let mut response = render_status(
        status,
        &SetupPage {
            chrome: Chrome::new(&state.site, "Set up Portcullis", None),
            token,
            csrf: state.csrf.anonymous_token(&cookie),
            username,
            errors,
            min_password: state.settings.password_min_length,
        },
    );
    super::help::noindex(&mut response);
    response
}

pub async fn form(
    State(state): State<AppState>,
    cookies: Cookies,
    Query(query): Query<SetupQuery>,
) -> Result<Response, AppError> {
    if users::count(&state.pool).await? > 0 || !token_is_valid(&state.pool, &query.token).await? {
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
    Form(form): Form<SetupForm>,
) -> Result<Response, AppError> {
    let cookie = cookies
        .get(state.settings.csrf_cookie_name())
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    if !state.csrf.verify_anonymous_token(&cookie, &form.csrf) {
        return Ok(denial::csrf_failed(&parts, None, "/"));
    }
    if users::count(&state.pool).await? > 0 || !token_is_valid(&state.pool, &form.token).await? {
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
    let password = match users::check_new_password(
        &form.password,
        state.settings.password_min_length,
        display.as_deref(),
    ) {
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
    // One transaction, serialized: two browsers racing with the same link create one admin.
    let mut tx = state.pool.begin().await?;
    sqlx::query!("SELECT pg_advisory_xact_lock(7266112354)")
        .execute(&mut *tx)
        .await?;
    let existing = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM users"#)
        .fetch_one(&mut *tx)
        .await?;
    if existing > 0 || !token_is_valid(&mut *tx, &form.token).await? {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    sqlx::query!(
        "INSERT INTO users (username, username_key, password_hash, role) VALUES ($1, $2, $3, $4)",
        username.display,
        username.key,
        hash,
        Role::Admin as Role,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("DELETE FROM setup_tokens")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(user = %username.display, "first administrator created at /setup");
    denial::record(&parts, |meta| {
        AuditEvent::new("user_created", meta)
            .username("setup")
            .target(&username.display)
            .detail(serde_json::json!({ "role": "admin" }))
    });
    Ok(Redirect::to(&denial::login_url(Some(Notice::SetupDone), Some("/admin"))).into_response())
}
