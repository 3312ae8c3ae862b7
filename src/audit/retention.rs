//! Retention: the audit trail bounded by age and by size, swept in the background.
//!
//! Age alone did not bound it: a flood adds rows faster than "older than 90 days" removes
//! them. So events beyond `max_events` go too, the oldest first, and the refusal counts
//! (a bounded number of rows per minute and hour, see [`super::tally`]) are pruned by age:
//! hourly counts after the retention, minute counts after [`MINUTE_COUNTS_KEPT`] (the
//! dashboard's longest window needs them only for its first hour).

use sqlx::PgPool;

/// How much of the audit trail to keep.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Events and counts older than this are deleted.
    pub age: time::Duration,
    /// At most this many events are kept; the oldest beyond it are deleted.
    pub max_events: u64,
}

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub old_events: u64,
    pub excess_events: u64,
    pub old_counts: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.old_events + self.excess_events + self.old_counts
    }
}

const BATCH: i64 = 10_000;
/// Minute counts are read for windows of up to a week (plus its first partial hour).
pub const MINUTE_COUNTS_KEPT: time::Duration = time::Duration::days(8);
/// Batches of old rows per table and sweep: at most a million rows, so one sweep never
/// holds the sweeper for long. The size cap is enforced in full on every sweep.
const AGE_BATCHES: usize = 100;

/// Deletes what `retention` does not keep, in batches (each its own short statement).
pub async fn prune(pool: &PgPool, retention: Retention) -> sqlx::Result<Pruned> {
    let age = retention.age.whole_microseconds() as f64 / 1e6;
    let mut pruned = Pruned::default();
    let minutes = retention.age.min(MINUTE_COUNTS_KEPT).whole_microseconds() as f64 / 1e6;
    for _ in 0..AGE_BATCHES {
        let deleted = sqlx::query!(
            r#"
            DELETE FROM audit_denials_by_minute WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM audit_denials_by_minute
                WHERE minute < now() - make_interval(secs => $1) LIMIT $2))
            "#,
            minutes,
            BATCH
        )
        .execute(pool)
        .await?
        .rows_affected();
        pruned.old_counts += deleted;
        if deleted < BATCH as u64 {
            break;
        }
    }
    for _ in 0..AGE_BATCHES {
        let deleted = sqlx::query!(
            r#"
            DELETE FROM audit_denials_by_hour WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM audit_denials_by_hour
                WHERE hour < now() - make_interval(secs => $1) LIMIT $2))
            "#,
            age,
            BATCH
        )
        .execute(pool)
        .await?
        .rows_affected();
        pruned.old_counts += deleted;
        if deleted < BATCH as u64 {
            break;
        }
    }
    for _ in 0..AGE_BATCHES {
        let deleted = sqlx::query!(
            r#"
            DELETE FROM audit_denials_by_network WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM audit_denials_by_network
                WHERE hour < now() - make_interval(secs => $1) LIMIT $2))
            "#,
            age,
            BATCH
        )
        .execute(pool)
        .await?
        .rows_affected();
        pruned.old_counts += deleted;
        if deleted < BATCH as u64 {
            break;
        }
    }
    pruned.excess_events = prune_to_size(pool, retention.max_events).await?;
    // Old events last: the sweep's final statement is always this DELETE (a test waits for it).
    for _ in 0..AGE_BATCHES {
        let deleted = sqlx::query!(
            r#"
            DELETE FROM audit_events WHERE id IN (
                SELECT id FROM audit_events WHERE at < now() - make_interval(secs => $1)
                LIMIT $2)
            "#,
            age,
            BATCH
        )
        .execute(pool)
        .await?
        .rows_affected();
        pruned.old_events += deleted;
        if deleted < BATCH as u64 {
            break;
        }
    }
    Ok(pruned)
}

/// Keeps at most `max_events` events, deleting the oldest (by insertion order: the
/// identity column). Ids are unique, so keeping only `id > newest - max_events` keeps at
/// most `max_events` rows without counting the table (a count of millions of rows takes
/// seconds; `max(id)` is one index probe).
async fn prune_to_size(pool: &PgPool, max_events: u64) -> sqlx::Result<u64> {
    let newest = sqlx::query_scalar!("SELECT max(id) FROM audit_events")
        .fetch_one(pool)
        .await?;
    let Some(newest) = newest else {
        return Ok(0);
    };
    let cutoff = newest.saturating_sub(i64::try_from(max_events).unwrap_or(i64::MAX));
    if cutoff <= 0 {
        return Ok(0);
    }
    let mut total = 0;
    loop {
        let deleted = sqlx::query!(
            r#"
            DELETE FROM audit_events WHERE id IN (
                SELECT id FROM audit_events WHERE id <= $1 ORDER BY id LIMIT $2)
            "#,
            cutoff,
            BATCH
        )
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
    }
}
