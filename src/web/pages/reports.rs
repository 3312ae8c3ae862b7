//! Reports (editors and above): how the site's accounts and sessions are doing.

use askama::Template;
use axum::{extract::State, response::Response};

use crate::{
    error::AppError,
    web::{
        AppState,
        http::{Chrome, CurrentUser, render},
    },
};

#[derive(Template)]
#[template(path = "reports.html")]
struct ReportsPage {
    chrome: Chrome,
    members: i64,
    editors: i64,
    admins: i64,
    disabled: i64,
    active_sessions: i64,
    signed_in_24h: i64,
    never_signed_in: i64,
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Response, AppError> {
    let row = sqlx::query!(
        r#"
        SELECT
          count(*) FILTER (WHERE role = 'member') AS "members!",
          count(*) FILTER (WHERE role = 'editor') AS "editors!",
          count(*) FILTER (WHERE role = 'admin') AS "admins!",
          count(*) FILTER (WHERE disabled_at IS NOT NULL) AS "disabled!",
          count(*) FILTER (WHERE last_sign_in_at > now() - interval '24 hours') AS "signed_in_24h!",
          count(*) FILTER (WHERE last_sign_in_at IS NULL) AS "never_signed_in!",
          (SELECT count(*) FROM sessions WHERE ended_at > now()) AS "active_sessions!"
        FROM users
        "#
    )
    .fetch_one(&state.pool)
    .await?;
    Ok(render(&ReportsPage {
        chrome: Chrome::new(&state.site, "Reports", Some(&user)),
        members: row.members,
        editors: row.editors,
        admins: row.admins,
        disabled: row.disabled,
        active_sessions: row.active_sessions,
        signed_in_24h: row.signed_in_24h,
        never_signed_in: row.never_signed_in,
    }))
}
