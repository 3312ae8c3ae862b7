//! Administration (admins only): users, roles, sessions, the audit trail and the denials
//! dashboard. Every change is a CSRF-checked POST and is recorded in the audit trail.

pub mod audit;
mod chart;
pub mod confirm;
pub mod denials;
pub mod requests;
pub mod throttles;
pub mod user;
pub mod users;

use axum::{
    Router,
    routing::{get, post},
};

use crate::{
    accounts::access,
    auth::SessionUser,
    error::AppError,
    web::{AppState, http::Chrome},
};

/// The page chrome of admin pages: with the number of pending access requests, shown in
/// the admin navigation.
pub async fn admin_chrome(
    state: &AppState,
    title: impl Into<String>,
    user: &SessionUser,
) -> Result<Chrome, AppError> {
    let pending = access::pending_count(&state.pool).await?;
    let mut chrome = Chrome::new(&state.site, title, Some(user));
    chrome.pending_requests = Some(pending);
    Ok(chrome)
}

/// Routes under `/admin`; the caller mounts them behind the admin guard.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(users::list))
        .route("/admin/users", post(users::create))
        .route("/admin/users/{id}", get(user::show))
        .route("/admin/users/{id}/role", post(user::set_role))
        .route("/admin/users/{id}/disable", post(user::disable))
        .route("/admin/users/{id}/enable", post(user::enable))
        .route("/admin/users/{id}/password", post(user::reset_password))
        .route("/admin/users/{id}/delete", post(user::delete))
        .route(
            "/admin/users/{id}/second-factor/reset",
            post(user::reset_second_factor),
        )
        .route(
            "/admin/users/{id}/sessions/revoke-all",
            post(user::revoke_all),
        )
        .route(
            "/admin/users/{id}/sessions/{session}/revoke",
            post(user::revoke_one),
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
