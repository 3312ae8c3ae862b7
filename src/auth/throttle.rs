//! Failed sign-in throttling, kept in PostgreSQL so it holds across restarts and instances.
//!
//! Every attempt is *reserved* before its password is hashed: one transaction increments
//! the attempt's counters (row-locked, so simultaneous attempts queue on the row) and
//! refuses the attempt, undoing the increments, if any counter is blocked. A burst of
//! simultaneous guesses therefore gets exactly the budget checked and the rest refused;
//! checking first and counting after the hash let 34 of 300 simultaneous guesses through
//! a budget of 5 (measured, see the abuse-resistance tests). A success releases the
//! reservation.
//!
//! Counters:
//! - Account name (unknown devices): after `account_failures` failures within the window,
//!   each further attempt waits 1 minute, doubling, capped at the window. Never longer: a
//!   permanent lock would let anyone lock out any name, administrators first.
//! - Address: after `ip_failures` failures within the window, the address waits for the
//!   window to end. Success does not reset it (one valid account must not launder a
//!   guessing run from the same address).
//! - Known device (`auth::device`): a browser that signed in to the account before is
//!   counted on its own (account, device) counter with the account's budget, *instead of*
//!   the name's and the address's. Someone else's flood never blocks the owner's browser.
//!
//! Names are counted whether or not the account exists, and a refused attempt is answered
//! before any password check, identically for real and unknown names.

use sqlx::{PgExecutor, PgPool};
use time::{Duration, OffsetDateTime};

use crate::{
    audit::{self, Actor},
    config::ThrottleSettings,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Account,
    Ip,
    Device,
}

impl Scope {
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "account" => Some(Scope::Account),
            "ip" => Some(Scope::Ip),
            "device" => Some(Scope::Device),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Ip => "ip",
            Scope::Device => "device",
        }
    }
}

/// A refusal: which counter, and until when.
#[derive(Debug, Clone, Copy)]
pub struct Blocked {
    pub scope: Scope,
    pub until: OffsetDateTime,
}

impl Blocked {
    pub fn reason(&self) -> &'static str {
        self.scope.as_str()
    }

    /// Seconds to put in `Retry-After` (at least 1).
    pub fn retry_after(&self, now: OffsetDateTime) -> i64 {
        (self.until - now).whole_seconds().max(1)
    }
}

/// What an attempt is counted against.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The account name's key (`Username::key_of`), real or not.
    pub account: String,
    pub ip: String,
    /// The device nonce when the browser is a known device for this account.
    pub device: Option<String>,
}

impl Keys {
    fn counters(&self) -> Vec<(Scope, String)> {
        match &self.device {
            Some(nonce) => vec![(Scope::Device, format!("{}:{nonce}", self.account))],
            None => vec![
                (Scope::Account, self.account.clone()),
                (Scope::Ip, self.ip.clone()),
            ],
        }
    }
}

/// An admitted attempt, counted as a failure until [`release`]d.
#[must_use = "an admitted attempt is a failure unless released"]
#[derive(Debug)]
pub struct Reservation {
    counters: Vec<(Scope, String)>,
}

/// Reserves an attempt: counts it on every counter of `keys`, or refuses it (counting
/// nothing) if one of them is blocked.
pub async fn reserve(
    pool: &PgPool,
    settings: &ThrottleSettings,
    keys: &Keys,
) -> sqlx::Result<Result<Reservation, Blocked>> {
    reserve_counters(pool, settings, keys.counters()).await
}

/// Reserves an attempt counted against the client's address only: a passkey sign-in, which
/// names no account until its signature is checked (and a wrong one guesses nobody's
/// secret), so only the address's budget can hold back a flood of them.
pub async fn reserve_address(
    pool: &PgPool,
    settings: &ThrottleSettings,
    ip: &str,
) -> sqlx::Result<Result<Reservation, Blocked>> {
    reserve_counters(pool, settings, vec![(Scope::Ip, ip.to_owned())]).await
}

async fn reserve_counters(
    pool: &PgPool,
    settings: &ThrottleSettings,
    counters: Vec<(Scope, String)>,
) -> sqlx::Result<Result<Reservation, Blocked>> {
    let (scopes, names): (Vec<&str>, Vec<&str>) = counters
        .iter()
        .map(|(scope, key)| (scope.as_str(), key.as_str()))
        .unzip();
    let window = settings.window.whole_microseconds() as f64 / 1e6;
    let mut tx = pool.begin().await?;
    // The block is decided in the same statement that counts, under the row lock, so the
    // attempt that uses up the budget also closes the door behind it.
    let admitted = sqlx::query_scalar!(
        r#"
        INSERT INTO login_throttles AS t (scope, key, failures, consecutive, window_started_at,
                                          last_failure_at, blocked_until)
        SELECT w.scope, w.key, 1, 1, now(), now(),
               CASE WHEN 1 < (CASE w.scope WHEN 'ip' THEN $4::int ELSE $5::int END) THEN NULL
                    WHEN w.scope = 'ip' THEN now() + make_interval(secs => $3)
                    ELSE now() + least(interval '1 minute', make_interval(secs => $3)) END
        FROM UNNEST($1::text[], $2::text[]) AS w(scope, key)
        ON CONFLICT (scope, key) DO UPDATE SET
            failures = CASE WHEN t.window_started_at < now() - make_interval(secs => $3)
                            THEN 1 ELSE t.failures + 1 END,
            window_started_at = CASE WHEN t.window_started_at < now() - make_interval(secs => $3)
                                     THEN now() ELSE t.window_started_at END,
            consecutive = t.consecutive + 1,
            last_failure_at = now(),
            blocked_until = (
                WITH n(failures, started, budget) AS (SELECT
                    CASE WHEN t.window_started_at < now() - make_interval(secs => $3)
                         THEN 1 ELSE t.failures + 1 END,
                    CASE WHEN t.window_started_at < now() - make_interval(secs => $3)
                         THEN now() ELSE t.window_started_at END,
                    CASE t.scope WHEN 'ip' THEN $4::int ELSE $5::int END)
                SELECT CASE
                    WHEN n.failures < n.budget THEN NULL
                    WHEN t.scope = 'ip' THEN n.started + make_interval(secs => $3)
                    ELSE now() + least(interval '1 minute' * power(2, least(n.failures - n.budget, 20)),
                                       make_interval(secs => $3))
                END FROM n)
        WHERE t.blocked_until IS NULL OR t.blocked_until <= now()
        RETURNING scope AS "scope!"
        "#,
        &scopes as &[&str],
        &names as &[&str],
        window,
        settings.ip_failures,
        settings.account_failures,
    )
    .fetch_all(&mut *tx)
    .await?;
    if admitted.len() == counters.len() {
        tx.commit().await?;
        return Ok(Ok(Reservation { counters }));
    }
    tx.rollback().await?;
    let blocked = sqlx::query!(
        r#"
        SELECT scope, blocked_until AS "blocked_until!"
        FROM login_throttles
        WHERE (scope, key) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))
          AND blocked_until > now()
        ORDER BY blocked_until DESC LIMIT 1
        "#,
        &scopes as &[&str],
        &names as &[&str],
    )
    .fetch_optional(pool)
    .await?;
    // A block that lapsed between the two statements: refuse this once, for a second.
    Ok(Err(blocked.map_or(
        Blocked {
            scope: counters[0].0,
            until: OffsetDateTime::now_utc() + Duration::seconds(1),
        },
        |row| Blocked {
            scope: Scope::parse(&row.scope).unwrap_or(Scope::Account),
            until: row.blocked_until,
        },
    )))
}

/// How an admitted attempt ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// A complete sign-in: the account's (or device's) counters start over; the address's
    /// gives back this attempt (one valid account must not launder a guessing run).
    SignedIn,
    /// One step of several was right (a password before its second factor, a password
    /// before a code in re-authentication): every counter gives back this attempt only.
    /// Never a reset, or knowing the password would buy unlimited guesses at the code.
    StepPassed,
}

/// Gives back a reservation whose attempt was right, in one statement (one round trip,
/// one commit: it runs on every successful sign-in).
pub async fn release(
    pool: &PgPool,
    settings: &ThrottleSettings,
    reservation: Reservation,
    how: Release,
) -> sqlx::Result<()> {
    // Per counter: `reset` rows go (a complete sign-in starts the account's or device's
    // count over); the others give back this attempt, and a row left without a failure
    // goes. The DELETE and the UPDATE touch different rows (`failures <= 1` or reset,
    // against `failures > 1` and not reset), so they do not meet in one statement. A
    // concurrent attempt on the same counter can make this give back nothing: the attempt
    // then stays counted, which errs on the side of throttling.
    let (mut scopes, mut keys, mut resets) = (Vec::new(), Vec::new(), Vec::new());
    for (scope, key) in &reservation.counters {
        scopes.push(scope.as_str());
        keys.push(key.as_str());
        resets.push(how == Release::SignedIn && *scope != Scope::Ip);
    }
    sqlx::query!(
        r#"
        WITH c(scope, key, reset) AS (
            SELECT * FROM UNNEST($1::text[], $2::text[], $3::bool[])),
        gone AS (
            DELETE FROM login_throttles t USING c
            WHERE t.scope = c.scope AND t.key = c.key AND (c.reset OR t.failures <= 1))
        UPDATE login_throttles t
        SET failures = t.failures - 1,
            consecutive = greatest(t.consecutive - 1, 0),
            blocked_until = CASE
                WHEN t.failures - 1 < (CASE t.scope WHEN 'ip' THEN $4::int ELSE $5::int END)
                THEN NULL ELSE t.blocked_until END
        FROM c
        WHERE t.scope = c.scope AND t.key = c.key AND NOT c.reset AND t.failures > 1
        "#,
        &scopes as &[&str],
        &keys as &[&str],
        &resets as &[bool],
        settings.ip_failures,
        settings.account_failures,
    )
    .execute(pool)
    .await?;
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

/// One page of throttles with recent failures or a block in force.
pub struct ThrottlePage {
    pub total: i64,
    pub page: i64,
    pub pages: i64,
    pub rows: Vec<ThrottleRow>,
}

/// Throttles whose key contains `q` with recent failures or a block in force, blocked
/// first, `page_size` at a time (an attacker can block hundreds of names).
pub async fn list(
    pool: &PgPool,
    window: Duration,
    q: &str,
    page: i64,
    page_size: i64,
) -> sqlx::Result<ThrottlePage> {
    let secs = window.whole_microseconds() as f64 / 1e6;
    let pattern = format!(
        "%{}%",
        crate::accounts::like_escape(&q.trim().to_lowercase())
    );
    let total = sqlx::query_scalar!(
        r#"
        SELECT count(*) AS "n!" FROM login_throttles
        WHERE (blocked_until > now() OR last_failure_at > now() - make_interval(secs => $1))
          AND lower(key) LIKE $2
        "#,
        secs,
        pattern
    )
    .fetch_one(pool)
    .await?;
    let pages = ((total + page_size - 1) / page_size).max(1);
    let page = page.clamp(1, pages);
    let rows = sqlx::query_as!(
        ThrottleRow,
        r#"
        SELECT scope, key, failures, consecutive, last_failure_at, blocked_until
        FROM login_throttles
        WHERE (blocked_until > now() OR last_failure_at > now() - make_interval(secs => $1))
          AND lower(key) LIKE $2
        ORDER BY (blocked_until > now()) DESC NULLS LAST, last_failure_at DESC, scope, key
        LIMIT $3 OFFSET $4
        "#,
        secs,
        pattern,
        page_size,
        (page - 1) * page_size
    )
    .fetch_all(pool)
    .await?;
    Ok(ThrottlePage {
        total,
        page,
        pages,
        rows,
    })
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

/// Lifts every block on an account name, its known devices' included (a password reset
/// or an unlock).
pub async fn clear_account(executor: impl PgExecutor<'_>, key: &str) -> sqlx::Result<u64> {
    let devices = format!("{}:%", crate::accounts::like_escape(key));
    Ok(sqlx::query!(
        r#"
        DELETE FROM login_throttles
        WHERE (scope = 'account' AND key = $1) OR (scope = 'device' AND key LIKE $2)
        "#,
        key,
        devices
    )
    .execute(executor)
    .await?
    .rows_affected())
}

/// Forgets counters nobody has touched for a day.
pub async fn sweep(pool: &PgPool) -> sqlx::Result<u64> {
    Ok(sqlx::query!(
        r#"
        DELETE FROM login_throttles
        WHERE last_failure_at < now() - interval '1 day'
          AND (blocked_until IS NULL OR blocked_until < now())
        "#
    )
    .execute(pool)
    .await?
    .rows_affected())
}
