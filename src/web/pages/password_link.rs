//! "Choose your password": the page behind a one-time link (`accounts::links`), for an
//! invitation or a reset.
//!
//! The token leaves the address bar at once: the first `GET /password/new?token=…` puts it
//! in a short-lived, signed, HttpOnly cookie and redirects to `/password/new`, so it is not
//! kept in the history, shown over a shoulder, or sent onwards (the page also says
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-store`). Choosing a password does
//! not sign the person in: they sign in with it, and a second factor, when they have one or
//! policy requires one, follows as for any sign-in (a reset link must never skip it).
//!
//! A link that does not work gets one page saying what happened and what to do (ask an
//! administrator for a new link): 410 Gone for a used, replaced or expired link (it existed
//! and never will again), 404 for a token that never existed.

use askama::Template;
use axum::{
    extract::State,
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use time::OffsetDateTime;
use tower_cookies::{
    Cookie, Cookies,
    cookie::{SameSite, time::Duration as CookieDuration},
};

use crate::{
    accounts::{
        self,
        links::{self, LinkState, PATH, Purpose},
    },
    display::display_time,
    error::AppError,
    web::{
        AppState,
        http::{Chrome, TextForm, TextQuery, denial, render_status, request::audit_meta},
        pages::login,
    },
};

/// The sign-in page's notice after a password was chosen (`login::form` shows it).
pub const NOTICE: &str = "password_set";

/// How long the cookie carrying the token lasts: long enough to choose a password, short
/// enough that a shared computer does not keep it (the link itself still works until it
/// expires, so opening it again starts over).
const COOKIE_LIFETIME: time::Duration = time::Duration::minutes(30);

fn cookie_name(state: &AppState) -> &'static str {
    if state.settings.secure_cookies {
        "__Host-portcullis_link"
    } else {
        "portcullis_link"
    }
}

/// `token.expires.tag`: the tag (HMAC under the server key) binds the token to the cookie's
/// own deadline, so neither can be altered.
fn cookie_value(state: &AppState, token: &str, expires: i64) -> String {
    let value = format!("{token}.{expires}");
    let tag = state.csrf.link_tag(&value);
    format!("{value}.{tag}")
}

/// The token in the request's cookie, if the cookie is ours and still fresh.
fn token_from_cookie(state: &AppState, cookies: &Cookies) -> Option<String> {
    let cookie = cookies.get(cookie_name(state))?;
    let (value, tag) = cookie.value().rsplit_once('.')?;
    let (token, expires) = value.split_once('.')?;
    let expires: i64 = expires.parse().ok()?;
    if !state.csrf.verify_link_tag(value, tag)
        || expires <= OffsetDateTime::now_utc().unix_timestamp()
    {
        return None;
    }
    Some(token.to_owned())
}

fn set_cookie(state: &AppState, cookies: &Cookies, token: &str) {
    let expires = (OffsetDateTime::now_utc() + COOKIE_LIFETIME).unix_timestamp();
    let cookie = Cookie::build((cookie_name(state), cookie_value(state, token, expires)))
        .http_only(true)
        .secure(state.settings.secure_cookies)
        // Lax, not Strict: the link is opened from another site (mail, chat), and the
        // redirect that follows must carry the cookie.
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(CookieDuration::seconds(COOKIE_LIFETIME.whole_seconds()))
        .build();
    cookies.add(cookie);
}

fn remove_cookie(state: &AppState, cookies: &Cookies) {
    let mut cookie = Cookie::from(cookie_name(state));
    cookie.set_path("/");
    cookies.remove(cookie);
}

/// No referrer and no caching for every answer that had a token near it.
fn private(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Template)]
#[template(path = "password_gone.html")]
struct GonePage {
    chrome: Chrome,
    heading: &'static str,
    explanation: &'static str,
}

/// The page for a link that does not work, saying why and what to do.
fn gone(state: &AppState, link: &LinkState) -> Response {
    let (status, heading, explanation) = match link {
        LinkState::Used => (
            StatusCode::GONE,
            "This link has already been used",
            "Each link works once. If you chose a password with it, sign in with that \
             password. If you did not, or you need another one, ask an administrator for a \
             new link.",
        ),
        LinkState::Voided => (
            StatusCode::GONE,
            "This link was replaced by a newer one",
            "Only the newest link sent to you works. Use that one, or ask an administrator \
             for a new link.",
        ),
        LinkState::Expired => (
            StatusCode::GONE,
            "This link has expired",
            "Links work for a limited time. Ask an administrator for a new link.",
        ),
        LinkState::Unknown | LinkState::Live { .. } => (
            StatusCode::NOT_FOUND,
            "This link does not work",
            "It may have been cut short when it was copied: check that you opened all of it. \
             Otherwise, ask an administrator for a new link.",
        ),
    };
    private(render_status(
        status,
        &GonePage {
            chrome: Chrome::new(&state.site, heading, None),
            heading,
            explanation,
        },
    ))
}

#[derive(Default)]
struct ChooseErrors {
    password: Option<String>,
    confirm: Option<String>,
}

impl ChooseErrors {
    fn any(&self) -> bool {
        self.password.is_some() || self.confirm.is_some()
    }
}

#[derive(Template)]
#[template(path = "password_new.html")]
struct ChoosePage {
    chrome: Chrome,
    csrf: String,
    username: String,
    invited: bool,
    expires: String,
    min_password: usize,
    errors: ChooseErrors,
}

fn choose_page(
    state: &AppState,
    cookies: &Cookies,
    status: StatusCode,
    link: (String, Purpose, OffsetDateTime),
    errors: ChooseErrors,
) -> Response {
    let (username, purpose, expires_at) = link;
    let cookie = login::anonymous_csrf_cookie(state, cookies);
    private(render_status(
        status,
        &ChoosePage {
            chrome: Chrome::new(&state.site, "Choose your password", None),
            csrf: state.csrf.anonymous_token(&cookie),
            username,
            invited: purpose == Purpose::Invite,
            expires: display_time(expires_at),
            min_password: state.settings.password_min_length,
            errors,
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    #[serde(default)]
    token: Option<String>,
}

pub async fn form(
    State(state): State<AppState>,
    cookies: Cookies,
    TextQuery(query): TextQuery<LinkQuery>,
) -> Result<Response, AppError> {
    if let Some(token) = query.token {
        // Opened from the link: keep the token in the cookie and take it out of the URL.
        let link = links::check(&state.pool, &token).await?;
        if !matches!(link, LinkState::Live { .. }) {
            remove_cookie(&state, &cookies);
            return Ok(gone(&state, &link));
        }
        set_cookie(&state, &cookies, &token);
        return Ok(private(Redirect::to(PATH).into_response()));
    }
    let Some(token) = token_from_cookie(&state, &cookies) else {
        return Ok(gone(&state, &LinkState::Unknown));
    };
    match links::check(&state.pool, &token).await? {
        LinkState::Live {
            username,
            purpose,
            expires_at,
        } => Ok(choose_page(
            &state,
            &cookies,
            StatusCode::OK,
            (username, purpose, expires_at),
            ChooseErrors::default(),
        )),
        link => {
            remove_cookie(&state, &cookies);
            Ok(gone(&state, &link))
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ChooseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm_password: String,
}

pub async fn submit(
    State(state): State<AppState>,
    cookies: Cookies,
    parts: Parts,
    TextForm(form): TextForm<ChooseForm>,
) -> Result<Response, AppError> {
    if !super::login::anonymous_csrf_ok(&state, &cookies, &form.csrf) {
        return Ok(denial::csrf_failed(&parts, None, PATH).await);
    }
    let Some(token) = token_from_cookie(&state, &cookies) else {
        return Ok(gone(&state, &LinkState::Unknown));
    };
    let (username, purpose, expires_at) = match links::check(&state.pool, &token).await? {
        LinkState::Live {
            username,
            purpose,
            expires_at,
        } => (username, purpose, expires_at),
        link => {
            remove_cookie(&state, &cookies);
            return Ok(gone(&state, &link));
        }
    };
    // The policy first: a refused password leaves the link as it was.
    let mut errors = ChooseErrors::default();
    let checked = accounts::check_new_password(
        &state.hasher,
        &form.password,
        state.settings.password_min_length,
        Some(&username),
    )
    .await?;
    if let Err(problem) = &checked {
        errors.password = Some(problem.to_string());
    }
    if form.confirm_password != form.password {
        errors.confirm = Some("The two passwords differ.".into());
    }
    let (Ok(password), false) = (checked, errors.any()) else {
        let link = (username, purpose, expires_at);
        return Ok(choose_page(
            &state,
            &cookies,
            StatusCode::BAD_REQUEST,
            link,
            errors,
        ));
    };
    let hash = state.hasher.hash(password).await?;
    match links::consume(&state.pool, &token, &hash, audit_meta(&parts)).await? {
        Ok(consumed) => {
            remove_cookie(&state, &cookies);
            tracing::info!(
                user = %consumed.username,
                purpose = consumed.purpose.as_str(),
                sessions_revoked = consumed.sessions_revoked,
                "password chosen with a one-time link"
            );
            let to = format!("/login?notice={NOTICE}");
            Ok(private(Redirect::to(&to).into_response()))
        }
        // Spent meanwhile (another tab, a double click), replaced or expired.
        Err(link) => {
            remove_cookie(&state, &cookies);
            Ok(gone(&state, &link))
        }
    }
}
