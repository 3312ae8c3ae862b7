//! Telling people what happened, in their words: `/help/access` explains 401 and 403 the
//! way the explainer Portcullis grew from does — causes and remedies for users, where to
//! look for operators. Also `robots.txt` (the `noindex` header is set by `frame`).

use askama::Template;
use axum::{
    extract::{Request, State},
    http::header,
    response::{IntoResponse, Response},
};

use crate::{
    display::plain_duration,
    web::{
        AppState,
        http::{Chrome, MaybeUser, render, request::request_id},
    },
};

/// Crawlers are kept out of the private paths. The sign-in and help pages are not listed:
/// a crawler must fetch them to see their `noindex`.
pub async fn robots() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "User-agent: *\nDisallow: /account\nDisallow: /admin\nDisallow: /reports\n\
         Disallow: /api/\nDisallow: /metrics\nDisallow: /setup\nDisallow: /access-requests\n",
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "help.html")]
struct HelpPage {
    chrome: Chrome,
    idle: String,
    absolute: String,
    reauth: String,
    request_id: String,
}

pub async fn access(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    request: Request,
) -> Response {
    let request_id = request_id(request.extensions()).to_owned();
    render(&HelpPage {
        chrome: Chrome::new(&state.site, "Help: signing in and access", user.as_deref()),
        idle: plain_duration(state.settings.idle_timeout),
        absolute: plain_duration(state.settings.absolute_timeout),
        reauth: plain_duration(state.settings.reauth_window),
        request_id,
    })
}
