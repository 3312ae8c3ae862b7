//! The 401 and 403 answers, for browsers and for API clients. Every one goes through
//! [`deny`] (no known user: counted in the audit trail's per-minute counts) or
//! [`deny_user`] (a signed-in person: an audit event of its own), which log it with its
//! precise reason (the request id comes from the request's span; "not signed in" only at
//! debug level) and count it in metrics.

use std::sync::Arc;

use askama::Template;
use axum::{
    Json,
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    Chrome, Rendered, Site,
    frame::kind_of,
    negotiate::RequestKind,
    render_status,
    request::{self, referring_page, request_id},
};
use crate::{
    accounts::access,
    audit::{AnonymousDenial, AuditEvent, clip},
    auth::{NotSignedIn, Notice, Role, SessionUser, next::safe_next},
    telemetry,
    web::pages::access::AccessRequestView,
};

/// The challenge on every 401. Not `Basic`, so browsers show no password dialog.
pub const WWW_AUTHENTICATE: &str = r#"Session realm="portcullis""#;

fn site(parts: &Parts) -> Arc<Site> {
    parts
        .extensions
        .get::<super::frame::RequestFrame>()
        .map(|framed| &framed.frame.site)
        .cloned()
        .unwrap_or_else(|| {
            Arc::new(Site {
                css_href: "/static/app.css".into(),
                passkeys_js_href: "/static/passkeys.js".into(),
                copy_js_href: "/static/copy.js".into(),
                time_zone_js_href: "/static/time-zone.js".into(),
                support: None,
                demo: false,
                public_url: None,
                mail: false,
            })
        })
}

pub use request::record;

/// A refusal: its status, precise reason and what the log line says.
pub struct Denial {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: &'static str,
}

impl Denial {
    pub fn new(status: StatusCode, reason: &'static str, message: &'static str) -> Denial {
        Denial {
            status,
            reason,
            message,
        }
    }
}

/// Longest unrouted path counted (routed requests are counted by their route template).
const MAX_COUNTED_PATH: usize = 128;

fn log_and_count(parts: &Parts, denial: &Denial, username: Option<&str>) {
    // "Not signed in" is no event about anyone: every first visit to a protected page, and
    // every request of a bot, is one. It is counted exactly (metrics, the dashboard's
    // counts); a warning line per request made it the costliest step of an anonymous
    // redirect (a formatted line and a write to stderr, benches/ANALYSIS.md) and let a
    // flood fill the log. Every other refusal still logs a warning.
    if username.is_none() && denial.reason == NotSignedIn::NoSession.as_str() {
        tracing::debug!(
            status = denial.status.as_u16(),
            reason = denial.reason,
            method = %parts.method,
            path = %parts.uri.path(),
            "denied: {}",
            denial.message
        );
    } else {
        tracing::warn!(
            status = denial.status.as_u16(),
            reason = denial.reason,
            user = username.unwrap_or("-"),
            method = %parts.method,
            path = %parts.uri.path(),
            "denied: {}",
            denial.message
        );
    }
    telemetry::count_denial(denial.status.as_u16(), denial.reason);
}

/// Logs and counts a refusal of a request without a known user: every 401, and 403s
/// before anyone signed in. Counted per minute, path and network (no row of its own), so
/// a bot's flood costs a counter, not a write; the counts are exact.
pub fn deny(parts: &Parts, denial: Denial) {
    log_and_count(parts, &denial, None);
    let Some(framed) = parts.extensions.get::<super::frame::RequestFrame>() else {
        return;
    };
    let clipped;
    let path = match &framed.route {
        Some(route) => route.as_str(),
        None => {
            clipped = clip(parts.uri.path(), MAX_COUNTED_PATH);
            &clipped
        }
    };
    framed.frame.audit.count_denial(AnonymousDenial {
        status: denial.status.as_u16(),
        reason: denial.reason,
        path,
        ip: Some(framed.client.ip),
    });
}

/// Logs, counts and records a refusal of a signed-in person: an audit event of its own,
/// never dropped (the request waits if the audit queue is full).
pub async fn deny_user(parts: &Parts, denial: Denial, username: &str, detail: Option<Value>) {
    log_and_count(parts, &denial, Some(username));
    record(parts, |meta| {
        let event = AuditEvent::new("denied", meta)
            .status(denial.status.as_u16())
            .reason(denial.reason)
            .username(username);
        match detail {
            Some(detail) => event.detail(detail),
            None => event,
        }
    })
    .await;
}

fn finish(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Only an error's body could be replaced (`errors::finish`); a redirect skips the
    // extension map's allocation.
    if response.status().is_client_error() || response.status().is_server_error() {
        response.extensions_mut().insert(Rendered);
    }
    response
}

/// A 303 to `location`, its header map sized up front for the frame's headers
/// (`render::sized_response`).
fn see_other(location: String) -> Response {
    let Ok(location) = HeaderValue::try_from(location) else {
        // `login_url` percent-encodes everything it takes from the request.
        tracing::error!("a sign-in URL that is not a valid header value");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response =
        super::render::sized_response(header::LOCATION, location, axum::body::Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    response
}

/// Where to return after signing in: the page itself for a GET, the page the form was on
/// (same-origin `Referer`) for a form post.
fn return_to(parts: &Parts) -> Option<String> {
    if parts.method == axum::http::Method::GET || parts.method == axum::http::Method::HEAD {
        let target = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())?;
        return safe_next(&target);
    }
    referring_page(parts)
}

/// The sign-in URL for a notice and an optional return path.
///
/// Written out here rather than through `serde_urlencoded`, whose serializer took a tenth
/// of an anonymous redirect's instructions (benches/ANALYSIS.md); the encoding is the same
/// `form_urlencoded` either way (a unit test compares the two).
pub fn login_url(notice: Option<Notice>, next: Option<&str>) -> String {
    let mut url = String::with_capacity(48 + next.map_or(0, str::len));
    url.push_str("/login");
    let mut separator = '?';
    let mut pair = |name: &str, value: &str| {
        url.push(separator);
        separator = '&';
        url.push_str(name);
        url.push('=');
        url.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
    };
    if let Some(next) = next {
        pair("next", next);
    }
    if let Some(notice) = notice {
        pair("notice", notice.key());
    }
    url
}

/// The 401 case: not signed in, for any of [`NotSignedIn`]'s reasons.
pub fn unauthenticated(parts: &Parts, reason: NotSignedIn) -> Response {
    let kind = kind_of(parts);
    deny(
        parts,
        Denial::new(StatusCode::UNAUTHORIZED, reason.as_str(), "not signed in"),
    );
    let is_form =
        !(parts.method == axum::http::Method::GET || parts.method == axum::http::Method::HEAD);
    let notice = reason.notice(is_form);
    let response = match kind {
        RequestKind::Browser => {
            let next = return_to(parts);
            see_other(login_url(Some(notice), next.as_deref()))
        }
        RequestKind::Api => {
            // A typed body and a sized answer (`render::json`): every anonymous API call
            // gets this one. Its fields sorted by name, the order clients have always seen.
            #[derive(serde::Serialize)]
            struct Unauthenticated {
                error: &'static str,
                login_url: &'static str,
                message: &'static str,
                reason: &'static str,
            }
            let mut response = super::render::json(&Unauthenticated {
                error: "unauthenticated",
                login_url: "/login",
                message: notice.message(),
                reason: reason.client_reason(),
            });
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(WWW_AUTHENTICATE),
            );
            response
        }
    };
    finish(response)
}

#[derive(Template)]
#[template(path = "forbidden.html")]
struct ForbiddenPage {
    chrome: Chrome,
    username: String,
    role: Role,
    required: Role,
    path: String,
    csrf: String,
    request: Option<AccessRequestView>,
    request_pending: bool,
    request_id: String,
}

/// The 403 case: signed in, but the role is too low. Says who you are, what the page
/// needs, and that signing in again will not help.
pub async fn forbidden(
    parts: &Parts,
    user: &SessionUser,
    required: Role,
    state: &crate::web::AppState,
) -> Response {
    deny_user(
        parts,
        Denial::new(
            StatusCode::FORBIDDEN,
            "insufficient_role",
            "insufficient role",
        ),
        &user.username,
        Some(json!({ "required": required, "role": user.role })),
    )
    .await;
    let response = match kind_of(parts) {
        RequestKind::Browser => {
            // What happened to the person's last request for this role, if any.
            let request = match access::latest(&state.pool, user.user_id, required).await {
                Ok(request) => {
                    let zone = crate::display::Zone::of(user.time_zone.as_deref());
                    request.as_ref().map(|r| AccessRequestView::new(r, &zone))
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not load access requests for the 403 page");
                    None
                }
            };
            render_status(
                StatusCode::FORBIDDEN,
                &ForbiddenPage {
                    chrome: Chrome::new(&site(parts), "Access denied", Some(user)),
                    username: user.username.clone(),
                    role: user.role,
                    required,
                    path: parts.uri.path().to_owned(),
                    csrf: user.csrf_token.clone(),
                    request_pending: request.as_ref().is_some_and(|r| r.pending()),
                    request,
                    request_id: request_id(&parts.extensions).to_owned(),
                },
            )
        }
        RequestKind::Api => (
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": "forbidden",
                "reason": "insufficient_role",
                "message": format!("This needs the {required} role; you are signed in as {} ({}). \
                                    Signing in again will not help: ask an administrator.",
                                   user.username, user.role),
                "required_role": required,
                "role": user.role,
                "request_access": "/access-requests",
            })),
        )
            .into_response(),
    };
    finish(response)
}

#[derive(Template)]
#[template(path = "csrf.html")]
struct CsrfPage {
    chrome: Chrome,
    retry_url: String,
}

/// A form whose CSRF token does not check out while the session is alive (or on the
/// sign-in form): 403 "form expired, reload".
pub async fn csrf_failed(parts: &Parts, user: Option<&SessionUser>, retry_url: &str) -> Response {
    forged(parts, user, retry_url, "csrf").await
}

/// A state-changing request from another site (its `Origin` or `Referer` names another
/// host): refused even before the CSRF token is looked at. Defence in depth.
pub async fn cross_origin(parts: &Parts) -> Response {
    let user = parts
        .extensions
        .get::<crate::auth::Authentication>()
        .and_then(|auth| auth.user().cloned());
    forged(parts, user.as_deref(), "/", "cross_origin").await
}

async fn forged(
    parts: &Parts,
    user: Option<&SessionUser>,
    retry_url: &str,
    reason: &'static str,
) -> Response {
    let denial = Denial::new(StatusCode::FORBIDDEN, reason, "CSRF check failed");
    match user {
        Some(user) => deny_user(parts, denial, &user.username, None).await,
        None => deny(parts, denial),
    }
    let response = match kind_of(parts) {
        RequestKind::Browser => render_status(
            StatusCode::FORBIDDEN,
            &CsrfPage {
                chrome: Chrome::new(&site(parts), "Form expired", user),
                retry_url: retry_url.to_owned(),
            },
        ),
        RequestKind::Api => (
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": "forbidden",
                "reason": reason,
                "message": "The form expired or did not come from this site. Reload the page and try again.",
            })),
        )
            .into_response(),
    };
    finish(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_url_is_encoded_as_serde_urlencoded_encodes_it() {
        let nexts = [
            None,
            Some("/account"),
            Some("/admin/audit?event=denied&page=2"),
            Some("/a b+c%20d/é?x=1#y"),
            Some("/\u{202e}"),
        ];
        let notices = [None, Some(Notice::SignInRequired), Some(Notice::Expired)];
        for next in nexts {
            for notice in notices {
                let mut query = Vec::new();
                if let Some(next) = next {
                    query.push(("next", next));
                }
                if let Some(notice) = notice {
                    query.push(("notice", notice.key()));
                }
                let encoded = serde_urlencoded::to_string(&query).expect("encodes");
                let expected = if encoded.is_empty() {
                    "/login".to_owned()
                } else {
                    format!("/login?{encoded}")
                };
                assert_eq!(login_url(notice, next), expected, "{next:?} {notice:?}");
            }
        }
    }
}
