//! The guard every group of routes sits behind: who is asking (one query when a session
//! cookie is present, none otherwise) and, for protected pages, whether their role is
//! enough. It answers the 401 and 403 itself; handlers behind it take [`CurrentUser`] or
//! [`MaybeUser`].

use std::sync::Arc;

use axum::{
    Json,
    extract::{FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use serde_json::json;
use tower_sessions::Session;

use super::{
    Rendered,
    denial::{self, Denial},
    negotiate::RequestKind,
};
use crate::{
    audit::AuditEvent,
    auth::{Authentication, NotSignedIn, Role, SessionUser, session},
    error::AppError,
    web::AppState,
};

/// What a group of routes asks of a request: whether to load the user's session list too
/// (the account page lists them), and which role, if any, the routes need.
#[derive(Clone)]
pub struct Gate {
    pub state: AppState,
    pub required: Option<Role>,
    pub with_sessions: bool,
    /// Whether `--require-mfa` applies to these routes (everything protected but the
    /// account pages, where enrolment happens).
    pub enforce_mfa: bool,
}

/// Middleware: resolves the request's [`Authentication`], stores it in the extensions,
/// and — when the routes need a role — answers the 401 or 403 itself. One layer instead of
/// two: each axum middleware layer costs a boxed future and a service clone per request.
pub async fn gate(
    State(gate): State<Gate>,
    session: Session,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let authentication = match authenticate(&gate, &session, &parts).await {
        Ok(authentication) => authentication,
        Err(err) => return err.into_response(),
    };
    let Some(required) = gate.required else {
        let mut request = Request::from_parts(parts, body);
        request.extensions_mut().insert(authentication);
        return next.run(request).await;
    };
    match authentication {
        Authentication::SignedIn(user)
            if gate.enforce_mfa
                && gate.state.settings.require_mfa.covers(user.role)
                && !user.has_second_factor =>
        {
            second_factor_required(&parts, &user).await
        }
        Authentication::SignedIn(user) if user.role.satisfies(required) => {
            let mut request = Request::from_parts(parts, body);
            request
                .extensions_mut()
                .insert(Authentication::SignedIn(user));
            next.run(request).await
        }
        Authentication::SignedIn(user) => {
            denial::forbidden(&parts, &user, required, &gate.state).await
        }
        Authentication::NotSignedIn(reason) => denial::unauthenticated(&parts, reason),
    }
}

/// Who holds this request's session; the first request to see a session expired records
/// the expiry in the audit trail.
async fn authenticate(
    gate: &Gate,
    session: &Session,
    parts: &Parts,
) -> Result<Authentication, AppError> {
    let state = &gate.state;
    let Some(token) = session.id() else {
        let cookie = state.settings.session_cookie_name();
        return Ok(Authentication::NotSignedIn(
            if has_session_cookie(&parts.headers, cookie) {
                NotSignedIn::TamperedCookie
            } else {
                NotSignedIn::NoSession
            },
        ));
    };
    let (authentication, newly_expired) = session::resolve(
        &state.pool,
        &state.csrf,
        &state.settings,
        token,
        gate.with_sessions,
    )
    .await?;
    if let Some(expired) = newly_expired {
        denial::record(parts, |meta| {
            AuditEvent::new("session_expired", meta)
                .reason(expired.reason.as_str())
                .username(&expired.username)
        })
        .await;
    }
    Ok(authentication)
}

/// The policy (`--require-mfa`) wants a second factor this user has not set up: a browser
/// goes to enrolment, with a notice saying why; a program gets a 403 saying so.
async fn second_factor_required(parts: &Parts, user: &SessionUser) -> Response {
    denial::deny_user(
        parts,
        Denial::new(
            StatusCode::FORBIDDEN,
            "second_factor_required",
            "two-step verification required",
        ),
        &user.username,
        None,
    )
    .await;
    let mut response = match RequestKind::of(&parts.method, &parts.uri, &parts.headers) {
        RequestKind::Browser => Redirect::to(ENROL_REQUIRED).into_response(),
        RequestKind::Api => (
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": "forbidden",
                "reason": "second_factor_required",
                "message": "Turn on two-step verification on your account page first.",
                "enrol_url": "/account/two-factor",
            })),
        )
            .into_response(),
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.extensions_mut().insert(Rendered);
    response
}

/// Where `--require-mfa` sends people without a second factor.
pub const ENROL_REQUIRED: &str = "/account/two-factor?required=1";

fn has_session_cookie(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .any(|pair| pair.trim_start().split('=').next() == Some(name))
}

/// Extractor for handlers behind a role guard: the signed-in user.
pub struct CurrentUser(pub Arc<SessionUser>);

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Authentication>() {
            Some(Authentication::SignedIn(user)) => Ok(CurrentUser(Arc::clone(user))),
            Some(Authentication::NotSignedIn(reason)) => {
                Err(denial::unauthenticated(parts, *reason))
            }
            None => Err(AppError::Internal(anyhow::anyhow!(
                "CurrentUser used on a route without the authenticate middleware"
            ))
            .into_response()),
        }
    }
}

/// Extractor for public pages: the signed-in user, if any.
pub struct MaybeUser(pub Option<Arc<SessionUser>>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeUser(
            parts
                .extensions
                .get::<Authentication>()
                .and_then(|auth| auth.user().cloned()),
        ))
    }
}
