//! The audit trail: what happened, by and to whom.
//!
//! Events about known people (sign-ins and failed sign-ins of a typed name, sign-outs,
//! session expiry and revocation, 403s of signed-in users, administrative changes) are one
//! row each in `audit_events`, written in batches off the request path ([`log`]) or in
//! the change's own transaction ([`write_in`]), and never dropped. Refusals of requests
//! without a known user are counted per minute, path and network instead ([`tally`]): a
//! bot's flood costs counters, not rows. [`dashboard`] reads both for the 401/403
//! dashboard; [`retention`] bounds the tables by age and size.

pub mod dashboard;
pub mod log;
pub mod retention;
pub mod tally;

use serde_json::Value;
use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;

pub use log::{AuditLog, AuditWriter};
pub use retention::{Retention, prune};
pub use tally::AnonymousDenial;

use log::insert;

/// Longest user agent kept, in sessions and audit records alike.
pub const MAX_USER_AGENT: usize = 256;

/// Where and from whom a request came, as recorded with each event.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub path: Option<String>,
    pub method: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// `value` without control characters, at most `max` characters long.
pub fn clip(value: &str, max: usize) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect()
}

#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: OffsetDateTime,
    pub event: &'static str,
    pub status: Option<i16>,
    pub reason: Option<String>,
    pub username: Option<String>,
    pub target: Option<String>,
    pub meta: RequestMeta,
    pub detail: Option<Value>,
}

impl AuditEvent {
    pub fn new(event: &'static str, meta: RequestMeta) -> AuditEvent {
        AuditEvent {
            at: OffsetDateTime::now_utc(),
            event,
            status: None,
            reason: None,
            username: None,
            target: None,
            meta,
            detail: None,
        }
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = i16::try_from(status).ok();
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn username(mut self, username: impl AsRef<str>) -> Self {
        self.username = Some(clip(username.as_ref(), 64));
        self
    }

    pub fn target(mut self, target: impl AsRef<str>) -> Self {
        self.target = Some(clip(target.as_ref(), 64));
        self
    }

    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// Who makes a change: an administrator's name and request, or the command line.
#[derive(Debug, Clone)]
pub struct Actor {
    pub username: String,
    pub meta: RequestMeta,
}

impl Actor {
    pub fn new(username: impl Into<String>, meta: RequestMeta) -> Actor {
        Actor {
            username: username.into(),
            meta,
        }
    }

    /// The command line (recorded as the actor "cli").
    pub fn cli() -> Actor {
        Actor::new("cli", RequestMeta::default())
    }

    /// An event done by this actor to `target`.
    pub fn event(&self, event: &'static str, target: &str) -> AuditEvent {
        AuditEvent::new(event, self.meta.clone())
            .username(&self.username)
            .target(target)
    }
}

/// Writes one event in the caller's transaction: the change and its record commit together
/// or not at all (administrative actions, which must never be lost).
pub async fn write_in(executor: impl PgExecutor<'_>, event: &AuditEvent) -> sqlx::Result<()> {
    insert(executor, std::slice::from_ref(event)).await
}

/// Writes one event now (the CLI, which has no writer running).
pub async fn write_now(pool: &PgPool, event: AuditEvent) -> sqlx::Result<()> {
    insert(pool, std::slice::from_ref(&event)).await
}

/// An event as a user's history lists it.
#[derive(Debug, Clone)]
pub struct HistoryEvent {
    pub at: Option<OffsetDateTime>,
    pub event: Option<String>,
    pub reason: Option<String>,
    pub username: Option<String>,
    pub target: Option<String>,
    pub ip: Option<String>,
}

/// The ten latest events by or about `username`, newest first.
pub async fn history(pool: &PgPool, username: &str) -> sqlx::Result<Vec<HistoryEvent>> {
    sqlx::query_as!(
        HistoryEvent,
        r#"
        SELECT at, event, reason, username, target, ip FROM (
            (SELECT * FROM audit_events WHERE username = $1 ORDER BY at DESC LIMIT 10)
            UNION ALL
            (SELECT * FROM audit_events WHERE target = $1 AND username IS DISTINCT FROM $1
             ORDER BY at DESC LIMIT 10)
        ) e ORDER BY at DESC LIMIT 10
        "#,
        username
    )
    .fetch_all(pool)
    .await
}
