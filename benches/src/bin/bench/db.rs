//! The benchmark's PostgreSQL: a fresh private cluster (default) or DATABASE_URL, one
//! database per server, and the statistics that count statements and writes.

use std::{path::Path, str::FromStr, time::Duration};

use anyhow::Context;
use portcullis::db::{Cluster, ClusterOptions};
use serde::{Deserialize, Serialize};
use sqlx::{
    ConnectOptions, Connection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use url::Url;

use crate::proxy::Upstream;

/// Server settings the benchmark needs on its private cluster: statement statistics, and
/// room for three servers' pools plus the round-trip census instances.
const CLUSTER_SETTINGS: [(&str, &str); 2] = [
    ("shared_preload_libraries", "pg_stat_statements"),
    ("max_connections", "200"),
];

pub struct Db {
    /// The private cluster, if this run started one: stopped by [`Db::close`] (a
    /// `Cluster` does not stop itself when dropped).
    cluster: Option<Cluster>,
    /// A URL whose path is replaced per database.
    base: Url,
    pub upstream: Upstream,
    admin: PgPool,
    /// Whether pg_stat_statements is loaded (always on the private cluster).
    pub statements: bool,
    pub description: String,
}

/// Starts a fresh private cluster in `dir` with pg_stat_statements preloaded: `initdb`,
/// then `ALTER SYSTEM` and a restart (a preload library needs a restart). Blocking.
pub fn start_cluster(dir: &Path, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Cluster> {
    stop_leftover(dir);
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let options = ClusterOptions {
        data_dir: dir.to_path_buf(),
        // Production durability (fsync, synchronous commit): sign-in writes pay for it as
        // they would in service.
        ephemeral: false,
    };
    let cluster = Cluster::start(&options)?;
    runtime.block_on(async {
        let mut conn = cluster.connect_options("postgres").connect().await?;
        for (name, value) in CLUSTER_SETTINGS {
            sqlx::query(&format!("ALTER SYSTEM SET {name} = '{value}'"))
                .execute(&mut conn)
                .await
                .with_context(|| format!("setting {name}"))?;
        }
        conn.close().await?;
        anyhow::Ok(())
    })?;
    cluster.stop();
    Ok(Cluster::start(&options)?)
}

/// A cluster left running by a killed earlier run (its parent-death signal normally stops
/// it; this covers the rest).
fn stop_leftover(dir: &Path) {
    let pid_file = dir.join("postgres").join("postmaster.pid");
    let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok())
    else {
        return;
    };
    let pid = nix::unistd::Pid::from_raw(pid);
    if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).is_err() {
        return;
    }
    for _ in 0..100 {
        if nix::sys::signal::kill(pid, None).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Db {
    pub async fn open(cluster: Option<Cluster>, database_url: Option<&str>) -> anyhow::Result<Db> {
        let (base, upstream, cluster) = match (cluster, database_url) {
            (Some(cluster), _) => {
                let base = Url::parse(&cluster.url("postgres"))?;
                let socket = cluster.socket_dir().join(".s.PGSQL.5432");
                (base, Upstream::Unix(socket), Some(cluster))
            }
            (None, Some(url)) => {
                let options = PgConnectOptions::from_str(url).context("DATABASE_URL")?;
                let upstream = match options.get_socket() {
                    Some(dir) => {
                        Upstream::Unix(dir.join(format!(".s.PGSQL.{}", options.get_port())))
                    }
                    None => Upstream::Tcp(format!("{}:{}", options.get_host(), options.get_port())),
                };
                (Url::parse(url).context("DATABASE_URL")?, upstream, None)
            }
            (None, None) => anyhow::bail!("no database: start a cluster or set DATABASE_URL"),
        };
        let admin_url = base.to_string();
        let admin = PgPoolOptions::new()
            .max_connections(2)
            .connect(&admin_url)
            .await
            .context("connecting to PostgreSQL")?;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&admin)
            .await?;
        let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&admin).await?;
        let sync_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&admin)
            .await?;
        let statements = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&admin)
            .await
            .is_ok()
            && sqlx::query("SELECT 1 FROM pg_stat_statements LIMIT 1")
                .execute(&admin)
                .await
                .is_ok();
        let kind = if cluster.is_some() {
            "private cluster started by the bench, Unix socket"
        } else {
            "DATABASE_URL"
        };
        let description = format!(
            "PostgreSQL {version} ({kind}; fsync={fsync}, synchronous_commit={sync_commit}{})",
            if statements {
                ", pg_stat_statements"
            } else {
                "; pg_stat_statements not loaded: statements counted as transactions"
            }
        );
        Ok(Db {
            cluster,
            base,
            upstream,
            admin,
            statements,
            description,
        })
    }

    /// CPU time (µs) used so far by the private cluster's processes: the postmaster (with
    /// the backends that have exited) and its live children. `None` with DATABASE_URL.
    pub fn postgres_cpu_us(&self) -> Option<u64> {
        let cluster = self.cluster.as_ref()?;
        let pid_file = std::fs::read_to_string(cluster.pgdata().join("postmaster.pid")).ok()?;
        let postmaster: u32 = pid_file.lines().next()?.trim().parse().ok()?;
        let mut total = crate::servers::cpu_us_with_children_of(postmaster);
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if crate::servers::parent_of(pid) == Some(postmaster) {
                total += crate::servers::cpu_us_of(pid);
            }
        }
        Some(total)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        let mut url = self.base.clone();
        url.set_path(&format!("/{name}"));
        url.to_string()
    }

    /// The URL of database `name` through the census proxy on 127.0.0.1:`port` (TLS off,
    /// so the proxy can read the protocol).
    pub fn proxied_url(&self, name: &str, port: u16) -> anyhow::Result<String> {
        let mut url = self.base.clone();
        url.set_path(&format!("/{name}"));
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "host" && k != "sslmode" && k != "port")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.set_host(Some("127.0.0.1"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        url.set_port(Some(port))
            .map_err(|()| anyhow::anyhow!("cannot set the port"))?;
        url.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("sslmode", "disable");
        Ok(url.to_string())
    }

    /// Closes this run's connections and hands back the private cluster, to be stopped.
    pub async fn close(self) -> Option<Cluster> {
        self.admin.close().await;
        self.cluster
    }

    /// Drops and creates database `name`, with pg_stat_statements, and returns a pool on it.
    pub async fn recreate(&self, name: &str) -> anyhow::Result<PgPool> {
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&self.admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&self.admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url(name))
            .await?;
        Ok(pool)
    }

    pub async fn drop_database(&self, name: &str) {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&self.admin)
            .await;
    }

    /// Counters of database `name` before a measurement; see [`DbDelta`].
    pub async fn mark(&self, name: &str, pool: &PgPool) -> anyhow::Result<DbMark> {
        let tuples = tuples_written(pool).await?;
        let transactions = self.transactions(name).await?;
        if self.statements {
            sqlx::query("SELECT pg_stat_statements_reset()")
                .execute(&self.admin)
                .await?;
        }
        Ok(DbMark {
            tuples,
            transactions,
        })
    }

    /// What database `name` did since `mark`. Waits for the servers' backends to flush
    /// their table statistics (PostgreSQL 15 does so at most once a second).
    pub async fn delta(&self, name: &str, pool: &PgPool, mark: DbMark) -> anyhow::Result<DbDelta> {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let queries: Vec<QueryCalls> = if self.statements {
            sqlx::query_as::<_, (String, i64, i64, f64)>(
                "SELECT s.query, s.calls, s.rows, s.total_exec_time FROM pg_stat_statements s \
                 JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1 \
                 ORDER BY s.calls DESC",
            )
            .bind(name)
            .fetch_all(&self.admin)
            .await?
            .into_iter()
            .map(|(query, calls, rows, exec_ms)| QueryCalls {
                write: is_write(&query),
                query: one_line(&query),
                calls: calls as u64,
                rows: rows as u64,
                exec_ms,
            })
            .collect()
        } else {
            Vec::new()
        };
        let transactions = self.transactions(name).await? - mark.transactions;
        // With pg_stat_statements, rows written are the rows of the write statements run
        // in this window. Table statistics are flushed by each backend up to ten seconds
        // late when it goes idle, so they would charge this window with a previous
        // scenario's writes (e.g. the audit trail of the 401 flood).
        let tuples = if self.statements {
            queries
                .iter()
                .filter(|q| q.write)
                .map(|q| q.rows as i64)
                .sum()
        } else {
            tuples_written(pool).await? - mark.tuples
        };
        Ok(DbDelta {
            statements: self
                .statements
                .then(|| queries.iter().map(|q| q.calls).sum()),
            write_statements: self
                .statements
                .then(|| queries.iter().filter(|q| q.write).map(|q| q.calls).sum()),
            transactions: transactions.max(0) as u64,
            tuples_written: tuples.max(0) as u64,
            queries,
        })
    }

    async fn transactions(&self, name: &str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = $1",
        )
        .bind(name)
        .fetch_one(&self.admin)
        .await?)
    }
}

async fn tuples_written(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables",
    )
    .fetch_one(pool)
    .await?)
}

fn is_write(query: &str) -> bool {
    let q = query.trim_start().to_ascii_lowercase();
    ["insert", "update", "delete", "merge"]
        .iter()
        .any(|w| q.starts_with(w))
        || (q.starts_with("with") && ["insert", "update", "delete"].iter().any(|w| q.contains(w)))
}

fn one_line(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Debug, Clone, Copy)]
pub struct DbMark {
    tuples: i64,
    transactions: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryCalls {
    pub query: String,
    pub calls: u64,
    pub rows: u64,
    pub write: bool,
    /// Time PostgreSQL spent executing the calls (`total_exec_time`; planning and the
    /// protocol round trip not included): what each server's queries cost the database.
    #[serde(default)]
    pub exec_ms: f64,
}

/// What one server's database did during a measurement.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DbDelta {
    /// Statements executed (pg_stat_statements calls), when available.
    pub statements: Option<u64>,
    /// Of which INSERT/UPDATE/DELETE.
    pub write_statements: Option<u64>,
    /// Committed plus rolled-back transactions (pg_stat_database).
    pub transactions: u64,
    /// Rows inserted, updated or deleted in user tables (pg_stat_user_tables).
    pub tuples_written: u64,
    pub queries: Vec<QueryCalls>,
}

impl DbDelta {
    pub fn add(&mut self, other: &DbDelta) {
        let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.statements = sum(self.statements, other.statements);
        self.write_statements = sum(self.write_statements, other.write_statements);
        self.transactions += other.transactions;
        self.tuples_written += other.tuples_written;
        for q in &other.queries {
            match self.queries.iter_mut().find(|mine| mine.query == q.query) {
                Some(mine) => {
                    mine.calls += q.calls;
                    mine.rows += q.rows;
                    mine.exec_ms += q.exec_ms;
                }
                None => self.queries.push(q.clone()),
            }
        }
        self.queries.sort_by_key(|q| std::cmp::Reverse(q.calls));
    }
}
