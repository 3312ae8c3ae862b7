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
    display::Zone,
    error::AppError,
    web::{
        AppState,
        http::{Chrome, CurrentUser, TextQuery, fresh::FreshForm, render, request::audit_meta},
    },
};

struct ThrottleLine {
    scope: String,
    key: String,
    /// What the key means to a person: the name, the address, or "name (known device)".
    label: String,
    failures: i32,
    consecutive: i32,
    last_failure: String,
    blocked_until: String,
    blocked: bool,
}

const PAGE_SIZE: i64 = 50;

#[derive(Template)]
#[template(path = "admin/throttles.html")]
struct ThrottlesPage {
    chrome: Chrome,
    csrf: String,
    lines: Vec<ThrottleLine>,
    q: String,
    page: i64,
    pages: i64,
    total: i64,
    account_failures: i32,
    ip_failures: i32,
    window: String,
    done: bool,
}

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<i64>,
    #[serde(default)]
    done: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    TextQuery(query): TextQuery<ListQuery>,
) -> Result<Response, AppError> {
    let now = OffsetDateTime::now_utc();
    let zone = Zone::of(user.time_zone.as_deref());
    let settings = state.settings.throttle;
    let q: String = query
        .q
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let found = throttle::list(
        &state.pool,
        settings.window,
        &q,
        query.page.unwrap_or(1),
        PAGE_SIZE,
    )
    .await?;
    let lines = found
        .rows
        .into_iter()
        .map(|t| ThrottleLine {
            blocked: t.blocked_until.is_some_and(|u| u > now),
            label: match t.scope.as_str() {
                "device" => format!(
                    "{} (known device)",
                    t.key.split(':').next().unwrap_or_default()
                ),
                _ => t.key.clone(),
            },
            scope: t.scope,
            key: t.key,
            failures: t.failures,
            consecutive: t.consecutive,
            last_failure: zone.time(t.last_failure_at),
            blocked_until: t
                .blocked_until
                .filter(|u| *u > now)
                .map(|at| zone.time(at))
                .unwrap_or_default(),
        })
        .collect();
    Ok(render(&ThrottlesPage {
        chrome: super::admin_chrome(&state, "Sign-in throttles", &user).await?,
        csrf: user.csrf_token.clone(),
        lines,
        q,
        page: found.page,
        pages: found.pages,
        total: found.total,
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
    FreshForm { user, form, parts }: FreshForm<ClearForm>,
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
