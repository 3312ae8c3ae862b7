//! Administration (admins only): users, roles, sessions, the audit trail and the denials
//! dashboard. Every change is a CSRF-checked POST and is recorded in the audit trail.

pub mod audit;
mod chart;
pub mod confirm;
pub mod denials;
pub mod everyone;
pub mod link;
pub mod mail_link;
pub mod requests;
pub mod throttles;
pub mod user;
pub mod users;

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
