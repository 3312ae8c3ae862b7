//! One PostgreSQL per test process (the private cluster, or DATABASE_URL), and a fresh
//! database per test cloned from a migrated template.

use std::{
    str::FromStr,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use portcullis::db::{Cluster, ClusterOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool, postgres::PgConnectOptions};

struct TestServer {
    /// Connection to the server's maintenance database, for CREATE DATABASE.
    admin: PgConnectOptions,
    template: String,
    /// URL prefix for subprocesses (CLI tests): append a database name.
    url_for: Box<dyn Fn(&str) -> String + Send + Sync>,
    /// Keeps the private cluster alive for the whole process; it stops when the process
    /// exits (parent-death signal), also if the run is killed.
    _cluster: Option<Mutex<Cluster>>,
}

static SERVER: OnceLock<TestServer> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

fn pid_alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Leftovers of earlier, killed runs: their clusters' directories.
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("pc-it-")) else {
            continue;
        };
        let pid = pid.split('-').next().unwrap_or_default();
        if pid.parse::<i32>().is_ok_and(|pid| !pid_alive(pid)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn server() -> &'static TestServer {
    SERVER.get_or_init(|| {
        let pid = std::process::id();
        let template = format!("pc_it_template_{pid}");
        let server = match std::env::var("DATABASE_URL") {
            Ok(url) => {
                let admin = PgConnectOptions::from_str(&url).expect("DATABASE_URL parses");
                let base = url.clone();
                TestServer {
                    admin,
                    template: template.clone(),
                    url_for: Box::new(move |db| with_database(&base, db)),
                    _cluster: None,
                }
            }
            Err(_) => {
                remove_stale_clusters();
                let dir = std::path::PathBuf::from(format!("/tmp/pc-it-{pid}"));
                let cluster = Cluster::start(&ClusterOptions {
                    data_dir: dir,
                    ephemeral: true,
                })
                .unwrap_or_else(|e| panic!("starting the test cluster: {e}"));
                let admin = cluster.connect_options("postgres");
                let socket = cluster.socket_dir().to_path_buf();
                TestServer {
                    admin,
                    template: template.clone(),
                    url_for: Box::new(move |db| {
                        format!(
                            "postgres://postgres@localhost:5432/{db}?host={}",
                            socket.display()
                        )
                    }),
                    _cluster: Some(Mutex::new(cluster)),
                }
            }
        };
        // The template is built once, on its own runtime (each test has its own runtime,
        // and a connection must not outlive the runtime that made it).
        let admin = server.admin.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(build_template(admin, template));
        })
        .join()
        .expect("building the template database");
        server
    })
}

/// Replaces the database name in a URL (keeping its query string).
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let root = path_start.map_or(base, |i| &base[..i]);
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

async fn build_template(admin: PgConnectOptions, template: String) {
    let mut conn = admin.connect().await.expect("connect to the test server");
    // Databases of earlier runs of this suite whose process is gone (shared servers only).
    let stale: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'pc\\_it\\_%'")
            .fetch_all(&mut conn)
            .await
            .expect("list databases");
    for name in stale {
        // Names are pc_it_template_<pid> and pc_it_<pid>_<n>.
        let owner = name
            .strip_prefix("pc_it_template_")
            .or_else(|| {
                name.strip_prefix("pc_it_")
                    .and_then(|rest| rest.split('_').next())
            })
            .and_then(|pid| pid.parse::<i32>().ok());
        if owner.is_some_and(|pid| !pid_alive(pid)) || name == template {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                .await;
        }
    }
    conn.execute(format!("CREATE DATABASE \"{template}\"").as_str())
        .await
        .expect("create template");
    conn.close().await.ok();
    let pool = PgPool::connect_with(server_options(&admin, &template))
        .await
        .expect("connect to template");
    portcullis::db::migrate(&pool)
        .await
        .expect("migrate template");
    pool.close().await;
}

fn server_options(admin: &PgConnectOptions, db: &str) -> PgConnectOptions {
    admin.clone().database(db)
}

/// A fresh, migrated database for one test.
pub async fn fresh_database() -> (PgPool, String) {
    let server = server();
    let name = format!(
        "pc_it_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = server.admin.connect().await.expect("connect");
    conn.execute(
        format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{}\"",
            server.template
        )
        .as_str(),
    )
    .await
    .expect("create test database");
    conn.close().await.ok();
    (pool_for(&name).await, name)
}

/// Connection options for an existing test database.
pub fn database_options(name: &str) -> PgConnectOptions {
    server_options(&server().admin, name)
}

/// A new pool on an existing test database.
pub async fn pool_for(name: &str) -> PgPool {
    portcullis::db::pool_options(5)
        .connect_with(server_options(&server().admin, name))
        .await
        .expect("connect to test database")
}

/// A fresh, empty database (no migrations), for tests of the migration commands.
pub async fn fresh_database_unmigrated() -> (PgPool, String) {
    let server = server();
    let name = format!(
        "pc_it_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = server.admin.connect().await.expect("connect");
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .expect("create test database");
    conn.close().await.ok();
    (pool_for(&name).await, name)
}

/// A connection to the server's maintenance database.
pub async fn admin_connection() -> sqlx::PgConnection {
    server()
        .admin
        .connect()
        .await
        .expect("connect to the maintenance database")
}

/// `postgres://` URL of a test database, for subprocesses.
pub fn database_url(name: &str) -> String {
    (server().url_for)(name)
}
