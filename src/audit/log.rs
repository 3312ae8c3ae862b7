//! The audit queue and its writer.
//!
//! Events about known people go through a bounded queue to one background writer, which
//! inserts them in batches (one multi-row INSERT per batch). When the queue is full the
//! caller waits for room (back-pressure) rather than the event being dropped; after
//! [`RECORD_WAIT`] it logs an error and writes the event itself. Memory stays bounded by
//! the queue either way. Anonymous refusals are not queued at all: they are counted
//! ([`super::tally`]) and the writer upserts the counts every second. On shutdown the
//! writer drains the queue and flushes the counts before the pool closes.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use sqlx::{PgExecutor, PgPool};
use tokio::{
    sync::{
        mpsc::{self, error::TrySendError},
        watch,
    },
    task::JoinHandle,
};

use super::{
    AuditEvent,
    tally::{AnonymousDenial, DenialCounter},
};

/// Queue capacity: about 2 MB of events at most.
const QUEUE: usize = 8192;
const BATCH: usize = 500;
/// How long a caller waits for room in a full queue before writing its event itself.
pub const RECORD_WAIT: Duration = Duration::from_secs(2);
/// How often counted refusals are written.
const COUNTS_EVERY: Duration = Duration::from_secs(1);
/// The longest pause between attempts while the database is unreachable.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Stats {
    written: AtomicU64,
    waited: AtomicU64,
    lost: AtomicU64,
}

/// Handle to the audit queue and the refusal counts; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    pool: PgPool,
    capacity: usize,
    queue: mpsc::Sender<AuditEvent>,
    denials: DenialCounter,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("queued", &self.queued())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Stops the writer after it has written everything queued and counted so far.
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
            pool,
            capacity,
            queue,
            denials: DenialCounter::default(),
            stats: Arc::new(Stats::default()),
        };
        let task = tokio::spawn(write(log.clone_detached(), events, stopped));
        (log, AuditWriter { stop, task })
    }

    /// The writer's own handle: without it holding a sender, the queue closes once every
    /// other handle is gone.
    fn clone_detached(&self) -> Writer {
        Writer {
            pool: self.pool.clone(),
            capacity: self.capacity,
            denials: self.denials.clone(),
            stats: Arc::clone(&self.stats),
        }
    }

    /// Queues an event about a known person. Never drops it: a full queue makes the caller
    /// wait for room, and after [`RECORD_WAIT`] the caller writes the event itself.
    pub async fn record(&self, event: AuditEvent) {
        let permit = match self.queue.try_reserve() {
            Ok(permit) => permit,
            Err(TrySendError::Closed(())) => return self.write_directly(event).await,
            Err(TrySendError::Full(())) => {
                let waited = self.stats.waited.fetch_add(1, Ordering::Relaxed) + 1;
                match tokio::time::timeout(RECORD_WAIT, self.queue.reserve()).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_closed)) => return self.write_directly(event).await,
                    Err(_elapsed) => {
                        if waited.is_power_of_two() {
                            tracing::error!(
                                waited,
                                "audit queue full for {RECORD_WAIT:?}: the database is not \
                                 keeping up; writing events directly"
                            );
                        }
                        return self.write_directly(event).await;
                    }
                }
            }
        };
        permit.send(event);
    }

    async fn write_directly(&self, event: AuditEvent) {
        match insert(&self.pool, std::slice::from_ref(&event)).await {
            Ok(()) => {
                self.stats.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => lost(&self.stats, &event, &err),
        }
    }

    /// Counts a refusal of a request without a known user (no row of its own).
    pub fn count_denial(&self, denial: AnonymousDenial<'_>) {
        self.denials.count(denial);
    }

    /// Writes this instance's pending refusal counts now (the dashboard calls it so that
    /// it shows everything this instance has answered).
    pub async fn flush_denials(&self) -> sqlx::Result<()> {
        self.denials.flush(&self.pool).await
    }

    /// Events written by this process.
    pub fn written(&self) -> u64 {
        self.stats.written.load(Ordering::Relaxed)
    }

    /// Events whose caller had to wait for room in the queue, since this process started.
    pub fn waited(&self) -> u64 {
        self.stats.waited.load(Ordering::Relaxed)
    }

    /// Events the database refused or could not take even after retries (each logged).
    pub fn lost(&self) -> u64 {
        self.stats.lost.load(Ordering::Relaxed)
    }

    /// Events waiting in the queue.
    pub fn queued(&self) -> usize {
        self.capacity - self.queue.capacity()
    }
}

fn lost(stats: &Stats, event: &AuditEvent, err: &sqlx::Error) {
    stats.lost.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        error = %err,
        event = event.event,
        user = event.username.as_deref().unwrap_or("-"),
        target = event.target.as_deref().unwrap_or("-"),
        reason = event.reason.as_deref().unwrap_or("-"),
        "audit event could not be written"
    );
}

/// What the background writer holds.
struct Writer {
    pool: PgPool,
    capacity: usize,
    denials: DenialCounter,
    stats: Arc<Stats>,
}

async fn write(
    writer: Writer,
    mut events: mpsc::Receiver<AuditEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut counts = tokio::time::interval(COUNTS_EVERY);
    counts.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Let a burst accumulate briefly (fewer, larger inserts), unless the queue is full:
    // then callers are waiting and lingering only makes them wait longer.
    let linger_below = BATCH.min(writer.capacity);
    loop {
        tokio::select! {
            received = events.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    break;
                }
                if batch.len() < linger_below {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while batch.len() < BATCH {
                        match events.try_recv() {
                            Ok(event) => batch.push(event),
                            Err(_) => break,
                        }
                    }
                }
                writer.flush(&mut batch, &stop).await;
            }
            _ = counts.tick() => {
                if let Err(err) = writer.denials.flush(&writer.pool).await {
                    tracing::warn!(error = %err, "writing refusal counts failed; will retry");
                }
            }
            _ = stop.changed() => break,
        }
    }
    // Shutting down: everything queued, then the counts.
    while let Ok(event) = events.try_recv() {
        batch.push(event);
        if batch.len() == BATCH {
            writer.flush(&mut batch, &stop).await;
        }
    }
    writer.flush(&mut batch, &stop).await;
    for attempt in 1..=3 {
        match writer.denials.flush(&writer.pool).await {
            Ok(()) => return,
            Err(err) if attempt < 3 => {
                tracing::warn!(error = %err, attempt, "writing refusal counts failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => tracing::error!(
                error = %err,
                lost = writer.denials.pending(),
                "refusal counts could not be written at shutdown"
            ),
        }
    }
}

/// Whether the database is unreachable, busy or restarting (worth retrying the batch), as
/// opposed to refusing the rows themselves (a data or schema error: retrying cannot help).
fn transient(err: &sqlx::Error) -> bool {
    match err {
        // Connection exceptions, serialization failures and deadlocks, insufficient
        // resources, operator intervention (shutdown, cancel), system errors.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            ["08", "40", "53", "57", "58"]
                .iter()
                .any(|class| code.starts_with(class))
        }),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

impl Writer {
    /// Inserts a batch. While the database is unreachable it retries (memory stays bounded:
    /// the queue fills and callers wait); rows the database refuses are written one by one
    /// so one bad row costs only itself. Gives up only when shutting down.
    async fn flush(&self, batch: &mut Vec<AuditEvent>, stop: &watch::Receiver<bool>) {
        if batch.is_empty() {
            return;
        }
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match insert(&self.pool, batch).await {
                Ok(()) => {
                    self.stats
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    break;
                }
                Err(err) if !transient(&err) => {
                    for event in batch.iter() {
                        match insert(&self.pool, std::slice::from_ref(event)).await {
                            Ok(()) => {
                                self.stats.written.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(err) => lost(&self.stats, event, &err),
                        }
                    }
                    break;
                }
                Err(err) if !*stop.borrow() || attempt < 3 => {
                    tracing::warn!(error = %err, attempt, queued = batch.len(), "audit insert failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
                Err(err) => {
                    for event in batch.iter() {
                        lost(&self.stats, event, &err);
                    }
                    break;
                }
            }
        }
        batch.clear();
    }
}

pub(super) async fn insert(
    executor: impl PgExecutor<'_>,
    batch: &[AuditEvent],
) -> sqlx::Result<()> {
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
