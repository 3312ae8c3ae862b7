//! Passkey ceremonies in the browser: the options endpoints (the input of
//! `navigator.credentials.get`, as JSON; the state in a signed, single-use cookie, see
//! `auth::passkey::ceremony`) and signing in with a passkey alone. The authenticator's
//! answer comes back in an ordinary form (its `credential` field, filled in by
//! `static/passkeys.js`), so every outcome is a page or a redirect, as for a password.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;
use tower_cookies::{Cookie, Cookies, cookie::SameSite};
use tower_sessions::Session;

use crate::{
    audit::AuditEvent,
    auth::{
        next::safe_next,
        passkey::{
            CEREMONY_LIFETIME,
            ceremony::{Challenge, Purpose, Refusal},
            sign_in::{self as passkey_sign_in, METHOD, PasskeyAttempt, PasskeyOutcome},
        },
        sign_in,
    },
    error::AppError,
    telemetry::metric,
    web::{
        AppState,
        http::{
            Rendered, TextForm,
            denial::{self, login_url},
            form::SignedForm,
            request::{client_ip, user_agent},
        },
        pages::login,
    },
};

/// What a page with a passkey button needs: the script (its address carries a content
/// hash) and the origin passkeys work at (the script says so on a page opened elsewhere,
/// e.g. at `127.0.0.1` instead of `localhost`, rather than failing silently).
pub struct PasskeyUi {
    pub script: String,
    pub origin: String,
}

impl PasskeyUi {
    pub fn new(state: &AppState) -> PasskeyUi {
        PasskeyUi {
            script: state.site.passkeys_js_href.clone(),
            origin: state
                .passkeys
                .relying_party
                .origin
                .origin()
                .ascii_serialization(),
        }
    }
}

fn ceremony_cookie(state: &AppState, value: String, max_age: time::Duration) -> Cookie<'static> {
    Cookie::build((state.settings.passkey_cookie_name(), value))
        .http_only(true)
        .secure(state.settings.secure_cookies)
        // Only our own pages send the answer back (a same-origin form).
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(tower_cookies::cookie::time::Duration::seconds(
            max_age.whole_seconds(),
        ))
        .build()
}

/// The ceremony cookie the browser sent, removed from it (an answer is checked once).
pub fn take_ceremony(state: &AppState, cookies: &Cookies) -> String {
    let value = cookies
        .get(state.settings.passkey_cookie_name())
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    if !value.is_empty() {
        cookies.remove(ceremony_cookie(state, String::new(), time::Duration::ZERO));
    }
    value
}

/// A JSON refusal for the script, shown to the person as `message`.
pub fn json_error(status: StatusCode, reason: &str, message: &str) -> Response {
    let mut response =
        (status, Json(json!({ "error": reason, "message": message }))).into_response();
    response.extensions_mut().insert(Rendered);
    response
}

/// The options for the browser, the state in the ceremony cookie.
fn challenge_response(state: &AppState, cookies: &Cookies, challenge: Challenge) -> Response {
    cookies.add(ceremony_cookie(state, challenge.cookie, CEREMONY_LIFETIME));
    Json(challenge.options).into_response()
}

fn no_passkey() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "no_passkey",
        "This account has no passkey. Use another way to confirm it's you.",
    )
}

fn stale_page() -> Response {
    json_error(
        StatusCode::FORBIDDEN,
        "csrf_failed",
        "This page is out of date. Reload it and try again.",
    )
}

#[derive(Debug, Deserialize)]
pub struct OptionsForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /login/passkey/options`: a challenge any passkey of this site can answer. No
/// session and no row: the state travels in the ceremony cookie.
pub async fn sign_in_options(
    State(state): State<AppState>,
    cookies: Cookies,
    TextForm(form): TextForm<OptionsForm>,
) -> Result<Response, AppError> {
    if !login::anonymous_csrf_ok(&state, &cookies, &form.csrf) {
        return Ok(stale_page());
    }
    let challenge = state
        .passkeys
        .challenge(&state.pool, &state.csrf, Purpose::SignIn, None)
        .await?;
    Ok(challenge.map_or_else(no_passkey, |c| challenge_response(&state, &cookies, c)))
}

/// `POST /login/second-factor/passkey/options`: after a right password, a challenge for
/// that account's passkeys.
pub async fn second_step_options(
    State(state): State<AppState>,
    cookies: Cookies,
    TextForm(form): TextForm<OptionsForm>,
) -> Result<Response, AppError> {
    if !login::anonymous_csrf_ok(&state, &cookies, &form.csrf) {
        return Ok(stale_page());
    }
    let user = cookies
        .get(super::second_step::pending_cookie_name(&state))
        .and_then(|c| sign_in::pending_user(&state.csrf, c.value()));
    let Some(user) = user else {
        return Ok(json_error(
            StatusCode::UNAUTHORIZED,
            "second_step_expired",
            "Your sign-in was not completed in time. Sign in again with your password.",
        ));
    };
    let challenge = state
        .passkeys
        .challenge(&state.pool, &state.csrf, Purpose::SecondStep, Some(user))
        .await?;
    Ok(challenge.map_or_else(no_passkey, |c| challenge_response(&state, &cookies, c)))
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

/// `POST /reauth/passkey/options`: a challenge for the signed-in user's passkeys.
pub async fn reauth_options(
    State(state): State<AppState>,
    cookies: Cookies,
    SignedForm { user, .. }: SignedForm<Empty>,
) -> Result<Response, AppError> {
    let challenge = state
        .passkeys
        .challenge(
            &state.pool,
            &state.csrf,
            Purpose::Reauth,
            Some(user.user_id),
        )
        .await?;
    Ok(challenge.map_or_else(no_passkey, |c| challenge_response(&state, &cookies, c)))
}

/// What the person is told when a passkey did not work (the reason stays in the log).
pub fn refusal_message(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::Expired | Refusal::Replayed => {
            "The passkey request expired or was already used. Try again."
        }
        _ => "That passkey could not confirm it's you. Try again, or use another way.",
    }
}

#[derive(Debug, Deserialize)]
pub struct PasskeySignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    credential: String,
    #[serde(default)]
    remember: String,
}

/// `POST /login/passkey`: signs in with a passkey alone.
pub async fn sign_in(
    State(state): State<AppState>,
    cookies: Cookies,
    session: Session,
    parts: Parts,
    TextForm(form): TextForm<PasskeySignInForm>,
) -> Result<Response, AppError> {
    let next = safe_next(&form.next);
    if !login::anonymous_csrf_ok(&state, &cookies, &form.csrf) {
        let retry = login_url(None, next.as_deref());
        return Ok(denial::csrf_failed(&parts, None, &retry).await);
    }
    let ceremony = take_ceremony(&state, &cookies);
    let device_cookie = cookies
        .get(state.settings.device_cookie_name())
        .map(|c| c.value().to_owned());
    let attempt = PasskeyAttempt {
        ceremony: &ceremony,
        credential: &form.credential,
        ip: &client_ip(&parts),
        user_agent: user_agent(&parts.headers),
        device_cookie: device_cookie.as_deref(),
        remember: login::ticked(&form.remember),
    };
    let cx = login::sign_in_context(&state);
    match passkey_sign_in::sign_in(&cx, &session, attempt).await? {
        PasskeyOutcome::SignedIn {
            username,
            device_cookie,
        } => Ok(login::signed_in(
            &state,
            &cookies,
            &parts,
            &username,
            METHOD,
            device_cookie,
            next.as_deref(),
        )
        .await),
        PasskeyOutcome::Throttled(blocked) => {
            Ok(login::throttled(&state, &parts, "-", blocked).await)
        }
        PasskeyOutcome::Failed { refusal, username } => {
            let reason = refusal.as_str();
            let who = username.as_deref().unwrap_or("-");
            tracing::warn!(status = 401, reason, user = who, "passkey sign-in failed");
            denial::record(&parts, |meta| {
                AuditEvent::new("sign_in_failed", meta)
                    .status(401)
                    .reason(reason)
                    .username(who)
                    .detail(json!({ "method": METHOD }))
            })
            .await;
            metrics::counter!(metric::SIGN_INS, "result" => "failure", "reason" => reason)
                .increment(1);
            Ok(login::with_challenge(login::passkey_refused(
                &state,
                &cookies,
                refusal_message(refusal),
                next,
            )))
        }
    }
}
