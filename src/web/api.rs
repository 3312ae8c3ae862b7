//! JSON for programs. Anonymous callers get a real 401 (never a redirect).

use axum::{Json, response::IntoResponse};
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use crate::auth::CurrentUser;

pub async fn me(CurrentUser(user): CurrentUser) -> impl IntoResponse {
    let at = |t: time::OffsetDateTime| t.format(&Rfc3339).ok();
    Json(json!({
        "username": user.username,
        "role": user.role,
        "session": {
            "signed_in_at": at(user.created_at),
            "idle_expires_at": at(user.idle_expires_at),
            "absolute_expires_at": at(user.absolute_expires_at),
        },
    }))
}
