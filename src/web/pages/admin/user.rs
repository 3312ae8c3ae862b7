//! One user: facts, role, status, password link, sessions and recent history, and the
//! actions on them. Every change goes through `accounts::admin`, which holds the rules.

use askama::Template;
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::{
    admin_chrome,
    confirm::{Confirm, ConfirmForm, confirm_page, confirmed},
    link::link_page,
};
use crate::{
    accounts::{
        self, UserRow,
        admin::{self, AdminError, Changed},
    },
    audit::{self, Actor},
    auth::{Role, SessionUser, second_factor},
    display::Zone,
    error::AppError,
    web::{
        AppState,
        http::{
            Chrome, CurrentUser, TextQuery, fresh::FreshForm, render_status, request::audit_meta,
        },
        pages::session_list::{ListOptions, SessionLine, session_lines},
    },
};

struct EventLine {
    at: String,
    event: String,
    reason: String,
    actor: String,
    target: String,
    ip: String,
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPage {
    chrome: Chrome,
    csrf: String,
    id: i64,
    username: String,
    role: Role,
    enabled: bool,
    created: String,
    last_sign_in: String,
    password_changed: String,
    sessions: Vec<SessionLine>,
    events: Vec<EventLine>,
    roles: [Role; 3],
    is_self: bool,
    second_factor: bool,
    done: Option<&'static str>,
    problem: Option<String>,
    invited: bool,
}

#[derive(Debug, Deserialize, Default)]
pub struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

/// The notice for `?done=…` after a change (also used by the list page).
pub fn done_message(key: &str) -> Option<&'static str> {
    Some(match key {
        "created" => "User created.",
        "role_changed" => "Role changed. It applies from the user's next request.",
        "disabled" => "User disabled and signed out everywhere.",
        "enabled" => "User enabled. They can sign in again.",
        "deleted" => "User deleted.",
        "link_mailed" => "The link is on its way by e-mail.",
        "link_not_mailed" => {
            "The link was not mailed: it was used or replaced, or the user has no address it \
             may go to. Make a new link."
        }
        "sessions_revoked" => "Sessions signed out. They end on their next request.",
        "session_revoked" => "Session signed out.",
        "everyone_signed_out" => {
            "Everyone was signed out, you too on your other devices (not here). Their \
             sessions end on their next request; the audit log has the count."
        }
        "second_factor_reset" => {
            "Two-step verification reset and the user signed out everywhere. They sign in \
             with their password and set it up again."
        }
        _ => return None,
    })
}

/// What the page shows besides the facts: a notice or a refusal.
#[derive(Default)]
struct Outcome {
    done: Option<&'static str>,
    problem: Option<String>,
}

async fn user_page(
    state: &AppState,
    admin: &SessionUser,
    target: UserRow,
    status: StatusCode,
    outcome: Outcome,
) -> Result<Response, AppError> {
    let sessions = accounts::live_sessions(&state.pool, target.id).await?;
    let zone = Zone::of(admin.time_zone.as_deref());
    let time = |at| zone.time(at);
    let events = audit::history(&state.pool, &target.username)
        .await?
        .into_iter()
        .map(|e| EventLine {
            at: e.at.map(time).unwrap_or_default(),
            event: e.event.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            actor: e.username.unwrap_or_default(),
            target: e.target.unwrap_or_default(),
            ip: e.ip.unwrap_or_default(),
        })
        .collect();
    let current = (admin.user_id == target.id).then_some(admin.session_id);
    let second_factor = second_factor::enabled(&state.pool, target.id).await?;
    Ok(render_status(
        status,
        &UserPage {
            chrome: admin_chrome(state, format!("User {}", target.username), admin).await?,
            csrf: admin.csrf_token.clone(),
            id: target.id,
            is_self: admin.user_id == target.id,
            second_factor,
            username: target.username,
            role: target.role,
            enabled: target.disabled_at.is_none(),
            created: time(target.created_at),
            last_sign_in: match (target.last_sign_in_at, target.last_sign_in_ip) {
                (Some(at), Some(ip)) => format!("{} from {ip}", time(at)),
                (Some(at), None) => time(at),
                _ => "never".into(),
            },
            password_changed: time(target.password_changed_at),
            sessions: session_lines(
                &sessions,
                &ListOptions {
                    current,
                    zone: &zone,
                    revoke_action: &|session| {
                        format!(
                            "/admin/users/{id}/sessions/{session}/revoke",
                            id = target.id
                        )
                    },
                    buttons: ("Sign out", "Sign out"),
                },
            ),
            events,
            roles: Role::ALL,
            done: outcome.done,
            problem: outcome.problem,
            invited: target.invited,
        },
    ))
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(admin): CurrentUser,
    Path(id): Path<i64>,
    TextQuery(query): TextQuery<DoneQuery>,
) -> Result<Response, AppError> {
    let Some(target) = accounts::by_id(&state.pool, id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let done = query.done.as_deref().and_then(done_message);
    let outcome = Outcome {
        done,
        ..Outcome::default()
    };
    user_page(&state, &admin, target, StatusCode::OK, outcome).await
}

/// Shows the user's page again with a problem (409 Conflict for a refused change).
async fn again(
    state: &AppState,
    admin: &SessionUser,
    id: i64,
    status: StatusCode,
    outcome: Outcome,
) -> Result<Response, AppError> {
    let Some(target) = accounts::by_id(&state.pool, id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    user_page(state, admin, target, status, outcome).await
}

async fn refuse(
    state: &AppState,
    admin: &SessionUser,
    id: i64,
    why: String,
) -> Result<Response, AppError> {
    let outcome = Outcome {
        problem: Some(why),
        ..Outcome::default()
    };
    again(state, admin, id, StatusCode::CONFLICT, outcome).await
}

/// The answer to a change the service made or refused: back to the user's page with a
/// notice, or the page again with the reason.
async fn answer(
    state: &AppState,
    admin: &SessionUser,
    id: i64,
    result: Result<Changed, AdminError>,
    done: &str,
) -> Result<Response, AppError> {
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/admin/users/{id}?done={done}")).into_response()),
        Err(AdminError::NotFound) => Ok(StatusCode::NOT_FOUND.into_response()),
        Err(AdminError::LastAdmin(name)) => {
            let why = format!(
                "{name} is the last enabled administrator. Make another user an administrator \
                 first, so that someone can still run the site."
            );
            refuse(state, admin, id, why).await
        }
        Err(err) => Err(err.into()),
    }
}

fn actor(admin: &SessionUser, parts: &axum::http::request::Parts) -> Actor {
    Actor::new(&admin.username, audit_meta(parts))
}

#[derive(Debug, Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
    #[serde(default)]
    confirm: Option<String>,
}

pub async fn set_role(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    FreshForm {
        user: admin,
        form,
        parts,
    }: FreshForm<RoleForm>,
) -> Result<Response, AppError> {
    let Some(role) = Role::parse(&form.role) else {
        return refuse(&state, &admin, id, "Choose one of the roles.".into()).await;
    };
    // Demoting yourself locks you out of this page at once: ask first.
    if id == admin.user_id && role != Role::Admin && !confirmed(&form.confirm) {
        return Ok(confirm_page(
            &state,
            &admin,
            Confirm {
                heading: format!("Change your own role to {role}?"),
                consequences: vec![
                    "You will lose access to the administration pages immediately.".into(),
                    "Only another administrator can give it back.".into(),
                ],
                action: format!("/admin/users/{id}/role"),
                fields: vec![("role".into(), role.to_string())],
                button: "Yes, change my role",
                cancel: format!("/admin/users/{id}"),
            },
        ));
    }
    let result = admin::set_role(&state.pool, &actor(&admin, &parts), id, role).await;
    if let Ok(Changed { user, .. }) = &result
        && user.role == role
    {
        // Nothing to change.
        return Ok(Redirect::to(&format!("/admin/users/{id}")).into_response());
    }
    answer(&state, &admin, id, result, "role_changed").await
}

/// Loads the target of a destructive action and refuses to act on oneself; `Err` is the
/// answer to send instead.
async fn other_user(
    state: &AppState,
    admin: &SessionUser,
    id: i64,
    on_self: &str,
) -> Result<Result<UserRow, Response>, AppError> {
    let Some(target) = accounts::by_id(&state.pool, id).await? else {
        return Ok(Err(StatusCode::NOT_FOUND.into_response()));
    };
    if target.id == admin.user_id {
        return Ok(Err(refuse(state, admin, id, on_self.into()).await?));
    }
    Ok(Ok(target))
}

pub async fn disable(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    FreshForm {
        user: admin,
        form,
        parts,
    }: FreshForm<ConfirmForm>,
) -> Result<Response, AppError> {
    let on_self = "You cannot disable your own account; ask another administrator.";
    let target = match other_user(&state, &admin, id, on_self).await? {
        Ok(target) => target,
        Err(response) => return Ok(response),
    };
    if !confirmed(&form.confirm) {
        return Ok(confirm_page(
            &state,
            &admin,
            Confirm {
                heading: format!("Disable {}?", target.username),
                consequences: vec![
                    format!(
                        "{} will be signed out everywhere on their next request.",
                        target.username
                    ),
                    "They cannot sign in until an administrator enables the account again.".into(),
                ],
                action: format!("/admin/users/{id}/disable"),
                fields: vec![],
                button: "Yes, disable",
                cancel: format!("/admin/users/{id}"),
            },
        ));
    }
    let result = admin::disable(&state.pool, &actor(&admin, &parts), id).await;
    answer(&state, &admin, id, result, "disabled").await
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

pub async fn enable(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    FreshForm {
        user: admin, parts, ..
    }: FreshForm<Empty>,
) -> Result<Response, AppError> {
    let result = admin::enable(&state.pool, &actor(&admin, &parts), id).await;
    answer(&state, &admin, id, result, "enabled").await
}

/// Issues a one-time link where the user chooses a new password (an invitation link again
/// if they never used theirs) and shows it. Nothing changes until the link is used.
pub async fn password_link(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    FreshForm {
        user: admin, parts, ..
    }: FreshForm<Empty>,
) -> Result<Response, AppError> {
    let on_self = "Change your own password on your account page (it asks for the current one).";
    let target = match other_user(&state, &admin, id, on_self).await? {
        Ok(target) => target,
        Err(response) => return Ok(response),
    };
    let lifetime = state.settings.link_lifetime;
    match admin::reset_link(&state.pool, &actor(&admin, &parts), id, lifetime).await {
        Ok(issued) => link_page(&state, &admin, &issued, target.role, false).await,
        Err(AdminError::NotFound) => Ok(StatusCode::NOT_FOUND.into_response()),
        Err(err) => Err(err.into()),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    FreshForm {
        user: admin,
        form,
        parts,
    }: FreshForm<ConfirmForm>,
) -> Result<Response, AppError> {
    let on_self = "You cannot delete your own account; ask another administrator.";
    let target = match other_user(&state, &admin, id, on_self).await? {
        Ok(target) => target,
        Err(response) => return Ok(response),
    };
    if !confirmed(&form.confirm) {
        return Ok(confirm_page(
            &state,
            &admin,
            Confirm {
                heading: format!("Delete {} for good?", target.username),
                consequences: vec![
                    format!(
                        "{} will be signed out everywhere on their next request.",
                        target.username
                    ),
                    "The account cannot be restored; its audit events are kept.".into(),
                    "To block someone temporarily, disable the account instead.".into(),
                ],
                action: format!("/admin/users/{id}/delete"),
                fields: vec![],
                button: "Yes, delete",
                cancel: format!("/admin/users/{id}"),
            },
        ));
    }
    match admin::delete(&state.pool, &actor(&admin, &parts), id).await {
        Ok(_) => Ok(Redirect::to("/admin?done=deleted").into_response()),
        result => answer(&state, &admin, id, result, "deleted").await,
    }
}

pub async fn revoke_all(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    FreshForm {
        user: admin,
        form,
        parts,
    }: FreshForm<ConfirmForm>,
) -> Result<Response, AppError> {
    let Some(target) = accounts::by_id(&state.pool, id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    if !confirmed(&form.confirm) {
        let mut consequences = vec![format!(
            "Every session of {} ends on its next request; they can sign in again.",
            target.username
        )];
        if target.id == admin.user_id {
            consequences.push("This includes the session you are using now.".into());
        }
        return Ok(confirm_page(
            &state,
            &admin,
            Confirm {
                heading: format!("Sign {} out everywhere?", target.username),
                consequences,
                action: format!("/admin/users/{id}/sessions/revoke-all"),
                fields: vec![],
                button: "Yes, sign out everywhere",
                cancel: format!("/admin/users/{id}"),
            },
        ));
    }
    let result = admin::revoke_all_sessions(&state.pool, &actor(&admin, &parts), id).await;
    answer(&state, &admin, id, result, "sessions_revoked").await
}

pub async fn revoke_one(
    State(state): State<AppState>,
    Path((id, session)): Path<(i64, i64)>,
    FreshForm {
        user: admin, parts, ..
    }: FreshForm<Empty>,
) -> Result<Response, AppError> {
    let result = admin::revoke_one_session(&state.pool, &actor(&admin, &parts), id, session).await;
    answer(&state, &admin, id, result, "session_revoked").await
}

pub async fn reset_second_factor(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    FreshForm {
        user: admin,
        form,
        parts,
    }: FreshForm<ConfirmForm>,
) -> Result<Response, AppError> {
    let Some(target) = accounts::by_id(&state.pool, id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    if !confirmed(&form.confirm) {
        return Ok(confirm_page(
            &state,
            &admin,
            Confirm {
                heading: format!("Reset two-step verification for {}?", target.username),
                consequences: vec![
                    format!(
                        "{}'s authenticator app and recovery codes stop working.",
                        target.username
                    ),
                    format!(
                        "{} is signed out everywhere and signs in with the password alone, then \
                         sets up two-step verification again.",
                        target.username
                    ),
                    "Do this only once you are sure who asked: it removes a factor.".into(),
                ],
                action: format!("/admin/users/{id}/second-factor/reset"),
                fields: vec![],
                button: "Yes, reset",
                cancel: format!("/admin/users/{id}"),
            },
        ));
    }
    let result = admin::reset_second_factor(&state.pool, &actor(&admin, &parts), id).await;
    answer(&state, &admin, id, result, "second_factor_reset").await
}
