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
use tower_sessions::session::Id;

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

/// What a group of routes asks of a request: what to know about the session's holder
/// (the account page lists their sessions; the API needs no CSRF token), and which role,
/// if any, the routes need.
#[derive(Clone)]
pub struct Gate {
    pub state: AppState,
    pub required: Option<Role>,
    pub lookup: session::Lookup,
    /// Whether `--require-mfa` applies to these routes (everything protected but the
    /// account pages, where enrolment happens).
    pub enforce_mfa: bool,
}

/// Middleware: resolves the request's [`Authentication`] (from the session cookie, see
/// [`session_cookie`]), stores it in the extensions,
/// and — when the routes need a role — answers the 401 or 403 itself. One layer instead of
/// two: each axum middleware layer costs a boxed future and a service clone per request.
pub async fn gate(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let authentication = match authenticate(&gate, &parts).await {
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
async fn authenticate(gate: &Gate, parts: &Parts) -> Result<Authentication, AppError> {
    let state = &gate.state;
    let token = match session_cookie(&parts.headers, state.settings.session_cookie_name()) {
        SessionCookie::Absent => return Ok(Authentication::NotSignedIn(NotSignedIn::NoSession)),
        SessionCookie::Malformed => {
            return Ok(Authentication::NotSignedIn(NotSignedIn::TamperedCookie));
        }
        SessionCookie::Id(token) => token,
    };
    let (authentication, newly_expired) = session::resolve(
        &state.pool,
        &state.csrf,
        &state.settings,
        token,
        gate.lookup,
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

/// The session cookie of a request, as the guard sees it.
#[derive(Debug, PartialEq, Eq)]
enum SessionCookie {
    Absent,
    /// Present, but not a well-formed session id.
    Malformed,
    Id(Id),
}

/// Reads the session id from the `Cookie` header itself. The hot pages (the account page,
/// reports, the API) run without tower-sessions' layer, which parses every cookie into a
/// jar and sets up a `Session` per request that those pages never use; the guard needs one
/// value. It reads it as tower-cookies and tower-sessions do: pairs split on `;`, name and
/// value trimmed (quotes kept), the last of several cookies of that name winning.
fn session_cookie(headers: &HeaderMap, name: &str) -> SessionCookie {
    let value = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim())
        .next_back();
    let Some(value) = value else {
        return SessionCookie::Absent;
    };
    value
        .parse::<Id>()
        .map_or(SessionCookie::Malformed, SessionCookie::Id)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::COOKIE, HeaderValue::from_str(value).expect("value"));
        }
        headers
    }

    #[test]
    fn the_session_cookie_is_read_like_tower_cookies_reads_it() {
        let id = Id::default();
        let name = "portcullis_session";
        assert_eq!(session_cookie(&cookies(&[]), name), SessionCookie::Absent);
        assert_eq!(
            session_cookie(&cookies(&["other=1; portcullis_sessionx=2"]), name),
            SessionCookie::Absent
        );
        assert_eq!(
            session_cookie(&cookies(&[&format!("a=1;  {name} = {id} ; b=2")]), name),
            SessionCookie::Id(id)
        );
        assert_eq!(
            session_cookie(&cookies(&[&format!("{name}=\"{id}\"")]), name),
            SessionCookie::Malformed
        );
        // Several: the last one counts (tower-cookies' jar keeps the last of a name).
        let other = Id::default();
        assert_eq!(
            session_cookie(
                &cookies(&[&format!("{name}={other}"), &format!("{name}={id}")]),
                name
            ),
            SessionCookie::Id(id)
        );
        assert_eq!(
            session_cookie(&cookies(&[&format!("{name}=not-an-id")]), name),
            SessionCookie::Malformed
        );
        assert_eq!(
            session_cookie(&cookies(&[&format!("{name}=")]), name),
            SessionCookie::Malformed
        );
    }
}
