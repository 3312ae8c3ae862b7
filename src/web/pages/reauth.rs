//! `/reauth`: "confirm it's you" before a sensitive change (see `auth::reauth` and
//! `web::http::fresh`). Names the change, asks for the password (and a code with an
//! authenticator app) or a passkey, cycles the session id, then offers the waiting form
//! again (or goes back to where the person was).

use askama::Template;
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use serde_json::json;
use tower_cookies::Cookies;
use tower_sessions::Session;

use crate::{
    audit::AuditEvent,
    auth::{
        next::safe_next,
        passkey::sign_in as passkey_sign_in,
        reauth::{self, PendingForm},
        second_factor::{self, Factors},
        sign_in,
        throttle::Blocked,
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
        pages::{
            login,
            passkey_sign_in::{self as passkey_pages, PasskeyUi},
        },
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
    /// Offer the password form (everyone but those whose only second factor is a passkey:
    /// for them the passkey is the confirmation, as it is at sign-in).
    password: bool,
    /// Ask for the second factor's code too (an authenticator app, or recovery codes).
    second_factor: bool,
    /// Offer "Confirm with a passkey".
    passkey: bool,
    passkeys: PasskeyUi,
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

/// Whether the password form is offered: not when a passkey is the only second factor.
fn password_path(factors: Factors) -> bool {
    factors.takes_codes() || factors.passkeys == 0
}

fn page(
    state: &AppState,
    user: &crate::auth::SessionUser,
    factors: Factors,
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
            password: password_path(factors),
            second_factor: factors.takes_codes(),
            passkey: factors.passkeys > 0,
            passkeys: PasskeyUi::new(state),
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
    let factors = second_factor::factors(&state.pool, user.user_id).await?;
    Ok(page(
        &state,
        &user,
        factors,
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
    /// A passkey's answer (JSON), filled in by `static/passkeys.js`: then it alone confirms.
    #[serde(default)]
    credential: String,
    #[serde(default)]
    next: String,
}

/// How a confirmation went: confirmed, refused (the audit reason), or throttled.
type Checked = Result<Result<(), &'static str>, Blocked>;

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
    let factors = second_factor::factors(&state.pool, user.user_id).await?;
    let with_passkey = !form.credential.is_empty();
    let checked: Checked = if with_passkey {
        let ceremony = passkey_pages::take_ceremony(&state, &cookies);
        passkey_sign_in::verify_current(
            &cx,
            user.user_id,
            &user.username,
            &ip,
            device_cookie.as_deref(),
            &ceremony,
            &form.credential,
        )
        .await?
        .map(|verified| verified.map_err(|refusal| refusal.as_str()))
    } else {
        let mut verified = sign_in::verify_current(
            &cx,
            user.user_id,
            &user.username,
            &ip,
            device_cookie.as_deref(),
            sign_in::Proof::Password(&form.password),
        )
        .await?;
        if factors.takes_codes() && matches!(verified, Ok(true)) {
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
        // A passkey as the only second factor: a password alone is not enough.
        verified.map(|right| {
            (right && password_path(factors))
                .then_some(())
                .ok_or("bad_password")
        })
    };
    match checked {
        Err(blocked) => {
            return Ok(login::throttled(&state, &parts, &user.username, blocked).await);
        }
        Ok(Err(reason)) => {
            record(&parts, |meta| {
                AuditEvent::new("reauth_failed", meta)
                    .status(401)
                    .reason(reason)
                    .username(&user.username)
            })
            .await;
            let pending = reauth::pending(&session).await?;
            let message = if with_passkey {
                "That passkey could not confirm it's you. Try again, or use another way."
            } else if factors.takes_codes() {
                "That password or code is not right (codes work once and change every 30 seconds)."
            } else if !password_path(factors) {
                "Confirm with your passkey."
            } else {
                "That is not your password."
            };
            return Ok(page(
                &state,
                &user,
                factors,
                pending.as_ref(),
                next,
                StatusCode::UNAUTHORIZED,
                Some(message),
            ));
        }
        Ok(Ok(())) => {}
    }
    let pending = reauth::take_pending(&session).await?;
    reauth::confirm(&session).await?;
    let method = if with_passkey { "passkey" } else { "password" };
    tracing::info!(user = %user.username, method, "re-authenticated");
    record(&parts, |meta| {
        AuditEvent::new("reauthenticated", meta)
            .username(&user.username)
            .detail(json!({ "method": method }))
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
