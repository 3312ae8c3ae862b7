//! Database selection (DATABASE_URL or the private cluster), pool and migrations.

pub mod cluster;
pub mod data_dir;

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    ConnectOptions, Connection, Executor, PgConnection, PgPool, Row,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::DatabaseArgs;
pub use cluster::{Cluster, ClusterOptions};

/// The database the app uses, and the private cluster behind it when there is one.
pub struct Database {
    pub options: PgConnectOptions,
    pub cluster: Option<Cluster>,
    /// Whether `random_page_cost` is the server's default: asked once, for every pool.
    page_cost_default: tokio::sync::OnceCell<bool>,
}

const APP_DATABASE: &str = "portcullis";

impl Database {
    /// Resolves the database: DATABASE_URL when given, else the private cluster in the data
    /// directory (started now, or joined when already running). Blocking: call at start-up.
    pub fn open(args: &DatabaseArgs) -> anyhow::Result<Database> {
        if let Some(url) = &args.database_url {
            let options = PgConnectOptions::from_str(url)
                .context("DATABASE_URL is not a valid PostgreSQL URL")?;
            return Ok(Database::at(options, None));
        }
        let (data_dir, fallback) = data_dir::resolve_data_dir(args.data_dir.as_deref());
        if let Some(why) = fallback {
            tracing::warn!("{why}");
        }
        let cluster = Cluster::start(&ClusterOptions {
            data_dir,
            ephemeral: false,
        })?;
        Ok(Database::at(
            cluster.connect_options(APP_DATABASE),
            Some(cluster),
        ))
    }

    /// The database at `options` (in `cluster`, when the app runs its own).
    pub fn at(options: PgConnectOptions, cluster: Option<Cluster>) -> Database {
        Database {
            options,
            cluster,
            page_cost_default: tokio::sync::OnceCell::new(),
        }
    }

    /// Creates the app's database in the private cluster on first run.
    pub async fn ensure_created(&self) -> anyhow::Result<()> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let mut conn = cluster
            .connect_options("postgres")
            .connect()
            .await
            .context("connecting to the private PostgreSQL cluster")?;
        create_database_if_missing(&mut conn, APP_DATABASE).await?;
        conn.close().await.ok();
        Ok(())
    }

    pub async fn pool(&self, settings: PoolSettings) -> anyhow::Result<PgPool> {
        let mut options = self.options.clone();
        if settings.pgbouncer {
            // PgBouncer < 1.21 in transaction pooling mode hands each transaction to any
            // server connection, so a statement prepared on one may be executed on another:
            // no statement cache. With the cache off, the patched driver prepares and closes
            // each statement within the implicit transaction that executes it
            // (vendor/sqlx-postgres/PORTCULLIS-PATCH.md); one more round trip per query.
            // PgBouncer also refuses startup parameters it does not know
            // (`extra_float_digits`, `options`), so statement_timeout must be set on the
            // role or database instead (`ALTER ROLE … SET statement_timeout = '5s'`).
            options = options.statement_cache_capacity(0).extra_float_digits(None);
        } else {
            let mut startup = Vec::new();
            if let Some(timeout) = settings.statement_timeout {
                // A runaway query cannot hold a connection (and a request) for long.
                startup.push(("statement_timeout", format!("{}ms", timeout.as_millis())));
            }
            let page_cost_default = *self
                .page_cost_default
                .get_or_init(|| random_page_cost_is_default(&self.options))
                .await;
            if page_cost_default {
                startup.push(("random_page_cost", PAGE_COST.to_owned()));
            }
            if !startup.is_empty() {
                options = options.options(startup);
            }
        }
        let pool = pool_options(settings.size)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .context("connecting to PostgreSQL")?;
        Ok(pool)
    }

    /// Lets go of the private cluster: stops it unless other processes still use it.
    /// Call after closing the pool.
    pub async fn release(self) {
        if let Some(cluster) = self.cluster {
            cluster.release().await;
        }
    }
}

/// The line to tell the operator when `err` comes from the driver's named prepared
/// statements meeting a server connection shared with other clients: `prepared statement
/// "sqlx_s_1" already exists` (another client prepared its own `sqlx_s_1` there), `… does not
/// exist` (this one was prepared on another server connection), or a Bind that finds another
/// client's statement of that name. The names are counted per client connection and cached
/// on it, which only works when each client connection keeps its own server session: so the
/// connection goes through a pooler in transaction mode (PgBouncer) without `--db-pgbouncer`,
/// under which the driver prepares no named statements (see `Database::pool`). The raw error
/// says nothing of that, and repeats itself through the cause chain.
pub fn pgbouncer_switch_missing(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let said = std::iter::successors(Some(err), |err| err.source()).find_map(|err| {
        match err.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Database(db))
                if db.message().contains("prepared statement \"sqlx_s_") =>
            {
                Some(db.message().to_owned())
            }
            _ => None,
        }
    })?;
    Some(format!(
        "the database connection goes through PgBouncer in transaction pooling mode (or \
         another pooler that shares server connections between clients): add --db-pgbouncer \
         (or PORTCULLIS_DB_PGBOUNCER=true), set statement_timeout on the database role, and \
         run `portcullis migrate` directly against PostgreSQL (docs/DEPLOY.md, \"Scaling out\"); \
         the database said: {said}"
    ))
}

/// `random_page_cost` for the app's connections, unless the operator set one.
///
/// PostgreSQL's default (4.0) models spinning disks. With it, a small, analyzed `users`
/// table (a few hundred people: a few pages) looks cheaper to read whole than through its
/// primary key, so every signed-in request's session lookup scanned all users (a hash join
/// or a filtered scan): about a third of PostgreSQL's CPU per request in our measurement
/// (benches/ANALYSIS.md). The tables a request reads are small and cached; PostgreSQL's
/// documentation suggests 1.1 for such storage (SSDs, a cached working set).
const PAGE_COST: &str = "1.1";

/// Whether `random_page_cost` is still PostgreSQL's default for these connections: not set
/// in postgresql.conf, for the database or for the role. An operator's own value is kept.
/// On any error, `false`: leave the server's value alone.
async fn random_page_cost_is_default(options: &PgConnectOptions) -> bool {
    let checked = async {
        let mut conn: PgConnection = options.connect().await?;
        // The simple protocol: no named prepared statement. Through PgBouncer without
        // `--db-pgbouncer`, a named one here met another client's `sqlx_s_1`, failed, and
        // PgBouncer then dropped that server connection, so the migrations found a clean
        // one and the start went on instead of naming the missing switch (a flaky test).
        let row = sqlx::raw_sql("SELECT source FROM pg_settings WHERE name = 'random_page_cost'")
            .fetch_one(&mut conn)
            .await?;
        let source: String = row.try_get(0)?;
        conn.close().await.ok();
        Ok::<bool, sqlx::Error>(source == "default")
    };
    match checked.await {
        Ok(default) => default,
        Err(err) => {
            tracing::warn!(error = %err, "could not read random_page_cost; leaving it as it is");
            false
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub size: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Option<Duration>,
    /// Connecting through PgBouncer in transaction pooling mode (see `pool`).
    pub pgbouncer: bool,
}

impl PoolSettings {
    /// A small pool for the command line.
    pub fn cli(pgbouncer: bool) -> PoolSettings {
        PoolSettings {
            size: 2,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: None,
            pgbouncer,
        }
    }
}

/// Pool settings shared by the app and its tests.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        // A request waits this long for a connection before it gets a 503 page.
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings every connection before lending it out by default: a second round
        // trip on every request. The hot path is one round trip, so skip it; a connection
        // that broke while idle fails one request with a 503 and is dropped when released
        // (the failed query leaves an answer pending, so the release ping, which the
        // vendored driver skips only for a clean connection, runs and fails).
        .test_before_acquire(false)
}

pub async fn create_database_if_missing(conn: &mut PgConnection, name: &str) -> anyhow::Result<()> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        // Identifiers cannot be bound; `name` is our own constant or a test's generated name.
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .with_context(|| format!("creating database {name}"))?;
    }
    Ok(())
}

/// The migrations this build knows, tolerating newer ones in the database: during a
/// rolling upgrade the new version migrates first (expand), and instances of the old
/// version must keep starting against that schema.
fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator
}

/// Applies pending migrations. sqlx holds a PostgreSQL advisory lock while migrating, so
/// several instances starting at once apply each migration exactly once. (Session-level
/// advisory locks do not survive PgBouncer's transaction pooling: migrate directly against
/// PostgreSQL, e.g. `portcullis migrate` in the deploy pipeline.)
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    migrator()
        .run(pool)
        .await
        .context("applying database migrations")?;
    Ok(())
}

/// For `serve --no-migrate`: refuses a schema older than this build needs, with what to do.
pub async fn check_schema(pool: &PgPool) -> anyhow::Result<()> {
    let needed = migrator().iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Option<i64> =
        match sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
        {
            Ok(applied) => applied,
            // No migrations table: a database never migrated.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => None,
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context("could not read the database schema version")
                );
            }
        };
    match applied {
        Some(applied) if applied >= needed => Ok(()),
        applied => anyhow::bail!(
            "the database schema is at migration {} but this build needs {needed}: run \
             `portcullis migrate` (same DATABASE_URL) before starting it with --no-migrate",
            applied.map_or_else(|| "none".to_owned(), |v| v.to_string())
        ),
    }
}
