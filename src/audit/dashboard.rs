//! The questions the 401/403 dashboard asks, one function per panel.
//!
//! Refusals of requests without a known user come from the counts: whole hours from
//! `audit_denials_by_hour` and the window's first, partial hour from
//! `audit_denials_by_minute` (the SQL function `audit_denials_since`), so a day's window
//! reads a few thousand rows however large the flood; networks from
//! `audit_denials_by_network`. Refusals of signed-in people, failed and throttled sign-ins
//! come from `audit_events` (through the partial index of events with a status). Before
//! the counts existed every refusal was an event, so events with a status are always
//! included: old rows keep counting.
//!
//! A window's edge is rounded out to the minute it falls in (for networks, to the hour).

use std::collections::HashMap;

use sqlx::PgPool;
use time::OffsetDateTime;

use super::tally::{OTHER, network_of};

/// The last `seconds` up to now.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    seconds: f64,
}

impl Period {
    pub fn last(seconds: i64) -> Period {
        Period {
            seconds: seconds as f64,
        }
    }
}

/// The four tiles.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub unauthorized: i64,
    pub forbidden: i64,
    pub failed_sign_ins: i64,
    pub throttled: i64,
}

pub async fn totals(pool: &PgPool, period: Period) -> sqlx::Result<Totals> {
    let row = sqlx::query!(
        r#"
        WITH counted AS (
            SELECT coalesce(sum(count) FILTER (WHERE status = 401), 0)::bigint AS unauthorized,
                   coalesce(sum(count) FILTER (WHERE status = 403), 0)::bigint AS forbidden
            FROM audit_denials_since(now() - make_interval(secs => $1))
        ), recorded AS (
            SELECT count(*) FILTER (WHERE status = 401) AS unauthorized,
                   count(*) FILTER (WHERE status = 403) AS forbidden,
                   count(*) FILTER (WHERE event = 'sign_in_failed') AS failed,
                   count(*) FILTER (WHERE status = 429) AS throttled
            FROM audit_events
            WHERE status IS NOT NULL AND at > now() - make_interval(secs => $1)
        )
        SELECT c.unauthorized + r.unauthorized AS "unauthorized!",
               c.forbidden + r.forbidden AS "forbidden!",
               r.failed AS "failed!", r.throttled AS "throttled!"
        FROM counted c, recorded r
        "#,
        period.seconds
    )
    .fetch_one(pool)
    .await?;
    Ok(Totals {
        unauthorized: row.unauthorized,
        forbidden: row.forbidden,
        failed_sign_ins: row.failed,
        throttled: row.throttled,
    })
}

/// 401s and 403s in one bucket of the chart; `bucket` counts `bucket_seconds` from 1970.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    pub bucket: i64,
    pub unauthorized: i64,
    pub forbidden: i64,
}

/// 401s and 403s per bucket of `bucket_seconds` (only buckets with any). Buckets shorter
/// than an hour read the minute counts; longer ones the hourly counts.
pub async fn series(
    pool: &PgPool,
    period: Period,
    bucket_seconds: i64,
) -> sqlx::Result<Vec<Bucket>> {
    if bucket_seconds < 3600 {
        return sqlx::query_as!(
            Bucket,
            r#"
            SELECT bucket AS "bucket!", sum(unauthorized)::bigint AS "unauthorized!",
                   sum(forbidden)::bigint AS "forbidden!"
            FROM (
                SELECT extract(epoch FROM minute)::bigint / $2::bigint AS bucket,
                       coalesce(sum(count) FILTER (WHERE status = 401), 0) AS unauthorized,
                       coalesce(sum(count) FILTER (WHERE status = 403), 0) AS forbidden
                FROM audit_denials_by_minute
                WHERE minute >= date_trunc('minute', now() - make_interval(secs => $1), 'UTC')
                GROUP BY 1
                UNION ALL
                SELECT floor(extract(epoch FROM at))::bigint / $2::bigint,
                       count(*) FILTER (WHERE status = 401), count(*) FILTER (WHERE status = 403)
                FROM audit_events
                WHERE status IN (401, 403) AND at > now() - make_interval(secs => $1)
                GROUP BY 1
            ) t
            GROUP BY 1
            "#,
            period.seconds,
            bucket_seconds,
        )
        .fetch_all(pool)
        .await;
    }
    sqlx::query_as!(
        Bucket,
        r#"
        SELECT bucket AS "bucket!", sum(unauthorized)::bigint AS "unauthorized!",
               sum(forbidden)::bigint AS "forbidden!"
        FROM (
            SELECT extract(epoch FROM date_trunc('hour', at, 'UTC'))::bigint / $2::bigint
                       AS bucket,
                   coalesce(sum(count) FILTER (WHERE status = 401), 0) AS unauthorized,
                   coalesce(sum(count) FILTER (WHERE status = 403), 0) AS forbidden
            FROM audit_denials_since(now() - make_interval(secs => $1))
            GROUP BY date_trunc('hour', at, 'UTC')
            UNION ALL
            SELECT floor(extract(epoch FROM at))::bigint / $2::bigint,
                   count(*) FILTER (WHERE status = 401), count(*) FILTER (WHERE status = 403)
            FROM audit_events
            WHERE status IN (401, 403) AND at > now() - make_interval(secs => $1)
            GROUP BY 1
        ) t
        GROUP BY 1
        "#,
        period.seconds,
        bucket_seconds,
    )
    .fetch_all(pool)
    .await
}

/// Refusals by status and precise reason, most first.
#[derive(Debug, Clone)]
pub struct ReasonCount {
    pub status: i16,
    pub reason: String,
    pub n: i64,
}

pub async fn by_reason(pool: &PgPool, period: Period) -> sqlx::Result<Vec<ReasonCount>> {
    sqlx::query_as!(
        ReasonCount,
        r#"
        SELECT status AS "status!", reason AS "reason!", sum(n)::bigint AS "n!"
        FROM (
            SELECT status, reason, sum(count) AS n
            FROM audit_denials_since(now() - make_interval(secs => $1))
            GROUP BY 1, 2
            UNION ALL
            SELECT status, coalesce(reason, ''), count(*)
            FROM audit_events
            WHERE status IN (401, 403) AND at > now() - make_interval(secs => $1)
            GROUP BY 1, 2
        ) t
        GROUP BY 1, 2 ORDER BY 3 DESC, 2 LIMIT 20
        "#,
        period.seconds
    )
    .fetch_all(pool)
    .await
}

/// A path, user or network and how many refusals it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    pub value: String,
    pub n: i64,
}

/// The ten paths refused most (route templates for counted refusals).
pub async fn by_path(pool: &PgPool, period: Period) -> sqlx::Result<Vec<Count>> {
    sqlx::query_as!(
        Count,
        r#"
        SELECT value AS "value!", sum(n)::bigint AS "n!"
        FROM (
            SELECT path AS value, sum(count) AS n
            FROM audit_denials_since(now() - make_interval(secs => $1))
            GROUP BY 1
            UNION ALL
            SELECT path, count(*)
            FROM audit_events
            WHERE status IN (401, 403) AND path IS NOT NULL
              AND at > now() - make_interval(secs => $1)
            GROUP BY 1
        ) t
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10
        "#,
        period.seconds
    )
    .fetch_all(pool)
    .await
}

/// The ten signed-in people refused most.
pub async fn by_user(pool: &PgPool, period: Period) -> sqlx::Result<Vec<Count>> {
    sqlx::query_as!(
        Count,
        r#"
        SELECT username AS "value!", count(*) AS "n!"
        FROM audit_events
        WHERE status IN (401, 403) AND username IS NOT NULL
          AND at > now() - make_interval(secs => $1)
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10
        "#,
        period.seconds
    )
    .fetch_all(pool)
    .await
}

/// The ten networks (/24, /64) refused most: counted refusals by network, plus recorded
/// ones by their address's network. Exact for the ten shown: every network with recorded
/// refusals is looked up in the counts too, and any other network counted less than the
/// tenth of the counts' own top ten.
pub async fn by_network(pool: &PgPool, period: Period) -> sqlx::Result<Vec<Count>> {
    let recorded = sqlx::query!(
        r#"
        SELECT ip AS "ip!", count(*) AS "n!"
        FROM audit_events
        WHERE status IN (401, 403) AND ip IS NOT NULL
          AND at > now() - make_interval(secs => $1)
        GROUP BY 1 ORDER BY 2 DESC LIMIT 1000
        "#,
        period.seconds
    )
    .fetch_all(pool)
    .await?;
    let mut totals: HashMap<String, i64> = HashMap::new();
    for row in recorded {
        let network = row
            .ip
            .parse()
            .map_or(row.ip, |ip| network_of(ip).to_string());
        *totals.entry(network).or_default() += row.n;
    }
    let networks: Vec<String> = totals.keys().cloned().collect();
    let counted = sqlx::query!(
        r#"
        SELECT network AS "network!", n AS "n!" FROM (
            SELECT network, sum(count)::bigint AS n,
                   row_number() OVER (ORDER BY sum(count) DESC, network) AS rank
            FROM audit_denials_by_network
            WHERE hour >= date_trunc('hour', now() - make_interval(secs => $1), 'UTC')
            GROUP BY network
        ) t WHERE rank <= 10 OR network = ANY($2)
        "#,
        period.seconds,
        &networks,
    )
    .fetch_all(pool)
    .await?;
    for row in counted {
        *totals.entry(row.network).or_default() += row.n;
    }
    let mut top: Vec<Count> = totals
        .into_iter()
        .map(|(value, n)| Count { value, n })
        .collect();
    top.sort_by(|a, b| b.n.cmp(&a.n).then_with(|| a.value.cmp(&b.value)));
    top.truncate(10);
    Ok(top)
}

/// An address with repeated failed sign-ins.
#[derive(Debug, Clone)]
pub struct FailedSignIns {
    pub ip: String,
    pub n: i64,
    pub usernames: i64,
}

/// Addresses with at least three failed sign-ins, most first.
pub async fn failed_sign_ins_by_address(
    pool: &PgPool,
    period: Period,
) -> sqlx::Result<Vec<FailedSignIns>> {
    sqlx::query_as!(
        FailedSignIns,
        r#"
        SELECT ip AS "ip!", count(*) AS "n!", count(DISTINCT username) AS "usernames!"
        FROM audit_events
        WHERE event = 'sign_in_failed' AND ip IS NOT NULL
          AND at > now() - make_interval(secs => $1)
        GROUP BY ip HAVING count(*) >= 3 ORDER BY 2 DESC LIMIT 5
        "#,
        period.seconds
    )
    .fetch_all(pool)
    .await
}

/// A signed-in person refused the same page again and again.
#[derive(Debug, Clone)]
pub struct RepeatedRefusal {
    pub username: String,
    pub path: String,
    pub required: String,
    pub n: i64,
    pub user_id: Option<i64>,
}

/// People refused the same page at least three times for their role, most first.
pub async fn repeated_refusals(
    pool: &PgPool,
    period: Period,
) -> sqlx::Result<Vec<RepeatedRefusal>> {
    sqlx::query_as!(
        RepeatedRefusal,
        r#"
        SELECT g.username AS "username!", g.path AS "path!",
               coalesce(r.required, '?') AS "required!", g.n AS "n!", u.id AS "user_id?"
        FROM (
            SELECT username, path, count(*) AS n
            FROM audit_events
            WHERE status = 403 AND reason = 'insufficient_role' AND username IS NOT NULL
              AND path IS NOT NULL AND at > now() - make_interval(secs => $1)
            GROUP BY 1, 2 HAVING count(*) >= 3 ORDER BY 3 DESC, 1, 2 LIMIT 5
        ) g
        -- The role the page needed, from the latest refusal's detail: read for five rows
        -- only (the grouping above is answered from the index).
        LEFT JOIN LATERAL (
            SELECT e.detail->>'required' AS required FROM audit_events e
            WHERE e.username = g.username AND e.path = g.path AND e.status = 403
              AND e.reason = 'insufficient_role'
            ORDER BY e.at DESC LIMIT 1
        ) r ON true
        LEFT JOIN users u ON u.username = g.username
        ORDER BY g.n DESC, g.username, g.path
        "#,
        period.seconds
    )
    .fetch_all(pool)
    .await
}

/// A path answering 401, with the reasons that matter for what to do about it.
#[derive(Debug, Clone)]
pub struct PathPattern {
    pub path: String,
    pub n: i64,
    pub no_session: i64,
    pub expired: i64,
    pub invalid: i64,
    pub revoked: i64,
}

/// The five paths answering 401 most (page views refused, not failed sign-ins).
pub async fn paths_answering_401(pool: &PgPool, period: Period) -> sqlx::Result<Vec<PathPattern>> {
    sqlx::query_as!(
        PathPattern,
        r#"
        SELECT path AS "path!", sum(n)::bigint AS "n!",
               coalesce(sum(n) FILTER (WHERE reason = 'no_session'), 0)::bigint AS "no_session!",
               coalesce(sum(n) FILTER (WHERE reason IN ('expired_idle', 'expired_absolute')), 0)
                   ::bigint AS "expired!",
               coalesce(sum(n) FILTER (WHERE reason IN ('tampered_cookie', 'unknown_session')), 0)
                   ::bigint AS "invalid!",
               coalesce(sum(n) FILTER (WHERE reason IN ('revoked', 'user_disabled')), 0)
                   ::bigint AS "revoked!"
        FROM (
            SELECT path, reason, sum(count) AS n
            FROM audit_denials_since(now() - make_interval(secs => $1))
            WHERE status = 401
            GROUP BY 1, 2
            UNION ALL
            SELECT path, reason, count(*)
            FROM audit_events
            WHERE status = 401 AND event = 'denied' AND path IS NOT NULL
              AND at > now() - make_interval(secs => $1)
            GROUP BY 1, 2
        ) t
        GROUP BY path ORDER BY 2 DESC LIMIT 5
        "#,
        period.seconds
    )
    .fetch_all(pool)
    .await
}

/// A recorded refusal (of a signed-in person, or from before refusals were counted).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub at: OffsetDateTime,
    pub status: Option<i16>,
    pub reason: Option<String>,
    pub username: Option<String>,
    pub path: Option<String>,
    pub method: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

/// The twenty latest recorded refusals, newest first.
pub async fn latest_refusals(pool: &PgPool, period: Period) -> sqlx::Result<Vec<Refusal>> {
    sqlx::query_as!(
        Refusal,
        r#"
        SELECT at, status, reason, username, path, method, ip, request_id
        FROM audit_events
        WHERE status IN (401, 403) AND at > now() - make_interval(secs => $1)
        ORDER BY at DESC LIMIT 20
        "#,
        period.seconds
    )
    .fetch_all(pool)
    .await
}

/// Counted refusals of one minute, status, reason and path.
#[derive(Debug, Clone)]
pub struct CountedMinute {
    pub minute: OffsetDateTime,
    pub status: i16,
    pub reason: String,
    pub path: String,
    pub n: i64,
}

/// The twenty latest counted minutes (largest count first within a minute).
pub async fn latest_counts(pool: &PgPool, period: Period) -> sqlx::Result<Vec<CountedMinute>> {
    sqlx::query_as!(
        CountedMinute,
        r#"
        SELECT minute, status, reason, path, count AS n
        FROM audit_denials_by_minute
        WHERE minute >= date_trunc('minute', now() - make_interval(secs => $1), 'UTC')
        ORDER BY minute DESC, count DESC, status, reason, path LIMIT 20
        "#,
        period.seconds
    )
    .fetch_all(pool)
    .await
}

/// Which counted refusals the audit log asks about; `None`: any.
#[derive(Debug, Clone, Default)]
pub struct CountFilter {
    pub statuses: Option<Vec<i16>>,
    pub reason: Option<String>,
    pub path: Option<String>,
    /// An address (its network is used) or a network as the dashboard shows it.
    pub network: Option<String>,
    pub period: Option<Period>,
}

/// Counted refusals grouped by status, reason, path (and network when filtering by one).
#[derive(Debug, Clone)]
pub struct CountedGroup {
    pub status: i16,
    pub reason: String,
    pub path: String,
    pub network: Option<String>,
    pub n: i64,
}

/// All counted refusals matching `filter`, and the twenty largest groups of them.
pub async fn counted_refusals(
    pool: &PgPool,
    filter: &CountFilter,
) -> sqlx::Result<(i64, Vec<CountedGroup>)> {
    let seconds = filter.period.map(|p| p.seconds);
    let Some(network) = &filter.network else {
        let rows = sqlx::query!(
            r#"
            SELECT status AS "status!", reason AS "reason!", path AS "path!",
                   sum(count)::bigint AS "n!", (sum(sum(count)) OVER ())::bigint AS "total!"
            FROM audit_denials_since(coalesce(now() - make_interval(secs => $4), '-infinity'))
            WHERE ($1::smallint[] IS NULL OR status = ANY($1))
              AND ($2::text IS NULL OR reason = $2) AND ($3::text IS NULL OR path = $3)
            GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3 LIMIT 20
            "#,
            filter.statuses.as_deref(),
            filter.reason,
            filter.path,
            seconds,
        )
        .fetch_all(pool)
        .await?;
        let total = rows.first().map_or(0, |r| r.total);
        let groups = rows
            .into_iter()
            .map(|r| CountedGroup {
                status: r.status,
                reason: r.reason,
                path: r.path,
                network: None,
                n: r.n,
            })
            .collect();
        return Ok((total, groups));
    };
    let network = match network.parse() {
        Ok(ip) => network_of(ip).to_string(),
        Err(_) if network == OTHER => OTHER.to_owned(),
        Err(_) => network
            .parse::<ipnet::IpNet>()
            .map_or_else(|_| network.clone(), |net| net.trunc().to_string()),
    };
    let rows = sqlx::query!(
        r#"
        SELECT status AS "status!", reason AS "reason!", path AS "path!",
               sum(count)::bigint AS "n!", (sum(sum(count)) OVER ())::bigint AS "total!"
        FROM audit_denials_by_network
        WHERE network = $5
          AND ($1::smallint[] IS NULL OR status = ANY($1))
          AND ($2::text IS NULL OR reason = $2) AND ($3::text IS NULL OR path = $3)
          AND ($4::float8 IS NULL
               OR hour >= date_trunc('hour', now() - make_interval(secs => $4), 'UTC'))
        GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3 LIMIT 20
        "#,
        filter.statuses.as_deref(),
        filter.reason,
        filter.path,
        seconds,
        network,
    )
    .fetch_all(pool)
    .await?;
    let total = rows.first().map_or(0, |r| r.total);
    let groups = rows
        .into_iter()
        .map(|r| CountedGroup {
            status: r.status,
            reason: r.reason,
            path: r.path,
            network: Some(network.clone()),
            n: r.n,
        })
        .collect();
    Ok((total, groups))
}
