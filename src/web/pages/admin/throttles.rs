//! Sign-in throttles: who is being slowed down, and a way to lift a block.

use askama::Template;
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::{
    audit::Actor,
    auth::throttle,
    display::display_time,
    error::AppError,
    web::{
        AppState,
        http::{Chrome, CurrentUser, TextQuery, form::SignedForm, render, request::audit_meta},
    },
};

struct ThrottleLine {
    scope: String,
    key: String,
    failures: i32,
    consecutive: i32,
    last_failure: String,
    blocked_until: String,
    blocked: bool,
    locked: bool,
}

#[derive(Template)]
#[template(path = "admin/throttles.html")]
struct ThrottlesPage {
    chrome: Chrome,
    csrf: String,
    lines: Vec<ThrottleLine>,
    account_failures: i32,
    ip_failures: i32,
    window: String,
    done: bool,
}

#[derive(Debug, Deserialize, Default)]
pub struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    TextQuery(query): TextQuery<DoneQuery>,
) -> Result<Response, AppError> {
    let now = OffsetDateTime::now_utc();
    let settings = state.settings.throttle;
    let lines = throttle::list(&state.pool, settings.window)
        .await?
        .into_iter()
        .map(|t| ThrottleLine {
            blocked: t.blocked_until.is_some_and(|u| u > now),
            locked: t.consecutive >= throttle::HARD_LIMIT,
            scope: t.scope,
            key: t.key,
            failures: t.failures,
            consecutive: t.consecutive,
            last_failure: display_time(t.last_failure_at),
            blocked_until: t
                .blocked_until
                .filter(|u| *u > now)
                .map(display_time)
                .unwrap_or_default(),
        })
        .collect();
    Ok(render(&ThrottlesPage {
        chrome: super::admin_chrome(&state, "Sign-in throttles", &user).await?,
        csrf: user.csrf_token.clone(),
        lines,
        account_failures: settings.account_failures,
        ip_failures: settings.ip_failures,
        window: format!("{}", settings.window),
        done: query.done.is_some(),
    }))
}

#[derive(Debug, Deserialize)]
pub struct ClearForm {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    key: String,
}

pub async fn clear(
    State(state): State<AppState>,
    SignedForm { user, form, parts }: SignedForm<ClearForm>,
) -> Result<Response, AppError> {
    let Some(scope) = throttle::Scope::parse(&form.scope) else {
        return Ok(StatusCode::UNPROCESSABLE_ENTITY.into_response());
    };
    let actor = Actor::new(&user.username, audit_meta(&parts));
    if !throttle::clear(&state.pool, &actor, scope, &form.key).await? {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    Ok(Redirect::to("/admin/throttles?done=cleared").into_response())
}
