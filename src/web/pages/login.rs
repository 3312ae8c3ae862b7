//! Sign-in and sign-out.

use askama::Template;
use axum::{
    extract::State,
    http::{HeaderName, StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use tower_cookies::{Cookie, Cookies, cookie::SameSite};
use tower_sessions::Session;

use crate::{
    audit::AuditEvent,
    auth::{
        Authentication, Notice,
        csrf::new_cookie_value,
        device,
        next::{DEFAULT_NEXT, safe_next},
        sign_in::{self, Attempt, Outcome},
    },
    config::Settings,
    display::plain_duration,
    error::AppError,
    telemetry::metric,
    web::{
        AppState,
        http::{
            Chrome, TextForm, TextQuery,
            denial::{self, Denial},
            frame::{client_of, kind_of},
            input::FormRejection,
            negotiate::RequestKind,
            render_status,
            request::{client_ip, request_id, user_agent},
        },
        pages::{passkey_sign_in::PasskeyUi, password_link, second_step},
    },
};

/// The one message for every failed sign-in: unknown user, wrong password and disabled
/// account must be indistinguishable.
pub const INVALID_CREDENTIALS: &str = "Invalid username or password.";

/// A sign-in form the input rules refused (see `http::input`): nothing was tried.
pub const REFUSED_INPUT: &str = "That form held something no username or password contains \
     (a control character, or far too many characters). Type them again.";

mod password_set;
mod throttled;
pub use throttled::throttled;
#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    notice: Option<&'static str>,
    /// What to do about the notice, in plain words.
    notice_help: Option<String>,
    /// Whether the notice ends with "contact your administrator".
    notice_contact: bool,
    /// [`FORGET_PAGES`], linked whenever a notice says a session ended (or is needed).
    forget_pages: Option<&'static str>,
    error: Option<&'static str>,
    username: String,
    next: String,
    csrf: String,
    /// "Sign in with a passkey" (shown by `static/passkeys.js`).
    passkeys: PasskeyUi,
    /// Why a passkey sign-in failed (the password form's message is `error`).
    passkey_error: Option<&'static str>,
    /// "Keep me signed in for N days" (`--remember-days`; hidden when off), and whether
    /// it stays ticked when the form comes back.
    remember_days: Option<i64>,
    remember: bool,
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    notice: Option<String>,
}

/// The anonymous CSRF cookie's value, set now if the browser has none.
pub fn anonymous_csrf_cookie(state: &AppState, cookies: &Cookies) -> String {
    let name = state.settings.csrf_cookie_name();
    if let Some(existing) = cookies.get(name) {
        let value = existing.value();
        if value.len() == 43
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return value.to_owned();
        }
    }
    let value = new_cookie_value();
    let cookie = Cookie::build((name, value.clone()))
        .http_only(true)
        .secure(state.settings.secure_cookies)
        .same_site(SameSite::Lax)
        .path("/")
        .build();
    cookies.add(cookie);
    value
}

/// Whether a form of a page for people not signed in carries the token that goes with
/// this browser's anonymous CSRF cookie (double submit, signed).
pub fn anonymous_csrf_ok(state: &AppState, cookies: &Cookies, token: &str) -> bool {
    let cookie = cookies
        .get(state.settings.csrf_cookie_name())
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    state.csrf.verify_anonymous_token(&cookie, token)
}

/// What the person typed, shown again when the form comes back (never the password).
#[derive(Debug, Default)]
pub struct Typed {
    pub username: String,
    pub remember: bool,
}

pub fn login_page(
    state: &AppState,
    cookies: &Cookies,
    status: StatusCode,
    notice: Option<Notice>,
    error: Option<&'static str>,
    typed: Typed,
    next: Option<String>,
) -> Response {
    let cookie = anonymous_csrf_cookie(state, cookies);
    render_status(
        status,
        &LoginPage {
            chrome: Chrome::new(&state.site, "Sign in", None),
            notice: notice.map(Notice::message),
            notice_help: notice.map(|notice| notice_help(notice, &state.settings)),
            notice_contact: notice == Some(Notice::Revoked),
            forget_pages: notice.map(|_| FORGET_PAGES),
            error,
            username: typed.username,
            next: next.unwrap_or_default(),
            csrf: state.csrf.anonymous_token(&cookie),
            passkeys: PasskeyUi::new(state),
            passkey_error: None,
            remember_days: remember_days(state),
            remember: typed.remember,
        },
    )
}

/// The sign-in page after a passkey sign-in failed (`401`), saying so.
pub fn passkey_refused(
    state: &AppState,
    cookies: &Cookies,
    message: &'static str,
    next: Option<String>,
) -> Response {
    let cookie = anonymous_csrf_cookie(state, cookies);
    render_status(
        StatusCode::UNAUTHORIZED,
        &LoginPage {
            chrome: Chrome::new(&state.site, "Sign in", None),
            notice: None,
            notice_help: None,
            notice_contact: false,
            forget_pages: None,
            error: None,
            username: String::new(),
            next: next.unwrap_or_default(),
            csrf: state.csrf.anonymous_token(&cookie),
            passkeys: PasskeyUi::new(state),
            passkey_error: Some(message),
            remember_days: remember_days(state),
            remember: false,
        },
    )
}

/// An address the sign-in page loads in a hidden frame when it shows a notice; the answer
/// (`204`, nothing to show) carries `Clear-Site-Data: "cache"`, which drops the site's
/// pages from the browser's back/forward cache.
///
/// Why: Chromium now keeps `no-store` pages in its back/forward cache, and after signing
/// out the back button showed the account page again from memory (browser suite, journeys
/// 3 and 4). The page being left enters that cache when the browser process learns that
/// the next page committed; anything earlier (the sign-out response's cookie change, a
/// `Clear-Site-Data` on it or on the sign-in page itself) is too early. A stylesheet link
/// made *by* the next page was too early now and then as well: the renderer fetches
/// subresources straight from the network service, racing its own commit message (about
/// one run in forty of the browser suite). A frame's navigation is started by the browser
/// process itself, on a message the renderer sends after its commit message and over the
/// same ordered channel, so the clearing comes after the page is stored. No script needed.
pub const FORGET_PAGES: &str = "/login/forget-pages";

pub async fn forget_pages() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::CACHE_CONTROL, "no-store"),
            (HeaderName::from_static("clear-site-data"), "\"cache\""),
        ],
    )
        .into_response()
}

/// The second half of each notice: why it happens and what to do (the notice itself,
/// `Notice::message`, says what happened and is shared with the JSON API).
fn notice_help(notice: Notice, settings: &Settings) -> String {
    match notice {
        Notice::SignInRequired => {
            "This page is only for signed-in users. Sign in and you will be taken straight \
             to it."
                .to_owned()
        }
        Notice::Expired => format!(
            "For your security, a session ends after {} without activity, and {} after \
             signing in at the latest. Sign in again to carry on where you left off.",
            plain_duration(settings.idle_timeout),
            plain_duration(settings.absolute_timeout),
        ),
        Notice::FormExpired => format!(
            "Nothing was changed. A session ends after {} without activity; sign in and you \
             will be back on the form.",
            plain_duration(settings.idle_timeout),
        ),
        Notice::Revoked => "Sessions are ended when you sign out everywhere, when your \
                            password is changed, or by an administrator."
            .to_owned(),
        Notice::SignedOut => {
            "On a shared computer, close the browser window too. To continue, sign in again."
                .to_owned()
        }
        Notice::SetupDone => "The setup link no longer works. Add more users from the \
                              administration page once you are signed in."
            .to_owned(),
        Notice::SecondStepExpired => format!(
            "The code from your authenticator app must follow the password within {}.",
            plain_duration(sign_in::PENDING_LIFETIME)
        ),
        Notice::SessionLimit => format!(
            "This site keeps at most {} sessions per person; the oldest is signed out when \
             you sign in again elsewhere. If that sign-in was not you, change your password.",
            settings.max_sessions.unwrap_or(1)
        ),
    }
}

pub async fn form(
    State(state): State<AppState>,
    cookies: Cookies,
    TextQuery(query): TextQuery<LoginQuery>,
) -> Response {
    let next = query.next.as_deref().and_then(safe_next);
    if query.notice.as_deref() == Some(password_link::NOTICE) {
        return password_set::page(&state, &cookies, next);
    }
    let notice = query.notice.as_deref().and_then(Notice::from_key);
    login_page(
        &state,
        &cookies,
        StatusCode::OK,
        notice,
        None,
        Typed::default(),
        next,
    )
}

fn remember_days(state: &AppState) -> Option<i64> {
    state.settings.remember.map(|days| days.whole_days())
}

/// An HTML checkbox: sent as `on` when ticked, absent otherwise.
pub fn ticked(value: &str) -> bool {
    value == "on"
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    remember: String,
}

pub async fn submit(
    State(state): State<AppState>,
    cookies: Cookies,
    session: Session,
    parts: Parts,
    input: Result<TextForm<LoginForm>, FormRejection>,
) -> Result<Response, AppError> {
    let form = match input {
        Ok(TextForm(form)) => form,
        // Characters no name or password holds: the form again, empty (nothing refused is
        // echoed), rather than an error page.
        Err(FormRejection::Refused(refusal)) if refusal.input().problem.breaks_text_rules() => {
            return Ok(login_page(
                &state,
                &cookies,
                StatusCode::BAD_REQUEST,
                None,
                Some(REFUSED_INPUT),
                Typed::default(),
                None,
            ));
        }
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let next = safe_next(&form.next);
    let cookie = cookies
        .get(state.settings.csrf_cookie_name())
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    if !state.csrf.verify_anonymous_token(&cookie, &form.csrf) {
        // The form came from our page (it has a token) but the cookie set with it did not
        // come back: cookies are blocked, or secure cookies meet plain HTTP. Say so,
        // rather than showing the form again and again.
        if cookie.is_empty() && !form.csrf.is_empty() {
            return Ok(cookies_not_returned(&state, &parts, false));
        }
        let retry = denial::login_url(None, next.as_deref());
        return Ok(denial::csrf_failed(&parts, None, &retry).await);
    }
    let typed_username: String = form
        .username
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if form.username.trim().is_empty() || form.password.is_empty() {
        return Ok(login_page(
            &state,
            &cookies,
            StatusCode::BAD_REQUEST,
            None,
            Some("Enter both your username and your password."),
            Typed {
                username: typed_username,
                remember: ticked(&form.remember),
            },
            next,
        ));
    }
    let device_cookie = cookies
        .get(state.settings.device_cookie_name())
        .map(|c| c.value().to_owned());
    let attempt = Attempt {
        username: &form.username,
        password: &form.password,
        ip: &client_ip(&parts),
        user_agent: user_agent(&parts.headers),
        device_cookie: device_cookie.as_deref(),
        remember: ticked(&form.remember),
    };
    let outcome = sign_in::sign_in(&sign_in_context(&state), &session, attempt).await?;
    match outcome {
        Outcome::SignedIn {
            username,
            device_cookie,
            ..
        } => Ok(signed_in(
            &state,
            &cookies,
            &parts,
            &username,
            "password",
            device_cookie,
            next.as_deref(),
        )
        .await),
        Outcome::SecondFactorNeeded { username, pending } => {
            tracing::info!(user = %username, "password accepted; second factor awaited");
            Ok(second_step::begin(
                &state,
                &cookies,
                pending,
                next.as_deref(),
            ))
        }
        Outcome::Throttled(blocked) => {
            Ok(throttled(&state, &parts, &typed_username, blocked).await)
        }
        Outcome::Failed(failure) => {
            let reason = failure.as_str();
            tracing::warn!(status = 401, reason, username = %typed_username, "sign-in failed");
            denial::record(&parts, |meta| {
                AuditEvent::new("sign_in_failed", meta)
                    .status(401)
                    .reason(reason)
                    .username(&typed_username)
            })
            .await;
            metrics::counter!(metric::SIGN_INS, "result" => "failure", "reason" => reason)
                .increment(1);
            Ok(with_challenge(login_page(
                &state,
                &cookies,
                StatusCode::UNAUTHORIZED,
                None,
                Some(INVALID_CREDENTIALS),
                Typed {
                    username: typed_username,
                    remember: ticked(&form.remember),
                },
                next,
            )))
        }
    }
}

/// What signing in needs from the application state.
pub fn sign_in_context(state: &AppState) -> sign_in::Context<'_> {
    sign_in::Context {
        pool: &state.sign_in_pool,
        hasher: &state.hasher,
        key: &state.csrf,
        settings: &state.settings,
        passkeys: &state.passkeys,
    }
}

/// The end of every successful sign-in: the device cookie, the record, the count, and on
/// through `/login/complete`, which checks that the new session cookie comes back.
pub async fn signed_in(
    state: &AppState,
    cookies: &Cookies,
    parts: &Parts,
    username: &str,
    method: &'static str,
    device_cookie: String,
    next: Option<&str>,
) -> Response {
    set_device_cookie(state, cookies, device_cookie);
    tracing::info!(user = %username, method, "signed in");
    denial::record(parts, |meta| {
        AuditEvent::new("sign_in", meta)
            .username(username)
            .reason(method)
    })
    .await;
    metrics::counter!(metric::SIGN_INS, "result" => "success", "reason" => "").increment(1);
    Redirect::to(&complete_url(next)).into_response()
}

/// Marks this browser as a known device for the account just signed in to (see
/// `auth::device`): its later attempts are throttled on their own.
fn set_device_cookie(state: &AppState, cookies: &Cookies, value: String) {
    let lifetime = tower_cookies::cookie::time::Duration::seconds(device::LIFETIME.whole_seconds());
    let cookie = Cookie::build((state.settings.device_cookie_name(), value))
        .http_only(true)
        .secure(state.settings.secure_cookies)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(lifetime)
        .build();
    cookies.add(cookie);
}

fn complete_url(next: Option<&str>) -> String {
    let next = next.unwrap_or(DEFAULT_NEXT);
    match serde_urlencoded::to_string([("next", next)]) {
        Ok(query) => format!("/login/complete?{query}"),
        Err(_) => "/login/complete".into(),
    }
}

#[derive(Debug, Deserialize)]
pub struct CompleteQuery {
    #[serde(default)]
    next: Option<String>,
}

/// The landing step after a successful sign-in: the session cookie set by the sign-in
/// must arrive here. If it does, on to `next`; if it does not, the browser (or a proxy)
/// drops it, and signing in again would only loop: explain instead.
pub async fn complete(
    State(state): State<AppState>,
    parts: Parts,
    TextQuery(query): TextQuery<CompleteQuery>,
) -> Response {
    if let Some(Authentication::SignedIn(_)) = parts.extensions.get::<Authentication>() {
        let next = query.next.as_deref().and_then(safe_next);
        return Redirect::to(next.as_deref().unwrap_or(DEFAULT_NEXT)).into_response();
    }
    cookies_not_returned(&state, &parts, true)
}

#[derive(Template)]
#[template(path = "cookies.html")]
struct CookiesPage {
    chrome: Chrome,
    insecure_transport: bool,
    after_sign_in: bool,
    request_id: String,
}

/// Why the sign-in loops, for the person and the operator: cookies blocked, or the site
/// set `Secure` cookies while being reached over plain HTTP.
fn cookies_not_returned(state: &AppState, parts: &Parts, after_sign_in: bool) -> Response {
    let https = client_of(&parts.extensions).is_some_and(|client| client.https);
    let insecure_transport = state.settings.secure_cookies && !https;
    let reason = match (insecure_transport, after_sign_in) {
        (true, _) => "secure_cookie_over_http",
        (false, true) => "session_cookie_not_returned",
        (false, false) => "cookies_blocked",
    };
    let status = if after_sign_in {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    denial::deny(
        parts,
        Denial::new(
            status,
            reason,
            "sign-in cannot work: the cookie did not come back",
        ),
    );
    render_status(
        status,
        &CookiesPage {
            chrome: Chrome::new(&state.site, "Cookies are not coming back", None),
            insecure_transport,
            after_sign_in,
            request_id: request_id(&parts.extensions).to_owned(),
        },
    )
}

pub fn with_challenge(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static(denial::WWW_AUTHENTICATE),
    );
    response
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// Signs out: deletes the session row (a copy of the cookie is dead from now on) and
/// clears the cookie. A stale form whose session already ended simply lands on sign-in.
pub async fn logout(
    State(state): State<AppState>,
    session: Session,
    parts: Parts,
    TextForm(form): TextForm<LogoutForm>,
) -> Result<Response, AppError> {
    if let Some(Authentication::SignedIn(user)) = parts.extensions.get::<Authentication>() {
        if !state.csrf.verify_session_token(user.token, &form.csrf) {
            return Ok(denial::csrf_failed(&parts, Some(user), "/").await);
        }
        tracing::info!(user = %user.username, "signed out");
        denial::record(&parts, |meta| {
            AuditEvent::new("sign_out", meta).username(&user.username)
        })
        .await;
    }
    session.flush().await?;
    Ok(match kind_of(&parts) {
        RequestKind::Browser => {
            Redirect::to(&denial::login_url(Some(Notice::SignedOut), None)).into_response()
        }
        // Programs are told it worked, not sent to a login page.
        RequestKind::Api => StatusCode::NO_CONTENT.into_response(),
    })
}
