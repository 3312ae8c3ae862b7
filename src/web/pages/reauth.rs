//! `/reauth`: "confirm it's you" before a sensitive change (see `auth::reauth` and
//! `web::http::fresh`). Names the change, asks for the password, cycles the session id,
//! then offers the waiting form again (or goes back to where the person was).

use askama::Template;
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use tower_cookies::Cookies;
use tower_sessions::Session;

use crate::{
    audit::AuditEvent,
    auth::{
        next::safe_next,
        reauth::{self, PendingForm},
        sign_in,
    },
    display::plain_duration,
    error::AppError,
    web::{
        AppState,
        http::{
            Chrome, CurrentUser, TextQuery,
            form::SignedForm,
            render_status,
            request::{client_ip, record},
        },
        pages::login,
    },
};

#[derive(Template)]
#[template(path = "reauth.html")]
struct ReauthPage {
    chrome: Chrome,
    csrf: String,
    username: String,
    action: &'static str,
    window: String,
    next: String,
    kept: bool,
    dropped_secrets: bool,
    /// Ask for the second factor's code too.
    second_factor: bool,
    error: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "reauth_continue.html")]
struct ContinuePage {
    chrome: Chrome,
    csrf: String,
    action: &'static str,
    form_action: String,
    fields: Vec<(String, String)>,
    back: String,
    dropped_secrets: bool,
}

#[derive(Debug, Deserialize)]
pub struct ReauthQuery {
    #[serde(default)]
    next: Option<String>,
}

fn page(
    state: &AppState,
    user: &crate::auth::SessionUser,
    pending: Option<&PendingForm>,
    next: String,
    status: StatusCode,
    error: Option<&'static str>,
) -> Response {
    render_status(
        status,
        &ReauthPage {
            chrome: Chrome::new(&state.site, "Confirm it’s you", Some(user)),
            csrf: user.csrf_token.clone(),
            username: user.username.clone(),
            action: pending.map_or("make this change", |p| reauth::describe(&p.action)),
            window: plain_duration(state.settings.reauth_window),
            next,
            kept: pending.is_some_and(|p| !p.fields.is_empty()),
            dropped_secrets: pending.is_some_and(|p| p.action.ends_with("/password")),
            second_factor: user.has_second_factor,
            error,
        },
    )
}

pub async fn form(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    TextQuery(query): TextQuery<ReauthQuery>,
) -> Result<Response, AppError> {
    let next = query
        .next
        .as_deref()
        .and_then(safe_next)
        .unwrap_or_else(|| "/account".into());
    let pending = reauth::pending(&session).await?;
    Ok(page(
        &state,
        &user,
        pending.as_ref(),
        next,
        StatusCode::OK,
        None,
    ))
}

#[derive(Debug, Deserialize)]
pub struct ReauthForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: String,
}

pub async fn submit(
    State(state): State<AppState>,
    session: Session,
    cookies: Cookies,
    SignedForm { user, form, parts }: SignedForm<ReauthForm>,
) -> Result<Response, AppError> {
    let next = safe_next(&form.next).unwrap_or_else(|| "/account".into());
    let device_cookie = cookies
        .get(state.settings.device_cookie_name())
        .map(|c| c.value().to_owned());
    let cx = login::sign_in_context(&state);
    let ip = client_ip(&parts);
    let mut verified = sign_in::verify_current(
        &cx,
        user.user_id,
        &user.username,
        &ip,
        device_cookie.as_deref(),
        sign_in::Proof::Password(&form.password),
    )
    .await?;
    if user.has_second_factor && matches!(verified, Ok(true)) {
        verified = sign_in::verify_current(
            &cx,
            user.user_id,
            &user.username,
            &ip,
            device_cookie.as_deref(),
            sign_in::Proof::Code(&form.code),
        )
        .await?;
    }
    match verified {
        Err(blocked) => {
            return Ok(login::throttled(&state, &parts, &user.username, blocked).await);
        }
        Ok(false) => {
            record(&parts, |meta| {
                AuditEvent::new("reauth_failed", meta)
                    .status(401)
                    .reason("bad_password")
                    .username(&user.username)
            })
            .await;
            let pending = reauth::pending(&session).await?;
            return Ok(page(
                &state,
                &user,
                pending.as_ref(),
                next,
                StatusCode::UNAUTHORIZED,
                Some(if user.has_second_factor {
                    "That password or code is not right (codes work once and change every 30 seconds)."
                } else {
                    "That is not your password."
                }),
            ));
        }
        Ok(true) => {}
    }
    let pending = reauth::take_pending(&session).await?;
    reauth::confirm(&session).await?;
    tracing::info!(user = %user.username, "re-authenticated");
    record(&parts, |meta| {
        AuditEvent::new("reauthenticated", meta).username(&user.username)
    })
    .await;
    let Some(pending) = pending else {
        return Ok(Redirect::to(&next).into_response());
    };
    // The session has a new id, and with it a new CSRF token for the waiting form.
    let Some(id) = session.id() else {
        return Ok(Redirect::to(&next).into_response());
    };
    let mut renewed = (*user).clone();
    renewed.csrf_token = state.csrf.session_token(id);
    Ok(render_status(
        StatusCode::OK,
        &ContinuePage {
            chrome: Chrome::new(&state.site, "Continue", Some(&renewed)),
            csrf: renewed.csrf_token.clone(),
            action: reauth::describe(&pending.action),
            dropped_secrets: pending.action.ends_with("/password"),
            form_action: pending.action,
            fields: pending.fields,
            back: pending.back,
        },
    ))
}
