//! `/account/two-factor`: turning two-step verification on (a QR code drawn on the server,
//! the key as text, then a first code), new recovery codes, turning it off. Changes need a
//! recent authentication (`FreshForm`).

use askama::Template;
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::{
    accounts::own,
    audit::Actor,
    auth::{
        Role, SessionUser,
        second_factor::{self, Enrolment},
    },
    config::RequireMfa,
    display::Zone,
    error::AppError,
    web::{
        AppState,
        http::{
            Chrome, CurrentUser, TextQuery, fresh::FreshForm, render_status, request::audit_meta,
        },
    },
};

#[derive(Template)]
#[template(path = "two_factor.html")]
struct TwoFactorPage {
    chrome: Chrome,
    csrf: String,
    required: bool,
    admin_only: bool,
    enabled: bool,
    codes_left: i64,
    last_recovery_used: Option<String>,
    can_turn_off: bool,
    enrolment: Option<Enrolment>,
    done: Option<&'static str>,
    problem: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
struct CodesPage {
    chrome: Chrome,
    csrf: String,
    heading: &'static str,
    codes: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct PageQuery {
    #[serde(default)]
    required: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

async fn page(
    state: &AppState,
    user: &SessionUser,
    status: StatusCode,
    query: PageQuery,
    problem: Option<&'static str>,
) -> Result<Response, AppError> {
    let status_row = own::second_factor_status(&state.pool, user.user_id).await?;
    let enrolment = if status_row.enabled {
        None
    } else {
        second_factor::start_enrolment(&state.pool, user.user_id, &user.username).await?
    };
    let policy = state.settings.require_mfa;
    Ok(render_status(
        status,
        &TwoFactorPage {
            chrome: Chrome::new(&state.site, "Two-step verification", Some(user)),
            csrf: user.csrf_token.clone(),
            required: query.required.is_some() && !status_row.enabled,
            admin_only: policy == RequireMfa::Admins,
            enabled: status_row.enabled,
            codes_left: status_row.codes_left,
            last_recovery_used: status_row
                .last_recovery_used_at
                .map(|at| Zone::of(user.time_zone.as_deref()).time(at)),
            can_turn_off: !policy.covers(user.role),
            enrolment,
            done: match query.done.as_deref() {
                Some("disabled") => {
                    Some("Two-step verification is off, and your other sessions were signed out.")
                }
                _ => None,
            },
            problem,
        },
    ))
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    TextQuery(query): TextQuery<PageQuery>,
) -> Result<Response, AppError> {
    page(&state, &user, StatusCode::OK, query, None).await
}

#[derive(Debug, Deserialize)]
pub struct EnableForm {
    #[serde(default)]
    code: String,
}

pub async fn enable(
    State(state): State<AppState>,
    FreshForm { user, form, parts }: FreshForm<EnableForm>,
) -> Result<Response, AppError> {
    let actor = Actor::new(&user.username, audit_meta(&parts));
    let codes = second_factor::confirm_enrolment(
        &state.pool,
        &actor,
        user.user_id,
        &form.code,
        OffsetDateTime::now_utc(),
    )
    .await?;
    if codes.is_some() {
        own::end_remembered_elsewhere(&state.pool, user.user_id, user.session_id).await?;
    }
    let Some(codes) = codes else {
        let problem = "That code is not right. Enter the code the app shows now (it changes every 30 seconds).";
        return page(
            &state,
            &user,
            StatusCode::BAD_REQUEST,
            PageQuery::default(),
            Some(problem),
        )
        .await;
    };
    tracing::info!(user = %user.username, "two-step verification turned on");
    Ok(codes_page(
        &state,
        &user,
        "Two-step verification is on.",
        codes,
    ))
}

fn codes_page(
    state: &AppState,
    user: &SessionUser,
    heading: &'static str,
    codes: Vec<String>,
) -> Response {
    render_status(
        StatusCode::OK,
        &CodesPage {
            chrome: Chrome::new(&state.site, "Your recovery codes", Some(user)),
            csrf: user.csrf_token.clone(),
            heading,
            codes,
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

pub async fn new_codes(
    State(state): State<AppState>,
    FreshForm { user, parts, .. }: FreshForm<Empty>,
) -> Result<Response, AppError> {
    if !user.has_second_factor {
        return Ok(Redirect::to("/account/two-factor").into_response());
    }
    let actor = Actor::new(&user.username, audit_meta(&parts));
    let codes = second_factor::regenerate_codes(&state.pool, &actor, user.user_id).await?;
    own::end_remembered_elsewhere(&state.pool, user.user_id, user.session_id).await?;
    Ok(codes_page(
        &state,
        &user,
        "Your old recovery codes no longer work.",
        codes,
    ))
}

pub async fn disable(
    State(state): State<AppState>,
    FreshForm { user, parts, .. }: FreshForm<Empty>,
) -> Result<Response, AppError> {
    if state.settings.require_mfa.covers(user.role) {
        let problem = if user.role == Role::Admin {
            "Administrators must keep two-step verification on."
        } else {
            "This site requires two-step verification for everyone."
        };
        return page(
            &state,
            &user,
            StatusCode::CONFLICT,
            PageQuery::default(),
            Some(problem),
        )
        .await;
    }
    let actor = Actor::new(&user.username, audit_meta(&parts));
    own::turn_off_second_factor(&state.pool, &actor, user.user_id, user.session_id).await?;
    Ok(Redirect::to("/account/two-factor?done=disabled").into_response())
}
