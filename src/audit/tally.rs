//! Refusals of requests without a known user, counted instead of recorded one by one.
//!
//! One audit row per anonymous 401 turned every bot request into 277 bytes on disk and the
//! dashboard into a scan of the day's rows. Here a refusal is a hash-map increment; the
//! audit writer upserts the counts every second (one multi-row
//! `INSERT … ON CONFLICT DO UPDATE` per table: per minute, per hour, per hour and network,
//! in one transaction) and once more on shutdown. Counts stay exact: a failed upsert puts
//! its counts back for the next one.
//!
//! What a client chooses is bounded per instance, so neither memory nor the tables grow
//! with a flood: at most [`PATHS_PER_MINUTE`] distinct paths a minute (an unrouted path is
//! the client's to invent) and [`NETWORKS_PER_HOUR`] distinct (status, reason, path,
//! network) an hour. Past either cap the path or network is counted as [`OTHER`] (past the
//! hourly one, both: the minute table still has the path). The heaviest senders are among
//! the first seen in any hour, so they keep their own rows.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
};

// foldhash instead of std's SipHash: these maps are touched on every anonymous refusal,
// and SipHash was a tenth of that request's instructions (benches/ANALYSIS.md). Its seeds
// are random per process; the maps are bounded (`PATHS_PER_MINUTE`, networks per hour).
use foldhash::{HashMap, HashSet};

use ipnet::IpNet;
use sqlx::PgPool;
use time::OffsetDateTime;

/// Distinct paths counted per minute by one instance; the rest are [`OTHER`].
pub const PATHS_PER_MINUTE: usize = 64;
/// Distinct (status, reason, path, network) counted per hour by one instance; past it the
/// network is [`OTHER`]. Bounds the hourly table at this many rows an hour per instance.
pub const NETWORKS_PER_HOUR: usize = 2_000;
/// The path or network of refusals past a cap (or without a known client address).
pub const OTHER: &str = "other";

/// A refusal of a request without a known user.
#[derive(Debug, Clone, Copy)]
pub struct AnonymousDenial<'a> {
    pub status: u16,
    pub reason: &'static str,
    /// The route template (`/admin/users/{id}`) or, for an unrouted request, its path.
    pub path: &'a str,
    pub ip: Option<IpAddr>,
}

/// The network a client address is counted under: its /24 (IPv4) or /64 (IPv6).
pub fn network_of(ip: IpAddr) -> IpNet {
    let ip = ip.to_canonical();
    let prefix = if ip.is_ipv4() { 24 } else { 64 };
    IpNet::new(ip, prefix).map_or(IpNet::from(ip), |net| net.trunc())
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MinuteKey {
    minute: i64,
    status: i16,
    reason: &'static str,
    path: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct NetworkKey {
    hour: i64,
    status: i16,
    reason: &'static str,
    path: Arc<str>,
    network: Option<IpNet>,
}

/// Counts not yet in the database.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    by_minute: HashMap<MinuteKey, i64>,
    by_network: HashMap<NetworkKey, i64>,
}

impl Counts {
    fn is_empty(&self) -> bool {
        self.by_minute.is_empty() && self.by_network.is_empty()
    }

    /// Refusals counted here (every one is in both maps).
    pub(crate) fn total(&self) -> i64 {
        self.by_minute.values().sum()
    }

    fn merge(&mut self, other: Counts) {
        for (key, n) in other.by_minute {
            *self.by_minute.entry(key).or_default() += n;
        }
        for (key, n) in other.by_network {
            *self.by_network.entry(key).or_default() += n;
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    pending: Counts,
    minute: i64,
    paths: HashSet<Arc<str>>,
    hour: i64,
    networks: HashSet<NetworkKey>,
}

impl Tally {
    fn count(&mut self, denial: AnonymousDenial<'_>, now: i64) {
        let (minute, hour) = (now.div_euclid(60) * 60, now.div_euclid(3600) * 3600);
        if minute != self.minute {
            self.minute = minute;
            self.paths.clear();
        }
        if hour != self.hour {
            self.hour = hour;
            self.networks.clear();
        }
        let path = match self.paths.get(denial.path) {
            Some(path) => Arc::clone(path),
            None if self.paths.len() < PATHS_PER_MINUTE => {
                let path: Arc<str> = Arc::from(denial.path);
                self.paths.insert(Arc::clone(&path));
                path
            }
            None => Arc::from(OTHER),
        };
        let status = i16::try_from(denial.status).unwrap_or(i16::MAX);
        let minute_key = MinuteKey {
            minute,
            status,
            reason: denial.reason,
            path: Arc::clone(&path),
        };
        *self.pending.by_minute.entry(minute_key).or_default() += 1;
        let mut network_key = NetworkKey {
            hour,
            status,
            reason: denial.reason,
            path,
            network: denial.ip.map(network_of),
        };
        if !self.networks.contains(&network_key) {
            if self.networks.len() < NETWORKS_PER_HOUR {
                self.networks.insert(network_key.clone());
            } else {
                // The minute table keeps the path; here only the cap's one row remains.
                network_key.network = None;
                network_key.path = Arc::from(OTHER);
            }
        }
        *self.pending.by_network.entry(network_key).or_default() += 1;
    }
}

/// Counts anonymous refusals in memory until [`DenialCounter::flush`]; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct DenialCounter(Arc<Mutex<Tally>>);

impl DenialCounter {
    /// Counts one refusal: a hash-map increment under a lock held for nanoseconds.
    pub fn count(&self, denial: AnonymousDenial<'_>) {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count(denial, now);
    }

    /// Refusals counted but not yet written.
    pub fn pending(&self) -> i64 {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending
            .total()
    }

    pub(crate) fn take(&self) -> Counts {
        std::mem::take(
            &mut self
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pending,
        )
    }

    pub(crate) fn put_back(&self, counts: Counts) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending
            .merge(counts);
    }

    /// Adds the pending counts to the database. On failure they are kept for the next try.
    pub async fn flush(&self, pool: &PgPool) -> sqlx::Result<()> {
        let counts = self.take();
        if counts.is_empty() {
            return Ok(());
        }
        match upsert(pool, &counts).await {
            Ok(()) => Ok(()),
            Err(err) => {
                self.put_back(counts);
                Err(err)
            }
        }
    }
}

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Columns of per-minute or per-hour rows, for `UNNEST`.
#[derive(Default)]
struct Columns {
    at: Vec<OffsetDateTime>,
    status: Vec<i16>,
    reason: Vec<String>,
    path: Vec<String>,
    count: Vec<i64>,
}

impl Columns {
    fn of(rows: impl Iterator<Item = (i64, i16, &'static str, Arc<str>, i64)>) -> Columns {
        let mut columns = Columns::default();
        for (seconds, status, reason, path, n) in rows {
            columns.at.push(at(seconds));
            columns.status.push(status);
            columns.reason.push(reason.to_owned());
            columns.path.push(path.to_string());
            columns.count.push(n);
        }
        columns
    }
}

/// All tables in one transaction, so a failure leaves none half-counted. Rows go in key
/// order (`ORDER BY`), so instances upserting the same keys lock them in the same order
/// and never deadlock.
async fn upsert(pool: &PgPool, counts: &Counts) -> sqlx::Result<()> {
    let minutes = Columns::of(
        counts
            .by_minute
            .iter()
            .map(|(k, n)| (k.minute, k.status, k.reason, Arc::clone(&k.path), *n)),
    );
    let mut by_hour: HashMap<(i64, i16, &'static str, Arc<str>), i64> = HashMap::default();
    for (key, n) in &counts.by_minute {
        let hour = key.minute.div_euclid(3600) * 3600;
        *by_hour
            .entry((hour, key.status, key.reason, Arc::clone(&key.path)))
            .or_default() += n;
    }
    let hours = Columns::of(
        by_hour
            .into_iter()
            .map(|((hour, status, reason, path), n)| (hour, status, reason, path, n)),
    );
    let mut tx = pool.begin().await?;
    // Minutes and hours in one statement (one round trip), in key order so that two
    // instances flushing at once take their row locks in the same order.
    sqlx::query!(
        r#"
        WITH by_minute AS (
            INSERT INTO audit_denials_by_minute (minute, status, reason, path, count)
            SELECT * FROM UNNEST($1::timestamptz[], $2::smallint[], $3::text[], $4::text[],
                                 $5::bigint[])
            ORDER BY 1, 2, 3, 4
            ON CONFLICT (minute, status, reason, path)
            DO UPDATE SET count = audit_denials_by_minute.count + EXCLUDED.count)
        INSERT INTO audit_denials_by_hour (hour, status, reason, path, count)
        SELECT * FROM UNNEST($6::timestamptz[], $7::smallint[], $8::text[], $9::text[],
                             $10::bigint[])
        ORDER BY 1, 2, 3, 4
        ON CONFLICT (hour, status, reason, path)
        DO UPDATE SET count = audit_denials_by_hour.count + EXCLUDED.count
        "#,
        &minutes.at,
        &minutes.status,
        &minutes.reason,
        &minutes.path,
        &minutes.count,
        &hours.at,
        &hours.status,
        &hours.reason,
        &hours.path,
        &hours.count,
    )
    .execute(&mut *tx)
    .await?;

    let n = counts.by_network.len();
    let (mut hour, mut status, mut reason, mut path, mut network, mut count) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (key, n) in &counts.by_network {
        hour.push(at(key.hour));
        status.push(key.status);
        reason.push(key.reason.to_owned());
        path.push(key.path.to_string());
        network.push(
            key.network
                .map_or_else(|| OTHER.to_owned(), |net| net.to_string()),
        );
        count.push(*n);
    }
    sqlx::query!(
        r#"
        INSERT INTO audit_denials_by_network (hour, status, reason, path, network, count)
        SELECT * FROM UNNEST($1::timestamptz[], $2::smallint[], $3::text[], $4::text[],
                             $5::text[], $6::bigint[])
        ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (hour, status, reason, path, network)
        DO UPDATE SET count = audit_denials_by_network.count + EXCLUDED.count
        "#,
        &hour,
        &status,
        &reason,
        &path,
        &network,
        &count,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial<'a>(path: &'a str, ip: &str) -> AnonymousDenial<'a> {
        AnonymousDenial {
            status: 401,
            reason: "no_session",
            path,
            ip: ip.parse().ok(),
        }
    }

    #[test]
    fn addresses_are_counted_by_network() {
        let net = |ip: &str| network_of(ip.parse().expect("ip")).to_string();
        assert_eq!(net("203.0.113.77"), "203.0.113.0/24");
        assert_eq!(net("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(net("::ffff:198.51.100.9"), "198.51.100.0/24");
    }

    #[test]
    fn a_flood_is_a_few_counters_and_caps_bound_what_clients_choose() {
        let mut tally = Tally::default();
        for i in 0..10_000u32 {
            tally.count(
                denial("/account", &format!("10.{}.{}.1", i / 256, i % 256)),
                120,
            );
        }
        for i in 0..1_000 {
            tally.count(denial(&format!("/probe/{i}"), "192.0.2.1"), 130);
        }
        assert_eq!(tally.pending.total(), 11_000, "every refusal counted");
        // One minute: /account, 63 invented paths, then 'other'.
        assert_eq!(tally.pending.by_minute.len(), PATHS_PER_MINUTE + 1);
        let other = tally
            .pending
            .by_minute
            .iter()
            .find(|(key, _)| &*key.path == OTHER)
            .map(|(_, n)| *n);
        assert_eq!(other, Some(1_000 - (PATHS_PER_MINUTE as i64 - 1)));
        // The hour: at most the cap of networks, plus the 'other' rows.
        let named = tally
            .pending
            .by_network
            .keys()
            .filter(|key| key.network.is_some())
            .count();
        assert_eq!(named, NETWORKS_PER_HOUR);
        assert_eq!(tally.pending.by_network.len(), NETWORKS_PER_HOUR + 1);
        // A new minute and hour start afresh.
        tally.count(denial("/probe/new", "192.0.2.1"), 3_600);
        assert!(
            tally
                .pending
                .by_minute
                .keys()
                .any(|k| &*k.path == "/probe/new")
        );
    }
}
