//! Telling people what happened, in their words: `/help/access` explains 401 and 403 the
//! way the explainer Portcullis grew from does — causes and remedies for users, where to
//! look for operators. Also `robots.txt` and the `noindex` header for everything private.

use askama::Template;
use axum::{
    extract::{Request, State},
    http::{HeaderName, HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{AppState, Chrome, render};
use crate::auth::MaybeUser;

const ROBOTS_TAG: HeaderName = HeaderName::from_static("x-robots-tag");

/// Marks a response as not for search engines.
pub fn noindex(response: &mut Response) {
    response
        .headers_mut()
        .insert(ROBOTS_TAG, HeaderValue::from_static("noindex, nofollow"));
}

/// Middleware: every response except the public home page and static files is
/// `noindex` — sign-in, 401, 403, help and error pages must neither be indexed nor count
/// against the site in search results.
pub async fn noindex_private(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let indexable = path == "/" || path == "/robots.txt" || path.starts_with("/static/");
    let mut response = next.run(request).await;
    if !indexable {
        noindex(&mut response);
    }
    response
}

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
    request_id: String,
}

pub async fn access(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    request: Request,
) -> Response {
    let request_id = request
        .headers()
        .get(super::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    render(&HelpPage {
        chrome: Chrome::new(&state.site, "Help: signing in and access", user.as_deref()),
        idle: super::login::plain_duration(state.settings.idle_timeout),
        absolute: super::login::plain_duration(state.settings.absolute_timeout),
        request_id,
    })
}
