//! Who holds a session: one query per request that carries a session cookie.
//!
//! `resolve` reads the session row joined to its user in a single round-trip and classifies
//! the result precisely (signed in; or why not). Role changes, disabling and revocation
//! therefore take effect on the very next request, on every instance, with no cache to go
//! stale. The web guard (`web::http::guard`) calls it only when a cookie carries an id.

use std::{sync::Arc, time::Instant};

use sqlx::{
    Decode, PgConnection, PgPool, Postgres, Type,
    error::BoxDynError,
    postgres::{
        PgTypeInfo, PgValueRef,
        types::{PgHasArrayType, PgRecordDecoder},
    },
};
use time::OffsetDateTime;
use tower_sessions::session::Id;

use super::{Role, csrf::CsrfKey, store::token_hash};
use crate::{config::Settings, telemetry};

mod reasons;
pub use reasons::{NotSignedIn, Notice};

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
    /// This session's address and browser, and the user's sign-in before it: loaded only
    /// for the account page (`Lookup::AccountPage`), like `sessions` below; `None` elsewhere.
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
    /// (`--require-mfa` asks for one). Read from `users.has_second_factor`, which the
    /// database keeps (migration 0015).
    pub has_second_factor: bool,
    /// How this session signed in ("password", "password+totp", "password+recovery",
    /// "password+passkey", "passkey"); account page only.
    pub auth_method: Option<String>,
    /// "Keep me signed in" was ticked (`--remember-days`): a persistent cookie, and for
    /// anyone but an administrator no idle limit.
    pub remembered: bool,
    /// A remembered session whose token is over a day old: this request re-issues it
    /// (see [`reissue`]).
    pub reissue_due: bool,
    /// Recovery codes left and the last use of one (account page only, like `sessions`).
    pub recovery: Option<RecoveryStatus>,
    /// This session's CSRF token for the forms on the page (empty behind the API's gate,
    /// `Lookup::Api`: JSON has no forms).
    pub csrf_token: String,
    /// The IANA time zone the user chose for pages (`users.time_zone`); `None`: UTC.
    pub time_zone: Option<String>,
    /// The user's live sessions (this one included), newest activity first; loaded only
    /// where a page lists them (`Lookup::AccountPage`).
    pub sessions: Vec<SessionSummary>,
    /// The user's recent access requests (same condition as `sessions`).
    pub access_requests: Vec<AccessRequestSummary>,
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
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub id: i64,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// How it signed in (`sessions.auth_method`).
    pub auth_method: Option<String>,
}

/// The user's recovery codes, as the account page reports them, with which second factors
/// they have (an authenticator app, how many passkeys): loaded by the same single query.
#[derive(Debug, Clone)]
pub struct RecoveryStatus {
    pub codes_left: i64,
    pub last_used_at: Option<OffsetDateTime>,
    pub totp: bool,
    pub passkeys: i64,
}

/// One of the user's access requests, as the account page lists it.
#[derive(Debug, Clone)]
pub struct AccessRequestSummary {
    pub role: String,
    pub path: String,
    pub status: String,
    pub created_at: OffsetDateTime,
    pub decided_at: Option<OffsetDateTime>,
    pub decided_by: Option<String>,
    pub decision_note: Option<String>,
}

/// A struct read from an anonymous record (`ROW(a, b, …)` in SQL): the record's fields in
/// the order listed, each field's type checked as it is read (as `#[derive(sqlx::Type)]`
/// does for a named composite type); and its SQL type, so that an array of them
/// (`array_agg(ROW(…))`) decodes as a `Vec`. A named composite type would need a
/// migration and a type lookup per connection, for the same decoding.
macro_rules! from_anonymous_record {
    ($name:ty { $($field:ident),* $(,)? }) => {
        impl<'r> Decode<'r, Postgres> for $name {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                let mut record = PgRecordDecoder::new(value)?;
                Ok(Self { $($field: record.try_decode()?),* })
            }
        }

        impl Type<Postgres> for $name {
            fn type_info() -> PgTypeInfo {
                PgTypeInfo::with_name("record")
            }
        }

        impl PgHasArrayType for $name {
            fn array_type_info() -> PgTypeInfo {
                PgTypeInfo::with_name("_record")
            }
        }
    };
}

// The account statement's `ROW(…)`s (`fetch_with_account`), field for field.
from_anonymous_record!(SessionSummary {
    id,
    created_at,
    last_seen_at,
    expires_at,
    ip,
    user_agent,
    auth_method,
});
from_anonymous_record!(AccessRequestSummary {
    role,
    path,
    status,
    created_at,
    decided_at,
    decided_by,
    decision_note,
});

/// `sessions.revoked_reason` of a session a newer sign-in displaced (`--max-sessions`).
pub const SESSION_LIMIT_REASON: &str = "session_limit";

/// A session seen expired for the first time (recorded once in the audit trail).
pub struct NewlyExpired {
    pub reason: NotSignedIn,
    pub username: String,
}

/// The columns every signed-in request needs (both queries below select them).
struct Core {
    id: i64,
    user_id: i64,
    created_at: OffsetDateTime,
    last_seen_at: OffsetDateTime,
    idle_expires_at: OffsetDateTime,
    absolute_expires_at: OffsetDateTime,
    revoked_at: Option<OffsetDateTime>,
    expiry_noticed_at: Option<OffsetDateTime>,
    authenticated_at: OffsetDateTime,
    remembered: bool,
    token_issued_at: OffsetDateTime,
    revoked_reason: Option<String>,
    time_zone: Option<String>,
    has_second_factor: bool,
    username: String,
    role: Role,
    disabled_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
}

/// What only the account page shows.
#[derive(Default)]
struct AccountFacts {
    ip: Option<String>,
    user_agent: Option<String>,
    prev_sign_in_at: Option<OffsetDateTime>,
    prev_sign_in_ip: Option<String>,
    auth_method: Option<String>,
    recovery: Option<RecoveryStatus>,
    sessions: Vec<SessionSummary>,
    access_requests: Vec<AccessRequestSummary>,
}

macro_rules! core_of {
    ($row:ident) => {
        Core {
            id: $row.id,
            user_id: $row.user_id,
            created_at: $row.created_at,
            last_seen_at: $row.last_seen_at,
            idle_expires_at: $row.idle_expires_at,
            absolute_expires_at: $row.absolute_expires_at,
            revoked_at: $row.revoked_at,
            expiry_noticed_at: $row.expiry_noticed_at,
            authenticated_at: $row.authenticated_at,
            remembered: $row.remembered,
            token_issued_at: $row.token_issued_at,
            revoked_reason: $row.revoked_reason,
            time_zone: $row.time_zone,
            has_second_factor: $row.has_second_factor,
            username: $row.username,
            role: $row.role,
            disabled_at: $row.disabled_at,
            now: $row.now,
        }
    };
}

/// The session behind `token_hash`, as the API and every page but the account page need it.
///
/// Two fixed statements rather than one with a "load the lists too?" parameter: with that
/// parameter PostgreSQL planned the statement afresh on every request (its generic plan,
/// costed with the account page's subqueries, never beat a custom one), which was most of
/// the database's CPU per request (benches/ANALYSIS.md). Each of these is planned once per
/// connection and then reuses its plan. This one has no subquery: `has_second_factor` is a
/// column the database keeps (migration 0015), since PostgreSQL sets up a subplan per
/// probe on every execution, even one a `CASE` skips. (The API once had a statement of its
/// own to skip those probes; without them it would differ only by the time zone, a column
/// of the row already read.)
async fn fetch_core(conn: &mut PgConnection, token_hash: &[u8]) -> sqlx::Result<Option<Core>> {
    let row = sqlx::query!(
        r#"
        SELECT s.id, s.user_id, s.created_at, s.last_seen_at, s.idle_expires_at,
               s.absolute_expires_at, s.revoked_at, s.expiry_noticed_at,
               coalesce(s.authenticated_at, s.created_at) AS "authenticated_at!",
               s.remembered, s.token_issued_at, s.revoked_reason, u.time_zone,
               u.has_second_factor, u.username, u.role AS "role: Role", u.disabled_at,
               now() AS "now!"
        FROM sessions s JOIN users u ON u.id = s.user_id
        WHERE s.token_hash = $1
        "#,
        token_hash,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| core_of!(row)))
}

/// The session behind `token_hash` with everything the account page lists: the user's
/// live sessions, recent access requests and recovery codes, in the same round trip.
///
/// The two lists come as arrays of anonymous records, decoded field by field from binary
/// (`from_anonymous_record!`): built as JSON, PostgreSQL formatted every
/// timestamp as text and the app parsed it back, about 10 us of the database's CPU per
/// page here (benches/ANALYSIS.md). The recovery codes and which second factors the user
/// has come from columns the database keeps on the user's row (migrations 0015 and 0016):
/// no aggregate over the factor tables.
async fn fetch_with_account(
    conn: &mut PgConnection,
    token_hash: &[u8],
) -> sqlx::Result<Option<(Core, AccountFacts)>> {
    let row = sqlx::query!(
        r#"
        SELECT s.id, s.user_id, s.created_at, s.last_seen_at, s.idle_expires_at,
               s.absolute_expires_at, s.revoked_at, s.ip, s.user_agent,
               s.prev_sign_in_at, s.prev_sign_in_ip, s.expiry_noticed_at,
               coalesce(s.authenticated_at, s.created_at) AS "authenticated_at!",
               s.auth_method, s.remembered, s.token_issued_at, s.revoked_reason, u.time_zone,
               u.has_second_factor, u.recovery_codes_left, u.recovery_code_used_at,
               u.totp_enabled, u.passkey_count, u.username, u.role AS "role: Role",
               u.disabled_at, now() AS "now!",
               (SELECT array_agg(ROW(o.id, o.created_at, o.last_seen_at, o.ended_at, o.ip,
                                     o.user_agent, o.auth_method))
                FROM (SELECT id, created_at, last_seen_at, ended_at, ip, user_agent,
                             auth_method
                      FROM sessions
                      WHERE user_id = s.user_id AND ended_at > now()
                      ORDER BY last_seen_at DESC LIMIT 50) o)
                   AS "sessions: Vec<SessionSummary>",
               (SELECT array_agg(ROW(r.role, r.path, r.status, r.created_at, r.decided_at,
                                     r.decided_by, r.decision_note))
                FROM (SELECT role, path, status, created_at, decided_at, decided_by,
                             decision_note
                      FROM access_requests WHERE user_id = s.user_id
                      ORDER BY created_at DESC LIMIT 10) r)
                   AS "access_requests: Vec<AccessRequestSummary>"
        FROM sessions s
        JOIN users u ON u.id = s.user_id
        WHERE s.token_hash = $1
        "#,
        token_hash,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| {
        // The subqueries pick the newest by their ORDER BY; `array_agg` is not bound to
        // keep that order, so the lists are put in it here (a few elements, a stable sort).
        let mut sessions = row.sessions.unwrap_or_default();
        sessions.sort_by_key(|s| std::cmp::Reverse(s.last_seen_at));
        let mut access_requests = row.access_requests.unwrap_or_default();
        access_requests.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        let facts = AccountFacts {
            ip: row.ip,
            user_agent: row.user_agent,
            prev_sign_in_at: row.prev_sign_in_at,
            prev_sign_in_ip: row.prev_sign_in_ip,
            auth_method: row.auth_method,
            recovery: Some(RecoveryStatus {
                codes_left: i64::from(row.recovery_codes_left),
                last_used_at: row.recovery_code_used_at,
                totp: row.totp_enabled,
                passkeys: i64::from(row.passkey_count),
            }),
            sessions,
            access_requests,
        };
        (core_of!(row), facts)
    }))
}

/// What a group of routes needs to know about the session's holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A page: who, and the CSRF token its forms (at least the sign-out button) carry.
    Page,
    /// The account page: also the lists it shows (see [`SessionUser`]; those fields are
    /// empty otherwise).
    AccountPage,
    /// The JSON API: who, nothing for forms (`csrf_token` is empty).
    Api,
}

/// Who holds the session `token`, with what `lookup` asks for, in one query.
pub async fn resolve(
    pool: &PgPool,
    csrf: &CsrfKey,
    settings: &Settings,
    token: Id,
    lookup: Lookup,
) -> sqlx::Result<(Authentication, Option<NewlyExpired>)> {
    use Authentication::NotSignedIn as Not;
    let waited = Instant::now();
    let mut conn = pool.acquire().await?;
    telemetry::page_db_acquired(waited.elapsed());
    let hash = token_hash(token);
    let found = if lookup == Lookup::AccountPage {
        fetch_with_account(&mut conn, &hash).await?
    } else {
        fetch_core(&mut conn, &hash)
            .await?
            .map(|core| (core, AccountFacts::default()))
    };
    let Some((row, facts)) = found else {
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
    // "Keep me signed in" never keeps an administrator past the usual limits, even one
    // promoted after signing in: their deadlines are the ordinary ones, counted here.
    let (absolute_expires_at, idle_expires_at) = if row.remembered && row.role == Role::Admin {
        (
            row.absolute_expires_at
                .min(row.created_at + settings.absolute_timeout),
            row.idle_expires_at
                .min(row.last_seen_at + settings.idle_timeout),
        )
    } else {
        (row.absolute_expires_at, row.idle_expires_at)
    };
    let expired = if now >= absolute_expires_at {
        Some(NotSignedIn::ExpiredAbsolute)
    } else if now >= idle_expires_at {
        Some(NotSignedIn::ExpiredIdle)
    } else {
        None
    };
    if let Some(reason) = expired {
        let first_time =
            row.expiry_noticed_at.is_none() && notice_expiry(&mut conn, row.id).await?;
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
        idle_expires_at,
        absolute_expires_at,
        ip: facts.ip,
        user_agent: facts.user_agent,
        prev_sign_in_at: facts.prev_sign_in_at,
        prev_sign_in_ip: facts.prev_sign_in_ip,
        authenticated_at: row.authenticated_at,
        recently_authenticated: now - row.authenticated_at < settings.reauth_window,
        has_second_factor: row.has_second_factor,
        auth_method: facts.auth_method,
        time_zone: row.time_zone,
        remembered: row.remembered,
        reissue_due: row.remembered && now - row.token_issued_at >= REISSUE_AFTER,
        recovery: facts.recovery,
        // An HMAC per request: only where pages render forms.
        csrf_token: if lookup == Lookup::Api {
            String::new()
        } else {
            csrf.session_token(token)
        },
        sessions: facts.sessions,
        access_requests: facts.access_requests,
    };
    if now - user.last_seen_at >= settings.refresh_after() {
        let no_idle_limit = user.remembered && user.role != Role::Admin;
        refresh(&mut conn, settings.idle_timeout, no_idle_limit, &mut user).await?;
    }
    Ok((Authentication::SignedIn(Arc::new(user)), None))
}

/// Marks an expired session as noticed; true if this request was the first to see it.
async fn notice_expiry(conn: &mut PgConnection, session_id: i64) -> sqlx::Result<bool> {
    let marked = sqlx::query_scalar!(
        r#"
        UPDATE sessions SET expiry_noticed_at = now()
        WHERE id = $1 AND expiry_noticed_at IS NULL
        RETURNING id
        "#,
        session_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(marked.is_some())
}

/// Slides the idle deadline. Written only when a tenth of the idle window (at most a
/// minute) has passed since the last write, so reads stay reads. A remembered session
/// (not an administrator's) has no idle limit: its idle deadline is its absolute one.
async fn refresh(
    conn: &mut PgConnection,
    idle_timeout: time::Duration,
    no_idle_limit: bool,
    user: &mut SessionUser,
) -> sqlx::Result<()> {
    let idle = idle_timeout.whole_microseconds() as f64 / 1e6;
    let refreshed = sqlx::query!(
        r#"
        UPDATE sessions
        SET last_seen_at = now(),
            idle_expires_at = CASE WHEN $3 THEN absolute_expires_at
                                   ELSE least(now() + make_interval(secs => $2),
                                              absolute_expires_at) END
        WHERE id = $1 AND revoked_at IS NULL
        RETURNING last_seen_at, idle_expires_at
        "#,
        user.session_id,
        idle,
        no_idle_limit,
    )
    .fetch_optional(conn)
    .await?;
    if let Some(row) = refreshed {
        user.last_seen_at = row.last_seen_at;
        user.idle_expires_at = row.idle_expires_at;
    }
    Ok(())
}

/// How old a remembered session's token may get before a page view re-issues it.
pub const REISSUE_AFTER: time::Duration = time::Duration::days(1);

/// Re-issues a remembered session's token: the row keeps everything but its token, so a
/// cookie copied a month ago stops working while the browser that holds the session stays
/// signed in. Returns the new token, or `None` if another request re-issued it first (or
/// the session ended meanwhile): that request's cookie wins.
///
/// Only page views (`GET`) re-issue: no `GET` handler changes the session's data, so
/// tower-sessions never writes the old id back over the new cookie.
pub async fn reissue(pool: &PgPool, user: &SessionUser) -> sqlx::Result<Option<Id>> {
    let token = Id::default();
    let updated = sqlx::query_scalar!(
        r#"
        UPDATE sessions SET token_hash = $3, token_issued_at = now()
        WHERE id = $1 AND token_hash = $2 AND revoked_at IS NULL
        RETURNING id
        "#,
        user.session_id,
        token_hash(user.token),
        token_hash(token),
    )
    .fetch_optional(pool)
    .await?;
    Ok(updated.map(|_| token))
}
