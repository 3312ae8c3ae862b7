//! Failed sign-in throttling, per account name and per client address, kept in PostgreSQL
//! so it holds across restarts and across instances.
//!
//! - Account: after `account_failures` failures within the window, every further attempt
//!   must wait: 1 minute, doubling with each failure, capped at the window. After
//!   [`HARD_LIMIT`] consecutive failures (NIST SP 800-63B: at most 100) the account name is
//!   locked until an administrator clears it or the user signs in... which they cannot, so
//!   an administrator it is. A successful sign-in resets the account's counters.
//! - Address: after `ip_failures` failures within the window, the address waits for the
//!   window to end. Success does not reset it (one valid account must not launder a
//!   guessing run from the same address).
//!
//! Account names are counted whether or not the account exists, and a refused attempt is
//! answered before any password check, identically for real and unknown names.

use sqlx::{PgExecutor, PgPool};
use time::{Duration, OffsetDateTime};

use crate::{
    audit::{self, Actor},
    config::ThrottleSettings,
};

/// Consecutive failures after which an account name is locked (NIST SP 800-63B 5.2.2).
pub const HARD_LIMIT: i32 = 100;
const FIRST_DELAY: Duration = Duration::minutes(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Account,
    Ip,
}

impl Scope {
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "account" => Some(Scope::Account),
            "ip" => Some(Scope::Ip),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Ip => "ip",
        }
    }
}

/// A refusal: which counter, and until when.
#[derive(Debug, Clone, Copy)]
pub struct Blocked {
    pub scope: Scope,
    pub until: OffsetDateTime,
    pub locked: bool,
}

impl Blocked {
    pub fn reason(&self) -> &'static str {
        match (self.scope, self.locked) {
            (Scope::Account, true) => "account_locked",
            (Scope::Account, false) => "account",
            (Scope::Ip, _) => "ip",
        }
    }

    /// Seconds to put in `Retry-After` (at least 1).
    pub fn retry_after(&self, now: OffsetDateTime) -> i64 {
        (self.until - now).whole_seconds().max(1)
    }
}

/// The block in force for this account name or address, if any (the later one wins).
pub async fn check(pool: &PgPool, account: &str, ip: &str) -> sqlx::Result<Option<Blocked>> {
    let rows = sqlx::query!(
        r#"
        SELECT scope, blocked_until AS "blocked_until!", consecutive
        FROM login_throttles
        WHERE ((scope = 'account' AND key = $1) OR (scope = 'ip' AND key = $2))
          AND blocked_until > now()
        "#,
        account,
        ip
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Blocked {
            scope: if row.scope == "account" {
                Scope::Account
            } else {
                Scope::Ip
            },
            until: row.blocked_until,
            locked: row.scope == "account" && row.consecutive >= HARD_LIMIT,
        })
        .max_by_key(|blocked| blocked.until))
}

/// Counts a failed attempt against both counters and sets their blocks.
pub async fn record_failure(
    pool: &PgPool,
    settings: &ThrottleSettings,
    account: &str,
    ip: &str,
) -> sqlx::Result<()> {
    let window = settings.window.whole_microseconds() as f64 / 1e6;
    let mut tx = pool.begin().await?;
    let counters = sqlx::query!(
        r#"
        INSERT INTO login_throttles AS t (scope, key, failures, consecutive, window_started_at,
                                          last_failure_at)
        VALUES ('account', $1, 1, 1, now(), now()), ('ip', $2, 1, 1, now(), now())
        ON CONFLICT (scope, key) DO UPDATE SET
            failures = CASE WHEN t.window_started_at < now() - make_interval(secs => $3)
                            THEN 1 ELSE t.failures + 1 END,
            window_started_at = CASE WHEN t.window_started_at < now() - make_interval(secs => $3)
                                     THEN now() ELSE t.window_started_at END,
            consecutive = t.consecutive + 1,
            last_failure_at = now()
        RETURNING scope, failures, consecutive, window_started_at, last_failure_at
        "#,
        account,
        ip,
        window
    )
    .fetch_all(&mut *tx)
    .await?;
    for row in counters {
        let blocked_until = if row.scope == "account" {
            account_block(settings, row.failures, row.consecutive, row.last_failure_at)
        } else if row.failures >= settings.ip_failures {
            Some(row.window_started_at + settings.window)
        } else {
            None
        };
        if let Some(until) = blocked_until {
            sqlx::query!(
                "UPDATE login_throttles SET blocked_until = $3 WHERE scope = $1 AND key = $2",
                row.scope,
                if row.scope == "account" { account } else { ip },
                until
            )
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await
}

/// Growing delay once the window's allowance is used up; a lock at the hard limit.
fn account_block(
    settings: &ThrottleSettings,
    failures: i32,
    consecutive: i32,
    last_failure: OffsetDateTime,
) -> Option<OffsetDateTime> {
    if consecutive >= HARD_LIMIT {
        // Effectively forever: only an administrator (or the CLI) clears it.
        return Some(last_failure + Duration::days(365 * 100));
    }
    let over = failures - settings.account_failures;
    if over < 0 {
        return None;
    }
    let factor = 1i64 << over.clamp(0, 20);
    let delay = std::cmp::min(FIRST_DELAY * factor as f64, settings.window);
    Some(last_failure + delay)
}

/// A successful sign-in: the account's counters start over.
pub async fn record_success(pool: &PgPool, account: &str) -> sqlx::Result<()> {
    clear_account(pool, account).await?;
    Ok(())
}

/// A throttle as the admin page lists it.
#[derive(Debug, Clone)]
pub struct ThrottleRow {
    pub scope: String,
    pub key: String,
    pub failures: i32,
    pub consecutive: i32,
    pub last_failure_at: OffsetDateTime,
    pub blocked_until: Option<OffsetDateTime>,
}

/// Throttles with recent failures or a block in force, blocked first.
pub async fn list(pool: &PgPool, window: Duration) -> sqlx::Result<Vec<ThrottleRow>> {
    let secs = window.whole_microseconds() as f64 / 1e6;
    sqlx::query_as!(
        ThrottleRow,
        r#"
        SELECT scope, key, failures, consecutive, last_failure_at, blocked_until
        FROM login_throttles
        WHERE blocked_until > now() OR last_failure_at > now() - make_interval(secs => $1)
              OR consecutive >= $2
        ORDER BY (blocked_until > now()) DESC NULLS LAST, last_failure_at DESC
        LIMIT 200
        "#,
        secs,
        HARD_LIMIT
    )
    .fetch_all(pool)
    .await
}

/// Clears one throttle (an administrator lifting a block), with its audit event. True if
/// there was one.
pub async fn clear(pool: &PgPool, actor: &Actor, scope: Scope, key: &str) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query!(
        "DELETE FROM login_throttles WHERE scope = $1 AND key = $2",
        scope.as_str(),
        key
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if deleted == 0 {
        return Ok(false);
    }
    let event = actor.event("throttle_cleared", key).reason(scope.as_str());
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(true)
}

/// Lifts every block on an account name (`portcullis user unlock`), with its audit event.
/// True if there was anything to lift.
pub async fn unlock(pool: &PgPool, actor: &Actor, key: &str) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    if clear_account(&mut *tx, key).await? == 0 {
        return Ok(false);
    }
    let event = actor
        .event("throttle_cleared", key)
        .reason(Scope::Account.as_str());
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(true)
}

/// Lifts every block on an account name (a password reset or an unlock).
pub async fn clear_account(executor: impl PgExecutor<'_>, key: &str) -> sqlx::Result<u64> {
    Ok(sqlx::query!(
        "DELETE FROM login_throttles WHERE scope = 'account' AND key = $1",
        key
    )
    .execute(executor)
    .await?
    .rows_affected())
}

/// Forgets counters nobody has touched for a day (locks at the hard limit stay).
pub async fn sweep(pool: &PgPool) -> sqlx::Result<u64> {
    Ok(sqlx::query!(
        r#"
        DELETE FROM login_throttles
        WHERE last_failure_at < now() - interval '1 day'
          AND (blocked_until IS NULL OR blocked_until < now())
          AND consecutive < $1
        "#,
        HARD_LIMIT
    )
    .execute(pool)
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_delay_grows_and_is_capped() {
        let settings = ThrottleSettings {
            account_failures: 5,
            ip_failures: 50,
            window: Duration::minutes(15),
        };
        let t = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(account_block(&settings, 4, 4, t), None);
        assert_eq!(
            account_block(&settings, 5, 5, t),
            Some(t + Duration::minutes(1))
        );
        assert_eq!(
            account_block(&settings, 6, 6, t),
            Some(t + Duration::minutes(2))
        );
        assert_eq!(
            account_block(&settings, 8, 8, t),
            Some(t + Duration::minutes(8))
        );
        assert_eq!(
            account_block(&settings, 9, 9, t),
            Some(t + Duration::minutes(15))
        );
        assert_eq!(
            account_block(&settings, 60, 60, t),
            Some(t + Duration::minutes(15))
        );
        assert!(account_block(&settings, 1, 100, t).is_some_and(|u| u > t + Duration::days(365)));
    }
}
