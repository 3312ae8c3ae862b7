//! Administration (admins only): users, roles, sessions, the audit trail and the denials
//! dashboard. Every change is a CSRF-checked POST and is recorded in the audit trail.

pub mod audit;
pub mod denials;
pub mod requests;
pub mod throttles;
pub mod users;

use axum::{
    Router,
    routing::{get, post},
};

use super::{AppState, Chrome};
use crate::{auth::SessionUser, error::AppError};

/// The page chrome of admin pages: with the number of pending access requests, shown in
/// the admin navigation.
pub async fn admin_chrome(
    state: &AppState,
    title: impl Into<String>,
    user: &SessionUser,
) -> Result<Chrome, AppError> {
    let pending = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM access_requests WHERE status = 'pending'"#
    )
    .fetch_one(&state.pool)
    .await?;
    let mut chrome = Chrome::new(&state.site, title, Some(user));
    chrome.pending_requests = Some(pending);
    Ok(chrome)
}

/// Routes under `/admin`; the caller mounts them behind the admin guard.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(users::list))
        .route("/admin/users", post(users::create))
        .route("/admin/users/{id}", get(users::show))
        .route("/admin/users/{id}/role", post(users::set_role))
        .route("/admin/users/{id}/disable", post(users::disable))
        .route("/admin/users/{id}/enable", post(users::enable))
        .route("/admin/users/{id}/password", post(users::reset_password))
        .route("/admin/users/{id}/delete", post(users::delete))
        .route(
            "/admin/users/{id}/sessions/revoke-all",
            post(users::revoke_all),
        )
        .route(
            "/admin/users/{id}/sessions/{session}/revoke",
            post(users::revoke_one),
        )
        .route("/admin/denials", get(denials::show))
        .route("/admin/audit", get(audit::list))
        .route("/admin/audit.csv", get(audit::csv))
        .route("/admin/requests", get(requests::list))
        .route("/admin/requests/{id}/grant", post(requests::grant))
        .route("/admin/requests/{id}/decline", post(requests::decline))
        .route("/admin/throttles", get(throttles::list))
        .route("/admin/throttles/clear", post(throttles::clear))
}
