//! `/login/second-factor`: the second step of signing in, for accounts with two-step
//! verification. The first step leaves only a signed, short-lived note in a cookie
//! (`auth::sign_in::Pending`): no session, so every page is still the 401 case until a
//! valid code (or recovery code) arrives.

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
        sign_in::{self, PENDING_LIFETIME, Pending, SecondStep, SecondStepOutcome},
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
        pages::login::{self, anonymous_csrf_cookie},
    },
};

const PATH: &str = "/login/second-factor";

fn pending_cookie_name(state: &AppState) -> &'static str {
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
}

fn page(
    state: &AppState,
    cookies: &Cookies,
    status: StatusCode,
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
        },
    )
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
) -> Response {
    let next = query.next.as_deref().and_then(safe_next);
    if cookies.get(pending_cookie_name(&state)).is_none() {
        return expired(next.as_deref());
    }
    page(
        &state,
        &cookies,
        StatusCode::OK,
        next.unwrap_or_default(),
        None,
    )
}

#[derive(Debug, Deserialize)]
pub struct StepForm {
    #[serde(default)]
    code: String,
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
    let csrf_cookie = cookies
        .get(state.settings.csrf_cookie_name())
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    if !state.csrf.verify_anonymous_token(&csrf_cookie, &form.csrf) {
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
    let step = SecondStep {
        pending: &pending,
        code: &form.code,
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
        SecondStepOutcome::WrongCode { username } => {
            tracing::warn!(status = 401, reason = "bad_code", user = %username, "second factor refused");
            denial::record(&parts, |meta| {
                AuditEvent::new("sign_in_failed", meta)
                    .status(401)
                    .reason("bad_second_factor")
                    .username(&username)
            })
            .await;
            metrics::counter!(metric::SIGN_INS, "result" => "failure", "reason" => "bad_second_factor")
                .increment(1);
            Ok(login::with_challenge(page(
                &state,
                &cookies,
                StatusCode::UNAUTHORIZED,
                next.unwrap_or_default(),
                Some(
                    "That code is not right, or was already used. Codes change every 30 seconds: try the current one.",
                ),
            )))
        }
    }
}
