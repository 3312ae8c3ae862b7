//! The audit trail, written off the request path.
//!
//! Requests hand events to a bounded queue and move on; one background writer inserts them
//! in batches (a single multi-row INSERT per batch). A flood of 401s therefore costs the
//! request path one channel send, memory stays bounded by the queue, and when the queue is
//! full events are dropped and counted (the dashboard shows the count). On shutdown the
//! writer drains the queue before the pool closes, so a clean stop loses nothing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

/// Queue capacity: about 2 MB of events at most.
const QUEUE: usize = 8192;
const BATCH: usize = 500;
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

/// Handle to the audit queue; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    capacity: usize,
    queue: mpsc::Sender<AuditEvent>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// Stops the writer after it has written everything queued so far.
pub struct AuditWriter {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AuditWriter {
    pub async fn shutdown(self, timeout: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::error!("audit writer did not finish within {timeout:?}; events may be lost");
        }
    }
}

impl AuditLog {
    /// Starts the background writer on `pool`.
    pub fn start(pool: PgPool) -> (AuditLog, AuditWriter) {
        Self::start_with_capacity(pool, QUEUE)
    }

    /// As [`AuditLog::start`], with a queue of `capacity` events.
    pub fn start_with_capacity(pool: PgPool, capacity: usize) -> (AuditLog, AuditWriter) {
        let (queue, events) = mpsc::channel(capacity);
        let (stop, stopped) = watch::channel(false);
        let log = AuditLog {
            capacity,
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
            written: Arc::new(AtomicU64::new(0)),
        };
        let task = tokio::spawn(write_batches(
            pool,
            events,
            stopped,
            Arc::clone(&log.written),
        ));
        (log, AuditWriter { stop, task })
    }

    /// Queues an event; never waits. A full queue drops the event and counts it.
    pub fn record(&self, event: AuditEvent) {
        if self.queue.try_send(event).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "audit queue full: events dropped");
            }
        }
    }

    /// Events dropped because the queue was full, since this process started.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events written by this process's writer.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Events waiting in the queue.
    pub fn queued(&self) -> usize {
        self.capacity - self.queue.capacity()
    }
}

async fn write_batches(
    pool: PgPool,
    mut events: mpsc::Receiver<AuditEvent>,
    mut stop: watch::Receiver<bool>,
    written: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            received = events.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    return;
                }
                // Let a burst accumulate briefly: fewer, larger inserts.
                if batch.len() < BATCH {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while batch.len() < BATCH {
                        match events.try_recv() {
                            Ok(event) => batch.push(event),
                            Err(_) => break,
                        }
                    }
                }
                flush(&pool, &mut batch, &written).await;
            }
            _ = stop.changed() => {
                while let Ok(event) = events.try_recv() {
                    batch.push(event);
                    if batch.len() == BATCH {
                        flush(&pool, &mut batch, &written).await;
                    }
                }
                flush(&pool, &mut batch, &written).await;
                return;
            }
        }
    }
}

/// Inserts a batch, retrying a few times while the database is unreachable; a batch that
/// still fails is logged with its size and dropped (memory must stay bounded).
async fn flush(pool: &PgPool, batch: &mut Vec<AuditEvent>, written: &AtomicU64) {
    if batch.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=5 {
        match insert(pool, batch).await {
            Ok(()) => {
                written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
                return;
            }
            Err(err) if attempt < 5 => {
                tracing::warn!(error = %err, attempt, "audit insert failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(err) => {
                tracing::error!(error = %err, lost = batch.len(), "audit insert failed; events lost");
            }
        }
    }
    batch.clear();
}

async fn insert(executor: impl PgExecutor<'_>, batch: &[AuditEvent]) -> sqlx::Result<()> {
    let mut at = Vec::with_capacity(batch.len());
    let mut event = Vec::with_capacity(batch.len());
    let mut status = Vec::with_capacity(batch.len());
    let mut reason = Vec::with_capacity(batch.len());
    let mut username = Vec::with_capacity(batch.len());
    let mut target = Vec::with_capacity(batch.len());
    let mut path = Vec::with_capacity(batch.len());
    let mut method = Vec::with_capacity(batch.len());
    let mut ip = Vec::with_capacity(batch.len());
    let mut user_agent = Vec::with_capacity(batch.len());
    let mut request_id = Vec::with_capacity(batch.len());
    let mut detail = Vec::with_capacity(batch.len());
    for e in batch {
        at.push(e.at);
        event.push(e.event.to_owned());
        status.push(e.status);
        reason.push(e.reason.clone());
        username.push(e.username.clone());
        target.push(e.target.clone());
        path.push(e.meta.path.clone());
        method.push(e.meta.method.clone());
        ip.push(e.meta.ip.clone());
        user_agent.push(e.meta.user_agent.clone());
        request_id.push(e.meta.request_id.clone());
        detail.push(e.detail.clone());
    }
    sqlx::query!(
        r#"
        INSERT INTO audit_events (at, event, status, reason, username, target, path, method,
                                  ip, user_agent, request_id, detail)
        SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::smallint[], $4::text[],
                             $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                             $10::text[], $11::text[], $12::jsonb[])
        "#,
        &at,
        &event,
        &status as &[Option<i16>],
        &reason as &[Option<String>],
        &username as &[Option<String>],
        &target as &[Option<String>],
        &path as &[Option<String>],
        &method as &[Option<String>],
        &ip as &[Option<String>],
        &user_agent as &[Option<String>],
        &request_id as &[Option<String>],
        &detail as &[Option<Value>],
    )
    .execute(executor)
    .await?;
    Ok(())
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

/// Deletes events older than `retention`, in batches.
pub async fn prune(pool: &PgPool, retention: time::Duration) -> sqlx::Result<u64> {
    let keep = retention.whole_microseconds() as f64 / 1e6;
    let mut total = 0;
    for _ in 0..100 {
        let deleted = sqlx::query!(
            r#"
            DELETE FROM audit_events WHERE id IN (
                SELECT id FROM audit_events WHERE at < now() - make_interval(secs => $1)
                LIMIT 5000)
            "#,
            keep
        )
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < 5000 {
            break;
        }
    }
    Ok(total)
}
