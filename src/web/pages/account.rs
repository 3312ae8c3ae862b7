//! The signed-in user's own page: session facts, the user's sessions, time zone, password
//! change.

use askama::Template;
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use tower_sessions::Session;

use crate::{
    accounts::{self, own},
    audit::{Actor, AuditEvent},
    auth::{Notice, SessionUser, sign_in},
    display::Zone,
    error::AppError,
    web::{
        AppState,
        http::{
            Chrome, CurrentUser, TextQuery, denial,
            form::SignedForm,
            fresh::{self, FreshForm},
            render::render_status_sized,
            request::{audit_meta, client_ip, record},
        },
        pages::{
            access::AccessRequestView,
            email::{self, AddressView},
            login,
            session_list::{ListOptions, SessionLine, session_lines},
        },
    },
};

#[derive(Default)]
struct PasswordErrors {
    current: Option<String>,
    new: Option<String>,
    confirm: Option<String>,
}

impl PasswordErrors {
    fn any(&self) -> bool {
        self.current.is_some() || self.new.is_some() || self.confirm.is_some()
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    chrome: Chrome,
    csrf: String,
    username: String,
    role: String,
    signed_in_at: String,
    idle_expires_at: String,
    absolute_expires_at: String,
    /// "Keep me signed in" with no idle limit (not an administrator's session).
    kept_signed_in: bool,
    previous_sign_in: Option<String>,
    previous_ip: Option<String>,
    sessions: Vec<SessionLine>,
    other_sessions: usize,
    requests: Vec<AccessRequestView>,
    /// An authenticator app is on.
    second_factor: bool,
    /// Registered passkeys.
    passkeys: i64,
    /// When a recovery code was last used (in the last 30 days), to announce it.
    recovery_used: Option<String>,
    recovery_left: i64,
    done: Option<&'static str>,
    errors: PasswordErrors,
    min_password: usize,
    /// The zone times are shown in, and whether the user chose it.
    zone_name: String,
    zone_chosen: bool,
    time_zone_js: String,
    /// The e-mail address (shown only with mail on: `chrome.mail`).
    email: Option<AddressView>,
}

#[derive(Debug, Deserialize)]
pub struct AccountQuery {
    #[serde(default)]
    done: Option<String>,
}

fn done_message(key: &str) -> Option<&'static str> {
    match key {
        "password_changed" => {
            Some("Your password was changed. Your other sessions were signed out.")
        }
        "session_revoked" => Some("That session was signed out."),
        "others_revoked" => Some("All your other sessions were signed out."),
        "time_zone_saved" => Some("Your time zone was saved."),
        _ => None,
    }
}

fn account_page(
    state: &AppState,
    user: &SessionUser,
    status: StatusCode,
    done: Option<&'static str>,
    errors: PasswordErrors,
    email: Option<AddressView>,
) -> Response {
    let zone = Zone::of(user.time_zone.as_deref());
    let sessions = session_lines(
        &user.sessions,
        &ListOptions {
            current: Some(user.session_id),
            zone: &zone,
            revoke_action: &|id| format!("/account/sessions/{id}/revoke"),
            buttons: ("Sign out", "Sign out this session"),
        },
    );
    let other_sessions = sessions.iter().filter(|s| !s.current).count();
    // One buffer, no regrowth: the benchmark's account page is 8.3 KB with four sessions,
    // and this leaves room at about 1 KB a session card and half that an access request
    // (the lists are capped at 50 and 10, so at most 61 KB).
    let capacity = 6 * 1024 + 1024 * sessions.len() + 512 * user.access_requests.len();
    render_status_sized(
        status,
        &AccountPage {
            chrome: Chrome::new(&state.site, "Your account", Some(user)),
            csrf: user.csrf_token.clone(),
            username: user.username.clone(),
            role: user.role.to_string(),
            signed_in_at: zone.time(user.created_at),
            idle_expires_at: zone.time(user.idle_expires_at),
            absolute_expires_at: zone.time(user.absolute_expires_at),
            kept_signed_in: user.remembered && user.idle_expires_at >= user.absolute_expires_at,
            previous_sign_in: user.prev_sign_in_at.map(|at| zone.time(at)),
            previous_ip: user.prev_sign_in_ip.clone(),
            sessions,
            other_sessions,
            requests: user
                .access_requests
                .iter()
                .map(|r| AccessRequestView::new(r, &zone))
                .collect(),
            // Loaded with the session (the account page's one query).
            second_factor: user.recovery.as_ref().is_some_and(|r| r.totp),
            passkeys: user.recovery.as_ref().map_or(0, |r| r.passkeys),
            recovery_used: user
                .recovery
                .as_ref()
                .and_then(|r| r.last_used_at)
                .filter(|at| time::OffsetDateTime::now_utc() - *at < time::Duration::days(30))
                .map(|at| zone.time(at)),
            recovery_left: user.recovery.as_ref().map_or(0, |r| r.codes_left),
            done,
            errors,
            min_password: state.settings.password_min_length,
            zone_name: zone.name().to_owned(),
            zone_chosen: user.time_zone.is_some(),
            time_zone_js: state.site.time_zone_js_href.clone(),
            email,
        },
        capacity,
    )
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    TextQuery(query): TextQuery<AccountQuery>,
) -> Result<Response, AppError> {
    let done = query.done.as_deref().and_then(done_message);
    let email = email::account_line(&state, user.user_id).await?;
    Ok(account_page(
        &state,
        &user,
        StatusCode::OK,
        done,
        PasswordErrors::default(),
        email,
    ))
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

/// Changes the password: the current one is required; afterwards every other session of
/// the user is revoked and this one continues under a new id.
pub async fn change_password(
    State(state): State<AppState>,
    session: Session,
    cookies: tower_cookies::Cookies,
    SignedForm { user, form, parts }: SignedForm<PasswordForm>,
) -> Result<Response, AppError> {
    let mut errors = PasswordErrors::default();
    // Guessing the current password through this form is throttled like sign-in. It is
    // checked first so that a throttled session costs nothing more: judging the new
    // password (zxcvbn) is the dearer step for crafted input.
    let device_cookie = cookies
        .get(state.settings.device_cookie_name())
        .map(|c| c.value().to_owned());
    let verified = sign_in::verify_current(
        &login::sign_in_context(&state),
        user.user_id,
        &user.username,
        &client_ip(&parts),
        device_cookie.as_deref(),
        sign_in::Proof::Password(&form.current_password),
    )
    .await?;
    match verified {
        Err(blocked) => {
            return Ok(login::throttled(&state, &parts, &user.username, blocked).await);
        }
        Ok(false) => {
            errors.current = Some("That is not your current password.".into());
            record(&parts, |meta| {
                AuditEvent::new("password_change_failed", meta)
                    .reason("bad_current_password")
                    .username(&user.username)
            })
            .await;
        }
        Ok(true) => {}
    }
    let new = match accounts::check_new_password(
        &state.hasher,
        &form.new_password,
        state.settings.password_min_length,
        Some(&user.username),
    )
    .await?
    {
        Ok(new) => Some(new),
        Err(problem) => {
            errors.new = Some(problem.to_string());
            None
        }
    };
    if form.confirm_password != form.new_password {
        errors.confirm = Some("The two new passwords differ.".into());
    }
    let Some(new) = new.filter(|_| !errors.any()) else {
        // Reload the session list for the page (the form route does not carry it).
        let user = with_sessions(&state, &user).await?;
        let email = email::account_line(&state, user.user_id).await?;
        return Ok(account_page(
            &state,
            &user,
            StatusCode::BAD_REQUEST,
            None,
            errors,
            email,
        ));
    };
    let hash = state.hasher.hash(new).await?;
    let actor = Actor::new(&user.username, audit_meta(&parts));
    own::change_password(&state.pool, &actor, user.user_id, user.session_id, &hash).await?;
    // The current session continues under a new id (the old id is deleted).
    session.cycle_id().await?;
    Ok(Redirect::to("/account?done=password_changed").into_response())
}

/// The user's live sessions, for re-rendering the account page after a POST.
async fn with_sessions(state: &AppState, user: &SessionUser) -> Result<SessionUser, AppError> {
    Ok(SessionUser {
        sessions: accounts::live_sessions(&state.pool, user.user_id).await?,
        ..user.clone()
    })
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

/// Signs out one of the user's other sessions.
pub async fn revoke_session(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
    SignedForm { user, parts, .. }: SignedForm<Empty>,
) -> Result<Response, AppError> {
    // Signing out another session is sensitive; signing out this one never is.
    if id != user.session_id && !user.recently_authenticated {
        return Ok(fresh::reauth_required(&parts, &user, &session, &state, Vec::new()).await);
    }
    if id == user.session_id {
        // "Sign out this session" on the current one is simply signing out.
        session.flush().await?;
        record(&parts, |meta| {
            AuditEvent::new("sign_out", meta).username(&user.username)
        })
        .await;
        return Ok(Redirect::to(&denial::login_url(Some(Notice::SignedOut), None)).into_response());
    }
    let actor = Actor::new(&user.username, audit_meta(&parts));
    if !own::revoke_session(&state.pool, &actor, user.user_id, id).await? {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    Ok(Redirect::to("/account?done=session_revoked").into_response())
}

/// Signs out every session of the user but this one.
pub async fn revoke_others(
    State(state): State<AppState>,
    FreshForm { user, parts, .. }: FreshForm<Empty>,
) -> Result<Response, AppError> {
    let actor = Actor::new(&user.username, audit_meta(&parts));
    own::revoke_other_sessions(&state.pool, &actor, user.user_id, user.session_id).await?;
    Ok(Redirect::to("/account?done=others_revoked").into_response())
}
