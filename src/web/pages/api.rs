//! JSON for programs. Anonymous callers get a real 401 (never a redirect).

use axum::response::Response;
use serde::Serialize;
use time::OffsetDateTime;

use crate::{
    auth::Role,
    web::http::{CurrentUser, render::json},
};

#[derive(Serialize)]
struct Me<'a> {
    username: &'a str,
    role: Role,
    session: SessionTimes,
}

#[derive(Serialize)]
struct SessionTimes {
    #[serde(with = "time::serde::rfc3339")]
    signed_in_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    idle_expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    absolute_expires_at: OffsetDateTime,
}

pub async fn me(CurrentUser(user): CurrentUser) -> Response {
    json(&Me {
        username: &user.username,
        role: user.role,
        session: SessionTimes {
            signed_in_at: user.created_at,
            idle_expires_at: user.idle_expires_at,
            absolute_expires_at: user.absolute_expires_at,
        },
    })
}
