//! `/account/passkeys`: the signed-in user's passkeys (name, added, last used), adding one
//! (the options need a recent authentication, `FreshForm`; the browser's answer comes back
//! in an ordinary form) and removing one (`FreshForm`: re-authentication first).

use askama::Template;
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use tower_sessions::Session;

use crate::{
    accounts::own,
    audit::{Actor, AuditEvent},
    auth::{
        Role, SessionUser,
        passkey::{self, PasskeySummary, RegistrationRefused},
        second_factor,
    },
    display::{display_time, plain_duration},
    error::AppError,
    web::{
        AppState,
        http::{
            Chrome, CurrentUser, TextQuery,
            form::SignedForm,
            fresh::FreshForm,
            render_status,
            request::{audit_meta, record},
        },
        pages::passkey_sign_in::PasskeyUi,
    },
};

const PATH: &str = "/account/passkeys";

pub struct PasskeyLine {
    pub id: i64,
    pub name: String,
    pub added: String,
    pub last_used: String,
}

#[derive(Template)]
#[template(path = "passkeys.html")]
struct PasskeysPage {
    chrome: Chrome,
    csrf: String,
    passkeys: PasskeyUi,
    list: Vec<PasskeyLine>,
    /// Adding asks for a recent sign-in: the page says so when it is not.
    recent: bool,
    window: String,
    done: Option<&'static str>,
    problem: Option<&'static str>,
}

fn lines(list: Vec<PasskeySummary>) -> Vec<PasskeyLine> {
    list.into_iter()
        .map(|p| PasskeyLine {
            id: p.id,
            name: p.name,
            added: display_time(p.created_at),
            last_used: p.last_used_at.map_or_else(|| "never".into(), display_time),
        })
        .collect()
}

async fn page(
    state: &AppState,
    user: &SessionUser,
    status: StatusCode,
    done: Option<&'static str>,
    problem: Option<&'static str>,
) -> Result<Response, AppError> {
    let list = passkey::list(&state.pool, user.user_id).await?;
    Ok(render_status(
        status,
        &PasskeysPage {
            chrome: Chrome::new(&state.site, "Passkeys", Some(user)),
            csrf: user.csrf_token.clone(),
            passkeys: PasskeyUi::new(state),
            list: lines(list),
            recent: user.recently_authenticated,
            window: plain_duration(state.settings.reauth_window),
            done,
            problem,
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    done: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    TextQuery(query): TextQuery<PageQuery>,
) -> Result<Response, AppError> {
    let done = match query.done.as_deref() {
        Some("added") => Some("Passkey added. You can sign in with it now."),
        Some("removed") => Some("Passkey removed."),
        _ => None,
    };
    page(&state, &user, StatusCode::OK, done, None).await
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

/// `POST /account/passkeys/options`: starts adding a passkey. Needs a recent
/// authentication: a session stolen an hour ago must not add its holder's passkey (a
/// program, the script, gets RFC 9470's 401 with `reauth_url`, and goes there).
pub async fn options(
    State(state): State<AppState>,
    session: Session,
    FreshForm { user, .. }: FreshForm<Empty>,
) -> Result<Response, AppError> {
    let options = state
        .passkeys
        .start_registration(&state.pool, &session, user.user_id, &user.username)
        .await?;
    Ok(Json(options).into_response())
}

#[derive(Debug, Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    credential: String,
}

/// `POST /account/passkeys`: the browser's answer; stores the passkey.
pub async fn register(
    State(state): State<AppState>,
    session: Session,
    SignedForm { user, form, parts }: SignedForm<RegisterForm>,
) -> Result<Response, AppError> {
    let actor = Actor::new(&user.username, audit_meta(&parts));
    let stored = state
        .passkeys
        .finish_registration(
            &state.pool,
            &session,
            &actor,
            user.user_id,
            &form.name,
            &form.credential,
        )
        .await?;
    match stored {
        Ok(summary) => {
            tracing::info!(user = %user.username, passkey = summary.id, "passkey registered");
            own::end_remembered_elsewhere(&state.pool, user.user_id, user.session_id).await?;
            Ok(Redirect::to(&format!("{PATH}?done=added")).into_response())
        }
        Err(refused) => {
            tracing::warn!(user = %user.username, reason = refused.as_str(), "passkey registration refused");
            record(&parts, |meta| {
                AuditEvent::new("passkey_registration_failed", meta)
                    .status(400)
                    .reason(refused.as_str())
                    .username(&user.username)
            })
            .await;
            let problem = match refused {
                RegistrationRefused::AlreadyRegistered => {
                    "This passkey is registered already. Use it to sign in, or add another device."
                }
                RegistrationRefused::NoCeremony => "Adding the passkey took too long. Try again.",
                RegistrationRefused::Malformed | RegistrationRefused::Invalid => {
                    "The passkey could not be added. Try again, or try another device."
                }
            };
            page(&state, &user, StatusCode::BAD_REQUEST, None, Some(problem)).await
        }
    }
}

/// `POST /account/passkeys/{id}/remove`: removes one, after a recent authentication. Whom
/// `--require-mfa` covers keeps at least one second factor.
pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    FreshForm { user, parts, .. }: FreshForm<Empty>,
) -> Result<Response, AppError> {
    let factors = second_factor::factors(&state.pool, user.user_id).await?;
    if state.settings.require_mfa.covers(user.role) && !factors.totp && factors.passkeys <= 1 {
        let problem = if user.role == Role::Admin {
            "Administrators must keep a second factor: add another passkey or turn on two-step verification first."
        } else {
            "This site requires a second factor: add another passkey or turn on two-step verification first."
        };
        return page(&state, &user, StatusCode::CONFLICT, None, Some(problem)).await;
    }
    let actor = Actor::new(&user.username, audit_meta(&parts));
    if !passkey::remove(&state.pool, &actor, user.user_id, id).await? {
        let problem = "That passkey is not on your account (removed already?).";
        return page(&state, &user, StatusCode::NOT_FOUND, None, Some(problem)).await;
    }
    tracing::info!(user = %user.username, passkey = id, "passkey removed");
    own::end_remembered_elsewhere(&state.pool, user.user_id, user.session_id).await?;
    Ok(Redirect::to(&format!("{PATH}?done=removed")).into_response())
}
