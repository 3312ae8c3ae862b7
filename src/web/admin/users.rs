//! Users: list, search, create, and per-user role, status, password and sessions.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use serde_json::json;
use sqlx::{Postgres, Transaction};
use time::OffsetDateTime;

use crate::{
    audit::{AuditEvent, RequestMeta},
    auth::{
        CurrentUser, Role, SessionUser,
        users::{self, UserError, Username},
    },
    error::AppError,
    web::{
        AppState, Chrome,
        account::{SessionLine, session_lines},
        denial, display_time,
        form::SignedForm,
        render, render_status,
    },
};

const PAGE_SIZE: i64 = 20;

// ---------------------------------------------------------------- list and create

struct UserLine {
    id: i64,
    username: String,
    role: Role,
    enabled: bool,
    created: String,
    last_sign_in: String,
    sessions: i64,
}

#[derive(Default)]
struct CreateErrors {
    username: Option<String>,
    password: Option<String>,
    role: Option<String>,
}

impl CreateErrors {
    fn any(&self) -> bool {
        self.username.is_some() || self.password.is_some() || self.role.is_some()
    }
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    chrome: Chrome,
    csrf: String,
    q: String,
    page: i64,
    pages: i64,
    total: i64,
    users: Vec<UserLine>,
    new_username: String,
    new_role: Role,
    errors: CreateErrors,
    roles: [Role; 3],
    done: Option<&'static str>,
    min_password: usize,
}

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<i64>,
    #[serde(default)]
    done: Option<String>,
}

fn like_pattern(q: &str) -> String {
    let key = Username::parse(q)
        .map(|u| u.key)
        .unwrap_or_else(|_| q.trim().to_lowercase());
    let escaped = key
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

async fn users_page(
    state: &AppState,
    user: &SessionUser,
    query: ListQuery,
    form: (String, Role, CreateErrors),
    status: StatusCode,
) -> Result<Response, AppError> {
    let q: String = query.q.chars().take(64).collect();
    let pattern = like_pattern(&q);
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM users WHERE username_key LIKE $1"#,
        pattern
    )
    .fetch_one(&state.pool)
    .await?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let rows = sqlx::query!(
        r#"
        SELECT u.id, u.username, u.role AS "role: Role", u.disabled_at, u.created_at,
               u.last_sign_in_at,
               (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.ended_at > now())
                   AS "sessions!"
        FROM users u
        WHERE u.username_key LIKE $1
        ORDER BY u.username_key
        LIMIT $2 OFFSET $3
        "#,
        pattern,
        PAGE_SIZE,
        (page - 1) * PAGE_SIZE
    )
    .fetch_all(&state.pool)
    .await?;
    let users = rows
        .into_iter()
        .map(|r| UserLine {
            id: r.id,
            username: r.username,
            role: r.role,
            enabled: r.disabled_at.is_none(),
            created: display_time(r.created_at),
            last_sign_in: r
                .last_sign_in_at
                .map(display_time)
                .unwrap_or_else(|| "never".into()),
            sessions: r.sessions,
        })
        .collect();
    let (new_username, new_role, errors) = form;
    Ok(render_status(
        status,
        &UsersPage {
            chrome: super::admin_chrome(state, "Users", user).await?,
            csrf: user.csrf_token.clone(),
            q,
            page,
            pages,
            total,
            users,
            new_username,
            new_role,
            errors,
            roles: Role::ALL,
            done: query.done.as_deref().and_then(done_message),
            min_password: state.settings.password_min_length,
        },
    ))
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<ListQuery>,
) -> Result<Response, AppError> {
    users_page(
        &state,
        &user,
        query,
        (String::new(), Role::Member, CreateErrors::default()),
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
}

pub async fn create(
    State(state): State<AppState>,
    SignedForm { user, form, parts }: SignedForm<CreateForm>,
) -> Result<Response, AppError> {
    let mut errors = CreateErrors::default();
    let role = Role::parse(&form.role);
    if role.is_none() {
        errors.role = Some("Choose a role.".into());
    }
    if let Err(problem) = Username::parse(&form.username) {
        errors.username = Some(problem.to_string());
    }
    if let Err(problem) = users::check_new_password(
        &form.password,
        state.settings.password_min_length,
        Some(&form.username),
    ) {
        errors.password = Some(problem.to_string());
    }
    let typed: String = form
        .username
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let role_or_default = role.unwrap_or(Role::Member);
    if let (false, Some(role)) = (errors.any(), role) {
        match users::create(
            &state.pool,
            &state.hasher,
            &form.username,
            &form.password,
            role,
            state.settings.password_min_length,
        )
        .await
        {
            Ok(created) => {
                denial::record(&parts, |meta| {
                    AuditEvent::new("user_created", meta)
                        .username(&user.username)
                        .target(&created.username)
                        .detail(json!({ "role": role }))
                });
                return Ok(
                    Redirect::to(&format!("/admin/users/{}?done=created", created.id))
                        .into_response(),
                );
            }
            Err(UserError::Taken(name)) => {
                errors.username = Some(format!(
                    "A user named {name} already exists (names ignore case)."
                ));
            }
            Err(UserError::Username(p)) => errors.username = Some(p.to_string()),
            Err(UserError::Password(p)) => errors.password = Some(p.to_string()),
            Err(UserError::NotFound(_)) => {
                errors.username = Some("Unexpected: user vanished.".into())
            }
            Err(UserError::App(err)) => return Err(err),
        }
    }
    users_page(
        &state,
        &user,
        ListQuery::default(),
        (typed, role_or_default, errors),
        StatusCode::BAD_REQUEST,
    )
    .await
}

// ---------------------------------------------------------------- one user

struct UserDetail {
    id: i64,
    username: String,
    role: Role,
    disabled_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    last_sign_in_at: Option<OffsetDateTime>,
    last_sign_in_ip: Option<String>,
    password_changed_at: OffsetDateTime,
}

async fn load_user(state: &AppState, id: i64) -> Result<Option<UserDetail>, AppError> {
    Ok(sqlx::query_as!(
        UserDetail,
        r#"
        SELECT id, username, role AS "role: Role", disabled_at, created_at, last_sign_in_at,
               last_sign_in_ip, password_changed_at
        FROM users WHERE id = $1
        "#,
        id
    )
    .fetch_optional(&state.pool)
    .await?)
}

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
    done: Option<&'static str>,
    problem: Option<String>,
    password_error: Option<String>,
    min_password: usize,
}

#[derive(Debug, Deserialize, Default)]
pub struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

fn done_message(key: &str) -> Option<&'static str> {
    Some(match key {
        "created" => "User created.",
        "role_changed" => "Role changed. It applies from the user's next request.",
        "disabled" => "User disabled and signed out everywhere.",
        "enabled" => "User enabled. They can sign in again.",
        "password_reset" => "Password reset. The user was signed out everywhere.",
        "deleted" => "User deleted.",
        "sessions_revoked" => "Sessions signed out. They end on their next request.",
        "session_revoked" => "Session signed out.",
        _ => return None,
    })
}

async fn user_page(
    state: &AppState,
    admin: &SessionUser,
    target: UserDetail,
    status: StatusCode,
    done: Option<&'static str>,
    problem: Option<String>,
    password_error: Option<String>,
) -> Result<Response, AppError> {
    let sessions = users::live_sessions(&state.pool, target.id).await?;
    let events = sqlx::query!(
        r#"
        SELECT at, event, reason, username, target, ip FROM (
            (SELECT * FROM audit_events WHERE username = $1 ORDER BY at DESC LIMIT 10)
            UNION ALL
            (SELECT * FROM audit_events WHERE target = $1 AND username IS DISTINCT FROM $1
             ORDER BY at DESC LIMIT 10)
        ) e ORDER BY at DESC LIMIT 10
        "#,
        target.username
    )
    .fetch_all(&state.pool)
    .await?
    .into_iter()
    .map(|e| EventLine {
        at: e.at.map(display_time).unwrap_or_default(),
        event: e.event.unwrap_or_default(),
        reason: e.reason.unwrap_or_default(),
        actor: e.username.unwrap_or_default(),
        target: e.target.unwrap_or_default(),
        ip: e.ip.unwrap_or_default(),
    })
    .collect();
    let current = (admin.user_id == target.id).then_some(admin.session_id);
    Ok(render_status(
        status,
        &UserPage {
            chrome: super::admin_chrome(state, format!("User {}", target.username), admin).await?,
            csrf: admin.csrf_token.clone(),
            id: target.id,
            is_self: admin.user_id == target.id,
            username: target.username,
            role: target.role,
            enabled: target.disabled_at.is_none(),
            created: display_time(target.created_at),
            last_sign_in: match (target.last_sign_in_at, target.last_sign_in_ip) {
                (Some(at), Some(ip)) => format!("{} from {ip}", display_time(at)),
                (Some(at), None) => display_time(at),
                _ => "never".into(),
            },
            password_changed: display_time(target.password_changed_at),
            sessions: session_lines(&sessions, current),
            events,
            roles: Role::ALL,
            done,
            problem,
            password_error,
            min_password: state.settings.password_min_length,
        },
    ))
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(admin): CurrentUser,
    Path(id): Path<i64>,
    Query(query): Query<DoneQuery>,
) -> Result<Response, AppError> {
    let Some(target) = load_user(&state, id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let done = query.done.as_deref().and_then(done_message);
    user_page(&state, &admin, target, StatusCode::OK, done, None, None).await
}

/// Refuses a change with an explanation on the user's page (409 Conflict).
async fn refuse(
    state: &AppState,
    admin: &SessionUser,
    id: i64,
    why: String,
) -> Result<Response, AppError> {
    let Some(target) = load_user(state, id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    user_page(
        state,
        admin,
        target,
        StatusCode::CONFLICT,
        None,
        Some(why),
        None,
    )
    .await
}

// ---------------------------------------------------------------- confirmation step

#[derive(Template)]
#[template(path = "admin/confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    csrf: String,
    heading: String,
    consequences: Vec<String>,
    action: String,
    fields: Vec<(String, String)>,
    button: String,
    cancel: String,
}

#[derive(Debug, Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    confirm: Option<String>,
}

fn confirmed(value: &Option<String>) -> bool {
    value.as_deref() == Some("yes")
}

/// What a confirmation page asks about.
struct Confirm {
    heading: String,
    consequences: Vec<String>,
    action: String,
    fields: Vec<(String, String)>,
    button: &'static str,
    cancel: String,
}

/// The second step of a destructive action: a page that says what will happen and posts
/// the same form again with `confirm=yes`. No JavaScript involved.
fn confirm_page(state: &AppState, admin: &SessionUser, confirm: Confirm) -> Response {
    render(&ConfirmPage {
        chrome: Chrome::new(&state.site, "Please confirm", Some(admin)),
        csrf: admin.csrf_token.clone(),
        heading: confirm.heading,
        consequences: confirm.consequences,
        action: confirm.action,
        fields: confirm.fields,
        button: confirm.button.to_owned(),
        cancel: confirm.cancel,
    })
}

// ---------------------------------------------------------------- guard rails

/// Serializes changes that could remove the last administrator (two admins demoting each
/// other at once must not both succeed).
async fn lock_admins(tx: &mut Transaction<'_, Postgres>) -> Result<(), AppError> {
    sqlx::query!("SELECT pg_advisory_xact_lock(7266112353)")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// `Some(message)` when `target` is the last enabled administrator.
async fn last_admin(
    tx: &mut Transaction<'_, Postgres>,
    target: &UserDetail,
) -> Result<Option<String>, AppError> {
    if target.role != Role::Admin || target.disabled_at.is_some() {
        return Ok(None);
    }
    let others = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM users WHERE role = 'admin' AND disabled_at IS NULL AND id <> $1"#,
        target.id
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok((others == 0).then(|| {
        format!(
            "{} is the last enabled administrator. Make another user an administrator first, \
             so that someone can still run the site.",
            target.username
        )
    }))
}

/// An administrative event: who acted (`admin`) on whom (`target`).
fn admin_event(
    meta: RequestMeta,
    admin: &SessionUser,
    event: &'static str,
    target: &str,
) -> AuditEvent {
    AuditEvent::new(event, meta)
        .username(&admin.username)
        .target(target)
}

// ---------------------------------------------------------------- actions

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
    SignedForm {
        user: admin,
        form,
        parts,
    }: SignedForm<RoleForm>,
) -> Result<Response, AppError> {
    let Some(role) = Role::parse(&form.role) else {
        return refuse(&state, &admin, id, "Choose one of the roles.".into()).await;
    };
    let Some(target) = load_user(&state, id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    if target.role == role {
        return Ok(Redirect::to(&format!("/admin/users/{id}")).into_response());
    }
    // Demoting yourself locks you out of this page at once: ask first.
    if target.id == admin.user_id && !confirmed(&form.confirm) {
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
    let mut tx = state.pool.begin().await?;
    lock_admins(&mut tx).await?;
    if role != Role::Admin
        && let Some(why) = last_admin(&mut tx, &target).await?
    {
        drop(tx);
        return refuse(&state, &admin, id, why).await;
    }
    sqlx::query!(
        "UPDATE users SET role = $2, updated_at = now() WHERE id = $1",
        id,
        role as Role
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let from = target.role;
    denial::record(&parts, |meta| {
        admin_event(meta, &admin, "role_changed", &target.username)
            .detail(json!({ "from": from, "to": role }))
    });
    Ok(Redirect::to(&format!("/admin/users/{id}?done=role_changed")).into_response())
}

pub async fn disable(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    SignedForm {
        user: admin,
        form,
        parts,
    }: SignedForm<ConfirmForm>,
) -> Result<Response, AppError> {
    let Some(target) = load_user(&state, id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    if target.id == admin.user_id {
        return refuse(
            &state,
            &admin,
            id,
            "You cannot disable your own account; ask another administrator.".into(),
        )
        .await;
    }
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
    let mut tx = state.pool.begin().await?;
    lock_admins(&mut tx).await?;
    if let Some(why) = last_admin(&mut tx, &target).await? {
        drop(tx);
        return refuse(&state, &admin, id, why).await;
    }
    sqlx::query!(
        "UPDATE users SET disabled_at = coalesce(disabled_at, now()), updated_at = now() WHERE id = $1",
        id
    )
    .execute(&mut *tx)
    .await?;
    let ended = users::revoke_sessions(&mut *tx, id, None, "user_disabled").await?;
    tx.commit().await?;
    denial::record(&parts, |meta| {
        admin_event(meta, &admin, "user_disabled", &target.username)
            .detail(json!({ "sessions_revoked": ended }))
    });
    Ok(Redirect::to(&format!("/admin/users/{id}?done=disabled")).into_response())
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

pub async fn enable(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    SignedForm {
        user: admin, parts, ..
    }: SignedForm<Empty>,
) -> Result<Response, AppError> {
    let Some(target) = load_user(&state, id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    users::set_disabled(&state.pool, id, false).await?;
    denial::record(&parts, |meta| {
        admin_event(meta, &admin, "user_enabled", &target.username)
    });
    Ok(Redirect::to(&format!("/admin/users/{id}?done=enabled")).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: Option<String>,
}

pub async fn reset_password(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    SignedForm {
        user: admin,
        form,
        parts,
    }: SignedForm<ResetForm>,
) -> Result<Response, AppError> {
    let Some(target) = load_user(&state, id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    if target.id == admin.user_id {
        return refuse(
            &state,
            &admin,
            id,
            "Change your own password on your account page (it asks for the current one).".into(),
        )
        .await;
    }
    let checked = users::check_new_password(
        &form.password,
        state.settings.password_min_length,
        Some(&target.username),
    );
    let problem = match (&checked, confirmed(&form.confirm)) {
        (Err(p), _) => Some(p.to_string()),
        (Ok(_), false) => {
            Some("Tick the box to confirm that the user will be signed out everywhere.".into())
        }
        (Ok(_), true) => None,
    };
    let (Ok(password), None) = (checked, &problem) else {
        return user_page(
            &state,
            &admin,
            target,
            StatusCode::BAD_REQUEST,
            None,
            None,
            problem,
        )
        .await;
    };
    let hash = state.hasher.hash(password).await?;
    let mut tx = state.pool.begin().await?;
    users::set_password_hash(&mut *tx, id, &hash).await?;
    let ended = users::revoke_sessions(&mut *tx, id, None, "password_reset").await?;
    tx.commit().await?;
    denial::record(&parts, |meta| {
        admin_event(meta, &admin, "password_reset", &target.username)
            .detail(json!({ "sessions_revoked": ended }))
    });
    Ok(Redirect::to(&format!("/admin/users/{id}?done=password_reset")).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    SignedForm {
        user: admin,
        form,
        parts,
    }: SignedForm<ConfirmForm>,
) -> Result<Response, AppError> {
    let Some(target) = load_user(&state, id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    if target.id == admin.user_id {
        return refuse(
            &state,
            &admin,
            id,
            "You cannot delete your own account; ask another administrator.".into(),
        )
        .await;
    }
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
    let mut tx = state.pool.begin().await?;
    lock_admins(&mut tx).await?;
    if let Some(why) = last_admin(&mut tx, &target).await? {
        drop(tx);
        return refuse(&state, &admin, id, why).await;
    }
    sqlx::query!("DELETE FROM users WHERE id = $1", id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    denial::record(&parts, |meta| {
        admin_event(meta, &admin, "user_deleted", &target.username)
    });
    Ok(Redirect::to("/admin?done=deleted").into_response())
}

pub async fn revoke_all(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    SignedForm {
        user: admin,
        form,
        parts,
    }: SignedForm<ConfirmForm>,
) -> Result<Response, AppError> {
    let Some(target) = load_user(&state, id).await? else {
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
    let ended = users::revoke_sessions(&state.pool, id, None, "admin").await?;
    denial::record(&parts, |meta| {
        admin_event(meta, &admin, "sessions_revoked", &target.username)
            .detail(json!({ "count": ended }))
    });
    Ok(Redirect::to(&format!("/admin/users/{id}?done=sessions_revoked")).into_response())
}

pub async fn revoke_one(
    State(state): State<AppState>,
    Path((id, session)): Path<(i64, i64)>,
    SignedForm {
        user: admin, parts, ..
    }: SignedForm<Empty>,
) -> Result<Response, AppError> {
    let Some(target) = load_user(&state, id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let revoked = sqlx::query!(
        r#"
        UPDATE sessions SET revoked_at = now(), revoked_reason = 'admin'
        WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND ended_at > now()
        "#,
        session,
        id
    )
    .execute(&state.pool)
    .await?
    .rows_affected();
    if revoked == 0 {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    denial::record(&parts, |meta| {
        admin_event(meta, &admin, "session_revoked", &target.username)
            .reason("admin")
            .detail(json!({ "session": session }))
    });
    Ok(Redirect::to(&format!("/admin/users/{id}?done=session_revoked")).into_response())
}
