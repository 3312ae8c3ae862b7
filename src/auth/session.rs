//! Who holds a session: one query per request that carries a session cookie.
//!
//! `resolve` reads the session row joined to its user in a single round-trip and classifies
//! the result precisely (signed in; or why not). Role changes, disabling and revocation
//! therefore take effect on the very next request, on every instance, with no cache to go
//! stale. The web guard (`web::http::guard`) calls it only when a cookie carries an id.

use std::sync::Arc;

use sqlx::PgPool;
use time::OffsetDateTime;
use tower_sessions::session::Id;

use super::{Role, csrf::CsrfKey, store::token_hash};
use crate::config::Settings;

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
    /// When the holder last proved who they are (sign-in or re-authentication).
    pub authenticated_at: OffsetDateTime,
    /// Whether that was within `--reauth-window` (by the database's clock): sensitive
    /// changes need it.
    pub recently_authenticated: bool,
    /// Whether the user has a second factor: an authenticator app or a passkey
    /// (`--require-mfa` asks for one).
    pub has_second_factor: bool,
    /// How this session signed in ("password", "password+totp", "password+recovery",
    /// "password+passkey", "passkey").
    pub auth_method: Option<String>,
    /// Recovery codes left and the last use of one (account page only, like `sessions`).
    pub recovery: Option<RecoveryStatus>,
    /// This session's CSRF token for the forms on the page.
    pub csrf_token: String,
    /// The IANA time zone the user chose for pages (`users.time_zone`); `None`: UTC.
    pub time_zone: Option<String>,
    /// The user's live sessions (this one included), newest activity first; loaded only
    /// where a page lists them (`authenticate_with_sessions`).
    pub sessions: Vec<SessionSummary>,
    /// The user's recent access requests (same condition as `sessions`).
    pub access_requests: Vec<AccessRequestSummary>,
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
    /// Revoked by a newer sign-in beyond `--max-sessions`.
    SessionLimit,
    UserDisabled,
}

/// What the sign-in page tells the person, from the closed set of notices it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    SignInRequired,
    Expired,
    /// A form was posted after its session ended.
    FormExpired,
    Revoked,
    SignedOut,
    /// The first administrator was just created at /setup.
    SetupDone,
    /// The second step of a sign-in was not completed in time (or its note is invalid).
    SecondStepExpired,
    /// A newer sign-in took this session's place (`--max-sessions`).
    SessionLimit,
}

impl Notice {
    pub fn key(self) -> &'static str {
        match self {
            Notice::SignInRequired => "required",
            Notice::Expired => "expired",
            Notice::FormExpired => "form_expired",
            Notice::Revoked => "revoked",
            Notice::SignedOut => "signed_out",
            Notice::SetupDone => "setup_done",
            Notice::SecondStepExpired => "second_step_expired",
            Notice::SessionLimit => "session_limit",
        }
    }

    pub fn from_key(key: &str) -> Option<Notice> {
        [
            Notice::SignInRequired,
            Notice::Expired,
            Notice::FormExpired,
            Notice::Revoked,
            Notice::SignedOut,
            Notice::SetupDone,
            Notice::SecondStepExpired,
            Notice::SessionLimit,
        ]
        .into_iter()
        .find(|notice| notice.key() == key)
    }

    pub fn message(self) -> &'static str {
        match self {
            Notice::SignInRequired => "Please sign in to continue.",
            Notice::Expired => "Your session has expired, please sign in again.",
            Notice::FormExpired => {
                "Your session expired before the form was sent; sign in and send it again."
            }
            Notice::Revoked => {
                "You were signed out of this session. Sign in again; if you did not expect \
                 this, contact your administrator."
            }
            Notice::SignedOut => "You have been signed out.",
            Notice::SetupDone => "The administrator account was created. Sign in with it.",
            Notice::SecondStepExpired => {
                "Your sign-in was not completed in time. Sign in again with your password."
            }
            Notice::SessionLimit => {
                "You were signed out because you signed in on another device. Sign in again \
                 to continue here (that signs out your oldest session instead)."
            }
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
            NotSignedIn::SessionLimit => "session_limit",
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
            NotSignedIn::SessionLimit => "session_limit",
        }
    }

    /// The notice for a page view (`form: false`) or a submitted form (`form: true`).
    pub fn notice(self, form: bool) -> Notice {
        match self {
            NotSignedIn::Revoked | NotSignedIn::UserDisabled => Notice::Revoked,
            NotSignedIn::SessionLimit => Notice::SessionLimit,
            _ if form => Notice::FormExpired,
            NotSignedIn::NoSession | NotSignedIn::TamperedCookie | NotSignedIn::UnknownSession => {
                Notice::SignInRequired
            }
            NotSignedIn::ExpiredIdle | NotSignedIn::ExpiredAbsolute => Notice::Expired,
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

/// One of the user's live sessions, as listed on the account and admin pages.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SessionSummary {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// How it signed in (`sessions.auth_method`).
    #[serde(default)]
    pub auth_method: Option<String>,
}

/// The user's recovery codes, as the account page reports them, with which second factors
/// they have (an authenticator app, how many passkeys): loaded by the same single query.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RecoveryStatus {
    pub codes_left: i64,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub totp: bool,
    #[serde(default)]
    pub passkeys: i64,
}

/// One of the user's access requests, as the account page lists it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AccessRequestSummary {
    pub role: String,
    pub path: String,
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
    pub decided_by: Option<String>,
    pub decision_note: Option<String>,
}

/// `sessions.revoked_reason` of a session a newer sign-in displaced (`--max-sessions`).
pub const SESSION_LIMIT_REASON: &str = "session_limit";

/// A session seen expired for the first time (recorded once in the audit trail).
pub struct NewlyExpired {
    pub reason: NotSignedIn,
    pub username: String,
}

/// Who holds the session `token`; with `with_sessions`, the same query also loads the
/// user's live sessions and recent access requests (the account page lists them).
pub async fn resolve(
    pool: &PgPool,
    csrf: &CsrfKey,
    settings: &Settings,
    token: Id,
    with_sessions: bool,
) -> sqlx::Result<(Authentication, Option<NewlyExpired>)> {
    use Authentication::NotSignedIn as Not;
    let row = sqlx::query!(
        r#"
        SELECT s.id, s.user_id, s.created_at, s.last_seen_at, s.idle_expires_at,
               s.absolute_expires_at, s.revoked_at, s.ip, s.user_agent,
               s.prev_sign_in_at, s.prev_sign_in_ip, s.expiry_noticed_at,
               coalesce(s.authenticated_at, s.created_at) AS "authenticated_at!",
               s.auth_method,
               (EXISTS (SELECT 1 FROM totp_credentials t
                        WHERE t.user_id = s.user_id AND t.enabled_at IS NOT NULL)
                OR EXISTS (SELECT 1 FROM passkeys p WHERE p.user_id = s.user_id))
                   AS "has_second_factor!",
               CASE WHEN $2 THEN (
                   SELECT json_build_object(
                              'codes_left', count(*) FILTER (WHERE c.used_at IS NULL),
                              'last_used_at', max(c.used_at),
                              'totp', EXISTS (SELECT 1 FROM totp_credentials t
                                              WHERE t.user_id = s.user_id
                                                AND t.enabled_at IS NOT NULL),
                              'passkeys', (SELECT count(*) FROM passkeys p
                                           WHERE p.user_id = s.user_id))
                   FROM recovery_codes c WHERE c.user_id = s.user_id)
               END AS "recovery: sqlx::types::Json<RecoveryStatus>",
               u.username, u.role AS "role: Role", u.disabled_at, now() AS "now!",
               u.time_zone, s.revoked_reason,
               CASE WHEN $2 THEN (
                   SELECT coalesce(json_agg(json_build_object(
                              'id', o.id, 'created_at', o.created_at,
                              'last_seen_at', o.last_seen_at, 'expires_at', o.ended_at,
                              'ip', o.ip, 'user_agent', o.user_agent,
                              'auth_method', o.auth_method)
                          ORDER BY o.last_seen_at DESC), '[]'::json)
                   FROM (SELECT * FROM sessions
                         WHERE user_id = s.user_id AND ended_at > now()
                         ORDER BY last_seen_at DESC LIMIT 50) o)
               END AS "sessions: sqlx::types::Json<Vec<SessionSummary>>",
               CASE WHEN $2 THEN (
                   SELECT coalesce(json_agg(json_build_object(
                              'role', r.role, 'path', r.path, 'status', r.status,
                              'created_at', r.created_at, 'decided_at', r.decided_at,
                              'decided_by', r.decided_by, 'decision_note', r.decision_note)
                          ORDER BY r.created_at DESC), '[]'::json)
                   FROM (SELECT * FROM access_requests WHERE user_id = s.user_id
                         ORDER BY created_at DESC LIMIT 10) r)
               END AS "access_requests: sqlx::types::Json<Vec<AccessRequestSummary>>"
        FROM sessions s JOIN users u ON u.id = s.user_id
        WHERE s.token_hash = $1
        "#,
        token_hash(token),
        with_sessions,
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok((Not(NotSignedIn::UnknownSession), None));
    };
    // The database's clock decides, so instances with skewed clocks agree.
    let now = row.now;
    if row.disabled_at.is_some() {
        return Ok((Not(NotSignedIn::UserDisabled), None));
    }
    if row.revoked_at.is_some() {
        let reason = if row.revoked_reason.as_deref() == Some(SESSION_LIMIT_REASON) {
            NotSignedIn::SessionLimit
        } else {
            NotSignedIn::Revoked
        };
        return Ok((Not(reason), None));
    }
    let expired = if now >= row.absolute_expires_at {
        Some(NotSignedIn::ExpiredAbsolute)
    } else if now >= row.idle_expires_at {
        Some(NotSignedIn::ExpiredIdle)
    } else {
        None
    };
    if let Some(reason) = expired {
        let first_time = row.expiry_noticed_at.is_none() && notice_expiry(pool, row.id).await?;
        let newly = first_time.then(|| NewlyExpired {
            reason,
            username: row.username.clone(),
        });
        return Ok((Not(reason), newly));
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
        authenticated_at: row.authenticated_at,
        recently_authenticated: now - row.authenticated_at < settings.reauth_window,
        has_second_factor: row.has_second_factor,
        auth_method: row.auth_method,
        recovery: row.recovery.map(|json| json.0),
        csrf_token: csrf.session_token(token),
        time_zone: row.time_zone,
        sessions: row.sessions.map(|json| json.0).unwrap_or_default(),
        access_requests: row.access_requests.map(|json| json.0).unwrap_or_default(),
    };
    if now - user.last_seen_at >= settings.refresh_after() {
        refresh(pool, settings.idle_timeout, &mut user).await?;
    }
    Ok((Authentication::SignedIn(Arc::new(user)), None))
}

/// Marks an expired session as noticed; true if this request was the first to see it.
async fn notice_expiry(pool: &PgPool, session_id: i64) -> sqlx::Result<bool> {
    let marked = sqlx::query_scalar!(
        r#"
        UPDATE sessions SET expiry_noticed_at = now()
        WHERE id = $1 AND expiry_noticed_at IS NULL
        RETURNING id
        "#,
        session_id
    )
    .fetch_optional(pool)
    .await?;
    Ok(marked.is_some())
}

/// Slides the idle deadline. Written only when a tenth of the idle window (at most a
/// minute) has passed since the last write, so reads stay reads.
async fn refresh(
    pool: &PgPool,
    idle_timeout: time::Duration,
    user: &mut SessionUser,
) -> sqlx::Result<()> {
    let idle = idle_timeout.whole_microseconds() as f64 / 1e6;
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
    .fetch_optional(pool)
    .await?;
    if let Some(row) = refreshed {
        user.last_seen_at = row.last_seen_at;
        user.idle_expires_at = row.idle_expires_at;
    }
    Ok(())
}
