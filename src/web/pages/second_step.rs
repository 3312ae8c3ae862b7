//! `/login/second-factor`: the second step of signing in, for accounts with two-step
//! verification. The first step leaves only a signed, short-lived note in a cookie
//! (`auth::sign_in::Pending`): no session, so every page is still the 401 case until a
//! valid code (or recovery code) or one of the account's passkeys answers.

use askama::Template;
use axum::{
    extract::State,
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use tower_cookies::{Cookie, Cookies, cookie::SameSite};
use tower_sessions::Session;

use crate::{
    audit::AuditEvent,
    auth::{
        Notice,
        next::safe_next,
        second_factor::{self, Factors},
        sign_in::{self, Answer, PENDING_LIFETIME, Pending, SecondStep, SecondStepOutcome},
    },
    error::AppError,
    telemetry::metric,
    web::{
        AppState,
        http::{
            Chrome, TextForm, TextQuery,
            denial::{self, login_url},
            render_status,
            request::{client_ip, user_agent},
        },
        pages::{
            login::{self, anonymous_csrf_cookie},
            passkey_sign_in::{self, PasskeyUi},
        },
    },
};

const PATH: &str = "/login/second-factor";

pub fn pending_cookie_name(state: &AppState) -> &'static str {
    if state.settings.secure_cookies {
        "__Host-portcullis_second_step"
    } else {
        "portcullis_second_step"
    }
}

fn pending_cookie(state: &AppState, value: String, max_age: time::Duration) -> Cookie<'static> {
    Cookie::build((pending_cookie_name(state), value))
        .http_only(true)
        .secure(state.settings.secure_cookies)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(tower_cookies::cookie::time::Duration::seconds(
            max_age.whole_seconds(),
        ))
        .build()
}

/// After a right password for an account with a second factor: keep the note of the
/// first step and ask for the code.
pub fn begin(
    state: &AppState,
    cookies: &Cookies,
    pending: Pending,
    next: Option<&str>,
) -> Response {
    cookies.add(pending_cookie(state, pending.value, PENDING_LIFETIME));
    let query =
        serde_urlencoded::to_string([("next", next.unwrap_or_default())]).unwrap_or_default();
    Redirect::to(&format!("{PATH}?{query}")).into_response()
}

#[derive(Template)]
#[template(path = "second_step.html")]
struct SecondStepPage {
    chrome: Chrome,
    csrf: String,
    next: String,
    error: Option<&'static str>,
    /// Ask for a code (an authenticator app, or recovery codes left).
    codes: bool,
    /// Offer the account's passkeys.
    passkey: bool,
    passkeys: PasskeyUi,
}

fn page(
    state: &AppState,
    cookies: &Cookies,
    status: StatusCode,
    factors: Factors,
    next: String,
    error: Option<&'static str>,
) -> Response {
    let cookie = anonymous_csrf_cookie(state, cookies);
    render_status(
        status,
        &SecondStepPage {
            chrome: Chrome::new(&state.site, "Two-step verification", None),
            csrf: state.csrf.anonymous_token(&cookie),
            next,
            error,
            codes: factors.takes_codes() || factors.passkeys == 0,
            passkey: factors.passkeys > 0,
            passkeys: PasskeyUi::new(state),
        },
    )
}

/// The second factors of the account whose first step the browser's note is for.
async fn pending_factors(state: &AppState, cookies: &Cookies) -> sqlx::Result<Option<Factors>> {
    let user = cookies
        .get(pending_cookie_name(state))
        .and_then(|c| sign_in::pending_user(&state.csrf, c.value()));
    match user {
        Some(user) => Ok(Some(second_factor::factors(&state.pool, user).await?)),
        None => Ok(None),
    }
}

fn expired(next: Option<&str>) -> Response {
    Redirect::to(&login_url(Some(Notice::SecondStepExpired), next)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct StepQuery {
    #[serde(default)]
    next: Option<String>,
}

pub async fn form(
    State(state): State<AppState>,
    cookies: Cookies,
    TextQuery(query): TextQuery<StepQuery>,
) -> Result<Response, AppError> {
    let next = query.next.as_deref().and_then(safe_next);
    let Some(factors) = pending_factors(&state, &cookies).await? else {
        return Ok(expired(next.as_deref()));
    };
    Ok(page(
        &state,
        &cookies,
        StatusCode::OK,
        factors,
        next.unwrap_or_default(),
        None,
    ))
}

#[derive(Debug, Deserialize)]
pub struct StepForm {
    #[serde(default)]
    code: String,
    /// A passkey's answer (JSON), filled in by `static/passkeys.js`; then `code` is unused.
    #[serde(default)]
    credential: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    csrf: String,
}

pub async fn submit(
    State(state): State<AppState>,
    cookies: Cookies,
    session: Session,
    parts: Parts,
    TextForm(form): TextForm<StepForm>,
) -> Result<Response, AppError> {
    let next = safe_next(&form.next);
    if !super::login::anonymous_csrf_ok(&state, &cookies, &form.csrf) {
        return Ok(denial::csrf_failed(&parts, None, PATH).await);
    }
    let Some(pending) = cookies
        .get(pending_cookie_name(&state))
        .map(|c| c.value().to_owned())
    else {
        return Ok(expired(next.as_deref()));
    };
    let device_cookie = cookies
        .get(state.settings.device_cookie_name())
        .map(|c| c.value().to_owned());
    let ceremony;
    let answer = if form.credential.is_empty() {
        Answer::Code(&form.code)
    } else {
        ceremony = passkey_sign_in::take_ceremony(&state, &cookies);
        Answer::Passkey {
            ceremony: &ceremony,
            credential: &form.credential,
        }
    };
    let step = SecondStep {
        pending: &pending,
        answer,
        ip: &client_ip(&parts),
        user_agent: user_agent(&parts.headers),
        device_cookie: device_cookie.as_deref(),
    };
    let outcome = sign_in::second_step(&login::sign_in_context(&state), &session, step).await?;
    match outcome {
        SecondStepOutcome::SignedIn {
            username,
            method,
            device_cookie,
        } => {
            cookies.remove(pending_cookie(&state, String::new(), time::Duration::ZERO));
            Ok(login::signed_in(
                &state,
                &cookies,
                &parts,
                &username,
                method,
                device_cookie,
                next.as_deref(),
            )
            .await)
        }
        SecondStepOutcome::Expired => {
            cookies.remove(pending_cookie(&state, String::new(), time::Duration::ZERO));
            Ok(expired(next.as_deref()))
        }
        SecondStepOutcome::Throttled(blocked) => {
            Ok(login::throttled(&state, &parts, "-", blocked).await)
        }
        SecondStepOutcome::WrongCode { username, reason } => {
            tracing::warn!(status = 401, reason, user = %username, "second factor refused");
            denial::record(&parts, |meta| {
                AuditEvent::new("sign_in_failed", meta)
                    .status(401)
                    .reason(reason)
                    .username(&username)
            })
            .await;
            metrics::counter!(metric::SIGN_INS, "result" => "failure", "reason" => reason)
                .increment(1);
            let message = if form.credential.is_empty() {
                "That code is not right, or was already used. Codes change every 30 seconds: try the current one."
            } else {
                "That passkey could not confirm it's you. Try again, or use another way."
            };
            let factors = pending_factors(&state, &cookies).await?.unwrap_or_default();
            Ok(login::with_challenge(page(
                &state,
                &cookies,
                StatusCode::UNAUTHORIZED,
                factors,
                next.unwrap_or_default(),
                Some(message),
            )))
        }
    }
}
