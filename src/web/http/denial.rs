//! The 401 and 403 answers, for browsers and for API clients. Every one goes through
//! [`deny`], which logs it with its precise reason (the request id comes from the request's
//! span), records it in the audit trail and counts it.

use std::sync::Arc;

use askama::Template;
use axum::{
    Json,
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use serde_json::{Value, json};

use super::{
    Chrome, Rendered, Site,
    negotiate::RequestKind,
    render_status,
    request::{self, referring_page, request_id},
};
use crate::{
    accounts::access,
    audit::AuditEvent,
    auth::{NotSignedIn, Notice, Role, SessionUser, next::safe_next},
    telemetry::metric,
    web::pages::access::AccessRequestView,
};

/// The challenge on every 401. Not `Basic`, so browsers show no password dialog.
pub const WWW_AUTHENTICATE: &str = r#"Session realm="portcullis""#;

fn site(parts: &Parts) -> Arc<Site> {
    parts
        .extensions
        .get::<Arc<super::frame::Frame>>()
        .map(|frame| &frame.site)
        .cloned()
        .unwrap_or_else(|| {
            Arc::new(Site {
                css_href: "/static/app.css".into(),
                passkeys_js_href: "/static/passkeys.js".into(),
                support: None,
                demo: false,
                public_url: None,
            })
        })
}

pub use request::record;

/// A refusal: its status, precise reason, what the log line says, and whom it concerns.
pub struct Denial {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: &'static str,
    pub username: Option<String>,
    pub detail: Option<Value>,
}

impl Denial {
    pub fn new(status: StatusCode, reason: &'static str, message: &'static str) -> Denial {
        Denial {
            status,
            reason,
            message,
            username: None,
            detail: None,
        }
    }

    pub fn user(mut self, username: Option<&str>) -> Denial {
        self.username = username.map(str::to_owned);
        self
    }

    pub fn detail(mut self, detail: Value) -> Denial {
        self.detail = Some(detail);
        self
    }
}

/// Logs, audits and counts a refusal: the one place every 401/403 is written down.
pub fn deny(parts: &Parts, denial: Denial) {
    let status = denial.status.as_u16();
    tracing::warn!(
        status,
        reason = denial.reason,
        user = denial.username.as_deref().unwrap_or("-"),
        method = %parts.method,
        path = %parts.uri.path(),
        "denied: {}",
        denial.message
    );
    metrics::counter!(metric::DENIALS, "status" => denial.status.as_str().to_owned(), "reason" => denial.reason)
        .increment(1);
    record(parts, |meta| {
        let mut event = AuditEvent::new("denied", meta)
            .status(status)
            .reason(denial.reason);
        if let Some(username) = &denial.username {
            event = event.username(username);
        }
        if let Some(detail) = denial.detail {
            event = event.detail(detail);
        }
        event
    });
}

fn kind(parts: &Parts) -> RequestKind {
    RequestKind::of(&parts.method, &parts.uri, &parts.headers)
}

fn finish(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.extensions_mut().insert(Rendered);
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
pub fn login_url(notice: Option<Notice>, next: Option<&str>) -> String {
    let mut query = Vec::new();
    if let Some(next) = next {
        query.push(("next", next));
    }
    if let Some(notice) = notice {
        query.push(("notice", notice.key()));
    }
    match serde_urlencoded::to_string(&query) {
        Ok(query) if !query.is_empty() => format!("/login?{query}"),
        _ => "/login".to_owned(),
    }
}

/// The 401 case: not signed in, for any of [`NotSignedIn`]'s reasons.
pub fn unauthenticated(parts: &Parts, reason: NotSignedIn) -> Response {
    let kind = kind(parts);
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
            Redirect::to(&login_url(Some(notice), next.as_deref())).into_response()
        }
        RequestKind::Api => {
            let mut response = (
                StatusCode::UNAUTHORIZED,
                Json(json!({
                    "error": "unauthenticated",
                    "reason": reason.client_reason(),
                    "message": notice.message(),
                    "login_url": "/login",
                })),
            )
                .into_response();
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
    deny(
        parts,
        Denial::new(
            StatusCode::FORBIDDEN,
            "insufficient_role",
            "insufficient role",
        )
        .user(Some(&user.username))
        .detail(json!({ "required": required, "role": user.role })),
    );
    let response = match kind(parts) {
        RequestKind::Browser => {
            // What happened to the person's last request for this role, if any.
            let request = match access::latest(&state.pool, user.user_id, required).await {
                Ok(request) => request.as_ref().map(AccessRequestView::from),
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
                    request_id: request_id(&parts.headers).to_owned(),
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
pub fn csrf_failed(parts: &Parts, user: Option<&SessionUser>, retry_url: &str) -> Response {
    forged(parts, user, retry_url, "csrf")
}

/// A state-changing request from another site (its `Origin` or `Referer` names another
/// host): refused even before the CSRF token is looked at. Defence in depth.
pub fn cross_origin(parts: &Parts) -> Response {
    let user = parts
        .extensions
        .get::<crate::auth::Authentication>()
        .and_then(|auth| auth.user().cloned());
    forged(parts, user.as_deref(), "/", "cross_origin")
}

fn forged(
    parts: &Parts,
    user: Option<&SessionUser>,
    retry_url: &str,
    reason: &'static str,
) -> Response {
    deny(
        parts,
        Denial::new(StatusCode::FORBIDDEN, reason, "CSRF check failed")
            .user(user.map(|u| u.username.as_str())),
    );
    let response = match kind(parts) {
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
