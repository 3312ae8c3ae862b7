//! Who is making this request: one query per request that carries a session cookie.
//!
//! The `authenticate` middleware reads the session row joined to its user in a single
//! round-trip and classifies the result precisely (signed in; or why not). Role changes,
//! disabling and revocation therefore take effect on the very next request, on every
//! instance, with no cache to go stale. Requests without a cookie cost no query at all.

use std::sync::Arc;

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{HeaderMap, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use time::OffsetDateTime;
use tower_sessions::{Session, session::Id};

use super::{Role, store::token_hash};
use crate::{error::AppError, web::AppState};

#[derive(Debug, Clone)]
pub struct SessionUser {
    /// The session's public handle (row id), safe to show and to post in forms.
    pub session_id: i64,
    pub token: Id,
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub idle_expires_at: OffsetDateTime,
    pub absolute_expires_at: OffsetDateTime,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub prev_sign_in_at: Option<OffsetDateTime>,
    pub prev_sign_in_ip: Option<String>,
    /// This session's CSRF token for the forms on the page.
    pub csrf_token: String,
}

/// Why a request is not signed in: the reasons behind every 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSignedIn {
    NoSession,
    /// A session cookie that is not a well-formed session id.
    TamperedCookie,
    /// A well-formed id with no row: signed out, swept, or guessed.
    UnknownSession,
    ExpiredIdle,
    ExpiredAbsolute,
    Revoked,
    UserDisabled,
}

/// What the sign-in page tells the person, from the closed set of notices it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    SignInRequired,
    Expired,
    Revoked,
    SignedOut,
}

impl Notice {
    pub fn key(self) -> &'static str {
        match self {
            Notice::SignInRequired => "required",
            Notice::Expired => "expired",
            Notice::Revoked => "revoked",
            Notice::SignedOut => "signed_out",
        }
    }

    pub fn from_key(key: &str) -> Option<Notice> {
        [
            Notice::SignInRequired,
            Notice::Expired,
            Notice::Revoked,
            Notice::SignedOut,
        ]
        .into_iter()
        .find(|notice| notice.key() == key)
    }

    pub fn message(self) -> &'static str {
        match self {
            Notice::SignInRequired => "Please sign in to continue.",
            Notice::Expired => "Your session has expired, please sign in again.",
            Notice::Revoked => {
                "You were signed out of this session. Sign in again; if you did not expect \
                 this, contact your administrator."
            }
            Notice::SignedOut => "You have been signed out.",
        }
    }
}

impl NotSignedIn {
    /// The precise reason, for logs and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            NotSignedIn::NoSession => "no_session",
            NotSignedIn::TamperedCookie => "tampered_cookie",
            NotSignedIn::UnknownSession => "unknown_session",
            NotSignedIn::ExpiredIdle => "expired_idle",
            NotSignedIn::ExpiredAbsolute => "expired_absolute",
            NotSignedIn::Revoked => "revoked",
            NotSignedIn::UserDisabled => "user_disabled",
        }
    }

    /// The reason told to API clients. A disabled account reads as "revoked": the holder of
    /// a session learns that it ended, not why.
    pub fn client_reason(self) -> &'static str {
        match self {
            NotSignedIn::NoSession => "no_session",
            NotSignedIn::TamperedCookie | NotSignedIn::UnknownSession => "invalid_session",
            NotSignedIn::ExpiredIdle => "session_expired_idle",
            NotSignedIn::ExpiredAbsolute => "session_expired_absolute",
            NotSignedIn::Revoked | NotSignedIn::UserDisabled => "session_revoked",
        }
    }

    pub fn notice(self) -> Notice {
        match self {
            NotSignedIn::NoSession | NotSignedIn::TamperedCookie | NotSignedIn::UnknownSession => {
                Notice::SignInRequired
            }
            NotSignedIn::ExpiredIdle | NotSignedIn::ExpiredAbsolute => Notice::Expired,
            NotSignedIn::Revoked | NotSignedIn::UserDisabled => Notice::Revoked,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Authentication {
    SignedIn(Arc<SessionUser>),
    NotSignedIn(NotSignedIn),
}

impl Authentication {
    pub fn user(&self) -> Option<&Arc<SessionUser>> {
        match self {
            Authentication::SignedIn(user) => Some(user),
            Authentication::NotSignedIn(_) => None,
        }
    }
}

/// Middleware: resolves the request's [`Authentication`] and stores it in the extensions.
pub async fn authenticate(
    State(state): State<AppState>,
    session: Session,
    mut request: Request,
    next: Next,
) -> Response {
    let authentication = match resolve(&state, &session, request.headers()).await {
        Ok(authentication) => authentication,
        Err(err) => return err.into_response(),
    };
    request.extensions_mut().insert(authentication);
    next.run(request).await
}

fn has_session_cookie(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .any(|pair| pair.trim_start().split('=').next() == Some(name))
}

async fn resolve(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
) -> Result<Authentication, AppError> {
    use Authentication::NotSignedIn as Not;
    let Some(token) = session.id() else {
        let cookie = state.settings.session_cookie_name();
        return Ok(Not(if has_session_cookie(headers, cookie) {
            NotSignedIn::TamperedCookie
        } else {
            NotSignedIn::NoSession
        }));
    };
    let row = sqlx::query!(
        r#"
        SELECT s.id, s.user_id, s.created_at, s.last_seen_at, s.idle_expires_at,
               s.absolute_expires_at, s.revoked_at, s.ip, s.user_agent,
               s.prev_sign_in_at, s.prev_sign_in_ip,
               u.username, u.role AS "role: Role", u.disabled_at, now() AS "now!"
        FROM sessions s JOIN users u ON u.id = s.user_id
        WHERE s.token_hash = $1
        "#,
        token_hash(token),
    )
    .fetch_optional(&state.pool)
    .await?;
    let Some(row) = row else {
        return Ok(Not(NotSignedIn::UnknownSession));
    };
    // The database's clock decides, so instances with skewed clocks agree.
    let now = row.now;
    if row.disabled_at.is_some() {
        return Ok(Not(NotSignedIn::UserDisabled));
    }
    if row.revoked_at.is_some() {
        return Ok(Not(NotSignedIn::Revoked));
    }
    if now >= row.absolute_expires_at {
        return Ok(Not(NotSignedIn::ExpiredAbsolute));
    }
    if now >= row.idle_expires_at {
        return Ok(Not(NotSignedIn::ExpiredIdle));
    }
    let mut user = SessionUser {
        session_id: row.id,
        token,
        user_id: row.user_id,
        username: row.username,
        role: row.role,
        created_at: row.created_at,
        last_seen_at: row.last_seen_at,
        idle_expires_at: row.idle_expires_at,
        absolute_expires_at: row.absolute_expires_at,
        ip: row.ip,
        user_agent: row.user_agent,
        prev_sign_in_at: row.prev_sign_in_at,
        prev_sign_in_ip: row.prev_sign_in_ip,
        csrf_token: state.csrf.session_token(token),
    };
    if now - user.last_seen_at >= state.settings.refresh_after() {
        refresh(state, &mut user).await?;
    }
    Ok(Authentication::SignedIn(Arc::new(user)))
}

/// Slides the idle deadline. Written only when a tenth of the idle window (at most a
/// minute) has passed since the last write, so reads stay reads.
async fn refresh(state: &AppState, user: &mut SessionUser) -> Result<(), AppError> {
    let idle = state.settings.idle_timeout.whole_microseconds() as f64 / 1e6;
    let refreshed = sqlx::query!(
        r#"
        UPDATE sessions
        SET last_seen_at = now(),
            idle_expires_at = least(now() + make_interval(secs => $2), absolute_expires_at)
        WHERE id = $1 AND revoked_at IS NULL
        RETURNING last_seen_at, idle_expires_at
        "#,
        user.session_id,
        idle,
    )
    .fetch_optional(&state.pool)
    .await?;
    if let Some(row) = refreshed {
        user.last_seen_at = row.last_seen_at;
        user.idle_expires_at = row.idle_expires_at;
    }
    Ok(())
}

/// Extractor for handlers behind a role guard: the signed-in user.
pub struct CurrentUser(pub Arc<SessionUser>);

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Authentication>() {
            Some(Authentication::SignedIn(user)) => Ok(CurrentUser(Arc::clone(user))),
            Some(Authentication::NotSignedIn(reason)) => {
                Err(crate::web::denial::unauthenticated(parts, *reason))
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
