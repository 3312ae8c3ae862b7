//! The guard every group of routes sits behind: who is asking (one query when a session
//! cookie is present, none otherwise) and, for protected pages, whether their role is
//! enough. It answers the 401 and 403 itself; handlers behind it take [`CurrentUser`] or
//! [`MaybeUser`].

use std::{convert::Infallible, future::Future, ops::ControlFlow, sync::Arc};

use axum::{
    Json,
    extract::{FromRequestParts, Request},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use serde_json::json;
use tower::Service;
use tower_sessions::{
    Expiry, Session,
    cookie::{Cookie, SameSite},
    session::Id,
};

use super::{
    Rendered,
    denial::{self, Denial},
    frame::kind_of,
    layer::{self, Wrap},
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
pub struct Gate {
    pub state: AppState,
    pub required: Option<Role>,
    pub lookup: session::Lookup,
    /// Whether `--require-mfa` applies to these routes (everything protected but the
    /// account pages, where enrolment happens).
    pub enforce_mfa: bool,
}

impl Wrap for Arc<Gate> {
    /// The request's session cookie, read once.
    type Checked = SessionCookie;

    /// Without a session cookie to look up, a protected route's answer is known at once:
    /// the 401 that [`gate`] would give, without its future. Every request of a bot for a
    /// protected page takes this way.
    fn check(&self, request: &mut Request) -> ControlFlow<Response, SessionCookie> {
        let cookie = session_cookie(request.headers(), self.state.settings.session_cookie_name());
        match cookie {
            SessionCookie::Missing(reason) if self.required.is_some() => {
                let (parts, _) = std::mem::take(request).into_parts();
                ControlFlow::Break(denial::unauthenticated(&parts, reason))
            }
            _ => ControlFlow::Continue(cookie),
        }
    }

    fn wrap<S>(
        self,
        request: Request,
        cookie: SessionCookie,
        inner: S,
    ) -> impl Future<Output = Response> + Send
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send,
    {
        gate(self, request, cookie, inner)
    }
}

/// Middleware: resolves the request's [`Authentication`] (from the session cookie that
/// `check` read, see [`session_cookie`]), stores it in the extensions,
/// and — when the routes need a role — answers the 401 or 403 itself. One layer instead of
/// two, and a [`Wrap`] rather than axum's `from_fn` (see `layer.rs`): each middleware
/// layer costs boxes and moves per request.
async fn gate<S>(gate: Arc<Gate>, request: Request, cookie: SessionCookie, inner: S) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let (parts, body) = request.into_parts();
    // The lookup and the token's re-issue are boxed, only when they happen: this future is
    // copied whole each time it moves, on every request, and would otherwise be as large
    // as theirs (`start` in frame.rs; benches/ANALYSIS.md).
    let authentication = match cookie {
        SessionCookie::Missing(reason) => Authentication::NotSignedIn(reason),
        SessionCookie::Id(token) => {
            let token = Id(i128::from_le_bytes(token));
            match Box::pin(authenticate(&gate, &parts, token)).await {
                Ok(authentication) => authentication,
                Err(err) => return err.into_response(),
            }
        }
    };
    let cookie_expires = remembered_cookie_expires(&gate.state, &authentication);
    // Present where the session layer wraps the routes (not on the read-only hot pages).
    let session = parts.extensions.get::<Session>().cloned();
    let (authentication, reissued) = if reissue_due(&parts, &authentication) {
        match Box::pin(reissue(&gate.state, authentication)).await {
            Ok(kept) => kept,
            Err(err) => return err.into_response(),
        }
    } else {
        (authentication, None)
    };
    let mut response = answer(&gate, parts, body, authentication, inner).await;
    if let Some(cookie) = reissued {
        // On every answer, a 403 included: the old token no longer works.
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    if let (Some(expires), Some(session)) = (cookie_expires, session)
        && session.is_modified()
    {
        // The session layer is about to write the cookie again (a new id after
        // re-authentication or a password change): it keeps its lifetime. Only then: setting
        // an expiry marks the session changed, which would cost a write on every request.
        session.set_expiry(Some(Expiry::AtDateTime(expires)));
    }
    response
}

/// When a remembered session's cookie should expire: past the session's end by the
/// tombstone period, so someone returning after it ended is told "your session has
/// expired" rather than "please sign in". `None` for other sessions (browser-session
/// cookies).
fn remembered_cookie_expires(
    state: &AppState,
    authentication: &Authentication,
) -> Option<time::OffsetDateTime> {
    match authentication {
        Authentication::SignedIn(user) if user.remembered => {
            Some(user.absolute_expires_at + state.settings.session_tombstone)
        }
        _ => None,
    }
}

async fn answer<S>(
    gate: &Gate,
    parts: Parts,
    body: axum::body::Body,
    authentication: Authentication,
    inner: S,
) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let Some(required) = gate.required else {
        let mut request = Request::from_parts(parts, body);
        request.extensions_mut().insert(authentication);
        return layer::call(inner, request).await;
    };
    match authentication {
        Authentication::SignedIn(user)
            if gate.enforce_mfa
                && gate.state.settings.require_mfa.covers(user.role)
                && !user.has_second_factor =>
        {
            // Rare answers are boxed: see `denial::cross_origin` in `frame.rs`.
            Box::pin(second_factor_required(&parts, &user)).await
        }
        Authentication::SignedIn(user) if user.role.satisfies(required) => {
            let mut request = Request::from_parts(parts, body);
            request
                .extensions_mut()
                .insert(Authentication::SignedIn(user));
            layer::call(inner, request).await
        }
        Authentication::SignedIn(user) => {
            Box::pin(denial::forbidden(&parts, &user, required, &gate.state)).await
        }
        Authentication::NotSignedIn(reason) => denial::unauthenticated(&parts, reason),
    }
}

/// Whether this request re-issues the session's token: a page view (GET) of a remembered
/// session ("keep me signed in") whose token is a day old.
fn reissue_due(parts: &Parts, authentication: &Authentication) -> bool {
    matches!(authentication, Authentication::SignedIn(user) if user.reissue_due)
        && parts.method == Method::GET
}

/// Re-issues the token of a session [`reissue_due`] says is due (`session::reissue`).
/// Returns the user with the new token (and the CSRF token that goes with it, for the
/// page's forms) and the `Set-Cookie` header to send.
async fn reissue(
    state: &AppState,
    authentication: Authentication,
) -> Result<(Authentication, Option<HeaderValue>), AppError> {
    let Authentication::SignedIn(user) = &authentication else {
        return Ok((authentication, None));
    };
    let cookie_expires = user.absolute_expires_at + state.settings.session_tombstone;
    let Some(token) = session::reissue(&state.pool, user).await? else {
        return Ok((authentication, None));
    };
    let cookie = Cookie::build((state.settings.session_cookie_name(), token.to_string()))
        .http_only(true)
        .secure(state.settings.secure_cookies)
        .same_site(SameSite::Lax)
        .path("/")
        // Like the session layer's own cookies: Max-Age (and Expires for old browsers).
        .max_age(cookie_expires - time::OffsetDateTime::now_utc())
        .expires(cookie_expires)
        .build();
    let Ok(header) = HeaderValue::from_str(&cookie.to_string()) else {
        return Ok((authentication, None));
    };
    tracing::info!(user = %user.username, "remembered session: token re-issued");
    let mut renewed = SessionUser::clone(user);
    renewed.token = token;
    renewed.csrf_token = state.csrf.session_token(token);
    renewed.reissue_due = false;
    Ok((Authentication::SignedIn(Arc::new(renewed)), Some(header)))
}

/// Who holds the session `token` (from this request's cookie); the first request to see
/// a session expired records the expiry in the audit trail.
async fn authenticate(gate: &Gate, parts: &Parts, token: Id) -> Result<Authentication, AppError> {
    let state = &gate.state;
    let (authentication, newly_expired) = session::resolve(
        &state.pool,
        &state.csrf,
        &state.settings,
        token,
        gate.lookup,
    )
    .await?;
    if let Some(expired) = newly_expired {
        Box::pin(denial::record(parts, |meta| {
            AuditEvent::new("session_expired", meta)
                .reason(expired.reason.as_str())
                .username(&expired.username)
        }))
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
    let mut response = match kind_of(parts) {
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
pub enum SessionCookie {
    /// No session id to look up: no cookie (`NoSession`), or one that is not a well-formed
    /// id (`TamperedCookie`).
    Missing(NotSignedIn),
    /// A well-formed session id, as its bytes: the guard's future carries this, and an
    /// `Id` (an `i128`) would align all 2 KB of it to 16 bytes, which mimalloc serves from
    /// a slower path than a word's alignment (`main.rs`).
    Id([u8; 16]),
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
        return SessionCookie::Missing(NotSignedIn::NoSession);
    };
    value
        .parse::<Id>()
        .map_or(SessionCookie::Missing(NotSignedIn::TamperedCookie), |id| {
            SessionCookie::Id(id.0.to_le_bytes())
        })
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
        assert_eq!(
            session_cookie(&cookies(&[]), name),
            SessionCookie::Missing(NotSignedIn::NoSession)
        );
        assert_eq!(
            session_cookie(&cookies(&["other=1; portcullis_sessionx=2"]), name),
            SessionCookie::Missing(NotSignedIn::NoSession)
        );
        assert_eq!(
            session_cookie(&cookies(&[&format!("a=1;  {name} = {id} ; b=2")]), name),
            SessionCookie::Id(id.0.to_le_bytes())
        );
        assert_eq!(
            session_cookie(&cookies(&[&format!("{name}=\"{id}\"")]), name),
            SessionCookie::Missing(NotSignedIn::TamperedCookie)
        );
        // Several: the last one counts (tower-cookies' jar keeps the last of a name).
        let other = Id::default();
        assert_eq!(
            session_cookie(
                &cookies(&[&format!("{name}={other}"), &format!("{name}={id}")]),
                name
            ),
            SessionCookie::Id(id.0.to_le_bytes())
        );
        assert_eq!(
            session_cookie(&cookies(&[&format!("{name}=not-an-id")]), name),
            SessionCookie::Missing(NotSignedIn::TamperedCookie)
        );
        assert_eq!(
            session_cookie(&cookies(&[&format!("{name}=")]), name),
            SessionCookie::Missing(NotSignedIn::TamperedCookie)
        );
    }
}
