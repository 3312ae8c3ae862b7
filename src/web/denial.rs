//! The 401 and 403 answers, for browsers and for API clients. Every one is logged with
//! its precise reason (the request id comes from the request's span).

use std::sync::Arc;

use askama::Template;
use axum::{
    Json,
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use serde_json::json;

use super::{Chrome, Rendered, Site, negotiate::RequestKind, render_status};
use crate::{
    audit::{AuditEvent, AuditLog, RequestMeta},
    auth::{NotSignedIn, Notice, Role, SessionUser, next::safe_next},
};

/// The challenge on every 401. Not `Basic`, so browsers show no password dialog.
pub const WWW_AUTHENTICATE: &str = r#"Session realm="portcullis""#;

fn site(parts: &Parts) -> Arc<Site> {
    parts
        .extensions
        .get::<Arc<Site>>()
        .cloned()
        .unwrap_or_else(|| {
            Arc::new(Site {
                css_href: "/static/app.css".into(),
                support: None,
                demo: false,
            })
        })
}

/// Queues an audit event for this request (the log travels in the request extensions).
pub fn record(parts: &Parts, event: impl FnOnce(RequestMeta) -> AuditEvent) {
    if let Some(audit) = parts.extensions.get::<AuditLog>() {
        audit.record(event(RequestMeta::from_parts(parts)));
    }
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
    let referer = parts.headers.get(header::REFERER)?.to_str().ok()?;
    let host = parts.headers.get(header::HOST)?.to_str().ok()?;
    let rest = referer
        .strip_prefix("http://")
        .or_else(|| referer.strip_prefix("https://"))?;
    let path = rest.strip_prefix(host)?;
    safe_next(path)
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
    tracing::warn!(
        status = 401,
        reason = reason.as_str(),
        method = %parts.method,
        path = %parts.uri.path(),
        "denied: not signed in"
    );
    record(parts, |meta| {
        AuditEvent::new("denied", meta)
            .status(401)
            .reason(reason.as_str())
    });
    metrics::counter!("portcullis_denials_total", "status" => "401", "reason" => reason.as_str())
        .increment(1);
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
    request: Option<super::access::AccessRequestView>,
    request_pending: bool,
    request_id: String,
}

/// The 403 case: signed in, but the role is too low. Says who you are, what the page
/// needs, and that signing in again will not help.
pub async fn forbidden(
    parts: &Parts,
    user: &SessionUser,
    required: Role,
    state: &super::AppState,
) -> Response {
    tracing::warn!(
        status = 403,
        reason = "insufficient_role",
        user = %user.username,
        role = %user.role,
        required = %required,
        method = %parts.method,
        path = %parts.uri.path(),
        "denied: insufficient role"
    );
    metrics::counter!("portcullis_denials_total", "status" => "403", "reason" => "insufficient_role").increment(1);
    record(parts, |meta| {
        AuditEvent::new("denied", meta)
            .status(403)
            .reason("insufficient_role")
            .username(&user.username)
            .detail(json!({ "required": required, "role": user.role }))
    });
    let response = match kind(parts) {
        RequestKind::Browser => {
            // What happened to the person's last request for this role, if any.
            let request = match super::access::latest(&state.pool, user.user_id, required).await {
                Ok(request) => request,
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
                    request_id: parts
                        .headers
                        .get(super::REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned(),
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
    tracing::warn!(
        status = 403,
        reason,
        user = user.map(|u| u.username.as_str()).unwrap_or("-"),
        method = %parts.method,
        path = %parts.uri.path(),
        "denied: CSRF check failed"
    );
    metrics::counter!("portcullis_denials_total", "status" => "403", "reason" => reason)
        .increment(1);
    record(parts, |meta| {
        let event = AuditEvent::new("denied", meta).status(403).reason(reason);
        match user {
            Some(user) => event.username(&user.username),
            None => event,
        }
    });
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
