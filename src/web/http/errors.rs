//! The one place that picks status pages: every 4xx/5xx that is not already a finished
//! page (axum's own 404/405/413/415/422, timeouts, panics, `AppError`) gets a friendly page
//! in the site's look, or a JSON error for API clients. Nothing internal is shown.

use std::any::Any;

use askama::Template;
use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{Chrome, Rendered, Site, input::BadInput, negotiate::RequestKind, render};

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: u16,
    heading: &'static str,
    explanation: &'static str,
    /// What exactly was refused (refused input only).
    detail: Option<String>,
    /// Where "Go back" leads (refused input only).
    back: Option<String>,
    request_id: String,
}

/// (short code for JSON, heading, explanation) for a status.
fn describe(status: StatusCode) -> (&'static str, &'static str, &'static str) {
    match status.as_u16() {
        400 => (
            "bad_request",
            "Bad request",
            "The request could not be understood. Go back, check what you entered, and try again.",
        ),
        404 => (
            "not_found",
            "Page not found",
            "There is no page at this address. Check the link, or start again from the home page.",
        ),
        405 => (
            "method_not_allowed",
            "Method not allowed",
            "This address does not accept that kind of request. Use the site's links and buttons.",
        ),
        408 => (
            "request_timeout",
            "Request timed out",
            "The request took too long to arrive or to answer. Try again.",
        ),
        421 => (
            "misdirected_request",
            "Wrong address for this site",
            "This server does not answer to the name in your address bar. Open the site at its \
             usual address.",
        ),
        413 => (
            "payload_too_large",
            "Request too large",
            "What you sent is larger than this site accepts (16 KiB for a form).",
        ),
        415 => (
            "unsupported_media_type",
            "Unsupported content type",
            "This address expects a form submitted from the site's own page.",
        ),
        422 => (
            "unprocessable_entity",
            "Form could not be read",
            "The form arrived incomplete or malformed. Go back, reload the page and try again.",
        ),
        429 => (
            "too_many_requests",
            "Too many requests",
            "Too many attempts in a short time. Wait a moment and try again.",
        ),
        503 => (
            "service_unavailable",
            "Temporarily unavailable",
            "The service cannot reach its database or is too busy right now. Nothing you did \
             caused this; try again in a minute.",
        ),
        s if s >= 500 => (
            "internal_error",
            "Something went wrong",
            "The server hit an unexpected problem. It has been logged; try again, and if it \
             keeps happening, tell the administrator the request id below.",
        ),
        _ => (
            "error",
            "Request refused",
            "The request could not be completed. Go back and try again.",
        ),
    }
}

/// Replaces the body of an unfinished error response (4xx/5xx without [`Rendered`]) with
/// the page or JSON error for its status; other responses pass unchanged.
pub fn finish(response: Response, kind: RequestKind, site: &Site, request_id: &str) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<Rendered>().is_some()
    {
        return response;
    }
    let (mut parts, _unfinished_body) = response.into_parts();
    let (code, heading, explanation) = describe(status);
    let body = match kind {
        RequestKind::Api => Json(json!({
            "error": code,
            "message": explanation,
            "request_id": request_id,
        }))
        .into_response(),
        RequestKind::Browser => render(&ErrorPage {
            chrome: Chrome::anonymous_unknown(site, heading),
            status: status.as_u16(),
            heading,
            explanation,
            detail: None,
            back: None,
            request_id: request_id.to_owned(),
        }),
    };
    let (body_parts, body) = body.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(content_type) = body_parts.headers.get(header::CONTENT_TYPE) {
        parts
            .headers
            .insert(header::CONTENT_TYPE, content_type.clone());
    }
    parts
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Response::from_parts(parts, body)
}

/// The page (or JSON) for input that `TextQuery`, `TextForm` or `SignedForm` refused:
/// which field, what is wrong with it, and a link back to the page or form.
pub fn refused_input(
    kind: RequestKind,
    site: &Site,
    request_id: &str,
    status: StatusCode,
    input: &BadInput,
    back: &str,
) -> Response {
    let (code, heading, _) = describe(status);
    let detail = input.message();
    let mut response = match kind {
        RequestKind::Api => (
            status,
            Json(json!({
                "error": code,
                "field": input.field,
                "message": detail,
                "request_id": request_id,
            })),
        )
            .into_response(),
        RequestKind::Browser => {
            let mut page = render(&ErrorPage {
                chrome: Chrome::anonymous_unknown(site, heading),
                status: status.as_u16(),
                heading,
                explanation: "Nothing was changed. Go back, correct it and try again.",
                detail: Some(detail),
                back: Some(back.to_owned()),
                request_id: request_id.to_owned(),
            });
            if page.status().is_success() {
                *page.status_mut() = status;
            }
            page
        }
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.extensions_mut().insert(Rendered);
    response
}

pub async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

/// A panic becomes a plain 500 here; `finish` turns it into the friendly page.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(non-string panic)");
    tracing::error!(panic = message, "request handler panicked");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}
