//! Users: the searchable, paged list and the form that creates a user.

use askama::Template;
use axum::{extract::State, http::StatusCode, response::Response};
use serde::Deserialize;

use super::{admin_chrome, link::link_page};
use crate::{
    accounts::{
        self, UserError, Username,
        admin::{self, AdminError},
        email,
    },
    audit::Actor,
    auth::{Role, SessionUser},
    display::Zone,
    error::AppError,
    web::{
        AppState,
        http::{
            Chrome, CurrentUser, TextQuery, fresh::FreshForm, render_status, request::audit_meta,
        },
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
    invited: bool,
}

#[derive(Default)]
struct CreateErrors {
    username: Option<String>,
    role: Option<String>,
    /// The optional address (with mail on) the invitation can be mailed to.
    email: Option<String>,
}

impl CreateErrors {
    fn any(&self) -> bool {
        self.username.is_some() || self.role.is_some() || self.email.is_some()
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
    new_email: String,
    errors: CreateErrors,
    roles: [Role; 3],
    done: Option<&'static str>,
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

async fn users_page(
    state: &AppState,
    user: &SessionUser,
    query: ListQuery,
    form: (String, Role, String, CreateErrors),
    status: StatusCode,
) -> Result<Response, AppError> {
    let q: String = query.q.chars().take(64).collect();
    let found = accounts::search(&state.pool, &q, query.page.unwrap_or(1), PAGE_SIZE).await?;
    let zone = Zone::of(user.time_zone.as_deref());
    let users = found
        .users
        .into_iter()
        .map(|r| UserLine {
            id: r.id,
            username: r.username,
            role: r.role,
            enabled: r.disabled_at.is_none(),
            created: zone.time(r.created_at),
            last_sign_in: r
                .last_sign_in_at
                .map(|at| zone.time(at))
                .unwrap_or_else(|| "never".into()),
            sessions: r.sessions,
            invited: r.invited,
        })
        .collect();
    let (new_username, new_role, new_email, errors) = form;
    Ok(render_status(
        status,
        &UsersPage {
            chrome: admin_chrome(state, "Users", user).await?,
            csrf: user.csrf_token.clone(),
            q,
            page: found.page,
            pages: found.pages,
            total: found.total,
            users,
            new_username,
            new_role,
            new_email,
            errors,
            roles: Role::ALL,
            done: query.done.as_deref().and_then(super::user::done_message),
        },
    ))
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    TextQuery(query): TextQuery<ListQuery>,
) -> Result<Response, AppError> {
    users_page(
        &state,
        &user,
        query,
        (
            String::new(),
            Role::Member,
            String::new(),
            CreateErrors::default(),
        ),
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    email: String,
}

/// Creates a user without a password and shows their invitation link: they choose their
/// password themselves (an administrator never does).
pub async fn create(
    State(state): State<AppState>,
    FreshForm { user, form, parts }: FreshForm<CreateForm>,
) -> Result<Response, AppError> {
    let mut errors = CreateErrors::default();
    let role = Role::parse(&form.role);
    if role.is_none() {
        errors.role = Some("Choose a role.".into());
    }
    if let Err(problem) = Username::parse(&form.username) {
        errors.username = Some(problem.to_string());
    }
    let typed: String = form
        .username
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    // An address to mail the invitation to (offered on the link page), only with mail on.
    let typed_email: String = form.email.trim().chars().take(254).collect();
    let address = match (&state.mailer, typed_email.is_empty()) {
        (Some(_), false) => match email::parse_address(&typed_email) {
            Ok(address) => Some(address),
            Err(problem) => {
                errors.email = Some(problem.to_string());
                None
            }
        },
        _ => None,
    };
    let role_or_default = role.unwrap_or(Role::Member);
    if let (false, Some(role)) = (errors.any(), role) {
        let actor = Actor::new(&user.username, audit_meta(&parts));
        let lifetime = state.settings.link_lifetime;
        match admin::invite(&state.pool, &actor, &form.username, role, lifetime).await {
            Ok(issued) => {
                if let Some(address) = &address {
                    email::set_unverified(&state.pool, &actor, issued.user_id, address).await?;
                }
                return link_page(&state, &user, &issued, role, true).await;
            }
            Err(AdminError::User(UserError::Taken(name))) => {
                errors.username = Some(format!(
                    "A user named {name} already exists (names ignore case)."
                ));
            }
            Err(AdminError::User(UserError::Username(p))) => errors.username = Some(p.to_string()),
            Err(err) => return Err(err.into()),
        }
    }
    users_page(
        &state,
        &user,
        ListQuery::default(),
        (typed, role_or_default, typed_email, errors),
        StatusCode::BAD_REQUEST,
    )
    .await
}
