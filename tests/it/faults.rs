//! Faults: the database going away and coming back, and graceful shutdown mid-request.

use std::time::{Duration, Instant};

use portcullis::{
    App,
    auth::{Role, password::PasswordHasher},
    db::{Cluster, ClusterOptions},
    server::Stop,
};
use portcullis::{accounts::admin, audit::Actor};
use reqwest::StatusCode;
use sqlx::{ConnectOptions, Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

async fn start_cluster(dir: std::path::PathBuf) -> Cluster {
    tokio::task::spawn_blocking(move || {
        Cluster::start(&ClusterOptions {
            data_dir: dir,
            ephemeral: true,
        })
        .expect("start the outage test's own cluster")
    })
    .await
    .expect("join")
}

/// The app on its own PostgreSQL, which the test stops and starts.
#[tokio::test]
async fn a_database_outage_is_503_and_the_app_recovers_by_itself() {
    let dir = std::path::PathBuf::from(format!("/tmp/pc-it-{}-outage", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = start_cluster(dir.clone()).await;
    let mut admin = cluster
        .connect_options("postgres")
        .connect()
        .await
        .expect("connect");
    portcullis::db::create_database_if_missing(&mut admin, "portcullis")
        .await
        .expect("create db");
    admin.close().await.ok();
    let pool = portcullis::db::pool_options(4)
        .acquire_timeout(Duration::from_secs(1))
        .connect_with(cluster.connect_options("portcullis"))
        .await
        .expect("pool");
    portcullis::db::migrate(&pool).await.expect("migrate");
    let hasher = PasswordHasher::start(0).expect("hasher");
    admin::create(
        &pool,
        &hasher,
        &Actor::cli(),
        "steady",
        PASSWORD,
        Role::Member,
        8,
    )
    .await
    .expect("user");
    let app = App::build_with_hasher(pool.clone(), test_settings(), hasher)
        .await
        .expect("app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(app.serve(listener, std::future::pending::<Stop>()));

    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = browser
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let response = browser
        .post(format!("{base}/login"))
        .form(&[
            ("username", "steady"),
            ("password", PASSWORD),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        browser
            .get(format!("{base}/account"))
            .send()
            .await
            .expect("GET")
            .status(),
        StatusCode::OK
    );

    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .expect("stop");
    for (path, accept) in [
        ("/account", BROWSER_ACCEPT),
        ("/api/me", "application/json"),
        ("/readyz", "*/*"),
    ] {
        let started = Instant::now();
        let response = browser
            .get(format!("{base}{path}"))
            .header("accept", accept)
            .send()
            .await
            .expect("GET");
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{path} while the database is down"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{path} took {:?}",
            started.elapsed()
        );
        let body = response.text().await.expect("body");
        assert!(
            !body.contains("sqlx") && !body.contains("connection refused"),
            "{path} leaks internals: {body}"
        );
        if path == "/account" {
            assert!(body.contains("Temporarily unavailable"), "{body}");
        }
    }
    assert_eq!(
        browser
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("GET")
            .status(),
        StatusCode::OK
    );

    let _cluster = start_cluster(dir.clone()).await;
    // Connections broken by the restart fail once each and are replaced; no restart of the
    // app is needed, and the session and the account are intact.
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    let back = Instant::now();
    let mut refused = 0;
    for _ in 0..20 {
        status = browser
            .get(format!("{base}/account"))
            .send()
            .await
            .expect("GET")
            .status();
        if status == StatusCode::OK {
            break;
        }
        refused += 1;
        sleep(200).await;
    }
    eprintln!(
        "after the restart: {refused} request(s) answered 503 (pooled connections broken by \
         the restart), the first 200 after {:?}",
        back.elapsed()
    );
    assert_eq!(status, StatusCode::OK, "the app did not recover");
    let me: serde_json::Value = browser
        .get(format!("{base}/api/me"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(me["username"], "steady");
    assert_eq!(
        browser
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("GET")
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_graceful_stop_finishes_the_request_in_flight() {
    let app = TestApp::spawn().await;
    app.create_user("late", Role::Member).await;
    let browser = app.client();
    let csrf = app.login_csrf(&browser).await;
    let cookie = browser
        .cookie(&app.url("/"), app.settings.csrf_cookie_name())
        .expect("csrf cookie");
    let body = format!(
        "username=late&password={}&csrf={}",
        urlencode(PASSWORD),
        urlencode(&csrf)
    );
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    // `Expect: 100-continue`: the server answers "100 Continue" when the handler starts
    // reading the body, so the test knows the request is in flight without guessing.
    stream
        .write_all(
            format!(
                "POST /login HTTP/1.1\r\nHost: {}\r\nAccept: text/html\r\nCookie: {cookie}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
                 Expect: 100-continue\r\n\r\n",
                app.addr,
                body.len()
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let interim = read_head(&mut stream).await;
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    let addr = app.addr;
    let stopping = tokio::spawn(app.stop());
    // New connections are refused while draining...
    wait_until_refused(addr).await;
    // ...but the request in flight completes.
    stream.write_all(body.as_bytes()).await.expect("write body");
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("an answer")
        .expect("read");
    let head = String::from_utf8_lossy(&answer[..n]);
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("stopped")
        .expect("join");
}

/// The first answer (status line and headers) on `stream`, or what went wrong, within 10 s.
async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => head.extend_from_slice(&buffer[..n]),
            Ok(Err(err)) => return format!("read error: {err}"),
            Err(_) => return format!("no answer: {}", String::from_utf8_lossy(&head)),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// How many connections the kernel has completed for the listener on `addr` that wait for
/// `accept` (Linux: a listening socket's `rx_queue` in /proc/net/tcp); 0 if unknown.
fn accept_queue(addr: std::net::SocketAddr) -> u32 {
    let std::net::SocketAddr::V4(v4) = addr else {
        return 0;
    };
    // The table prints the address as the kernel's (network order) u32 in hex.
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
        .filter_map(|fields| fields.get(4)?.split_once(':'))
        .filter_map(|(_, rx_queue)| u32::from_str_radix(rx_queue, 16).ok())
        .sum()
}

/// Waits until `addr` refuses new connections (at most 10 s).
async fn wait_until_refused(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections 10 s after the stop"
        );
        sleep(10).await;
    }
}

/// On SIGTERM an instance first says it is going (`/readyz` 503, `Connection: close` on
/// every response) while still serving, so load balancers move on; then it stops accepting.
#[tokio::test]
async fn shutting_down_says_so_before_refusing_connections() {
    let app = TestApp::spawn_with(|s| s.drain_grace = Duration::from_millis(1500)).await;
    let addr = app.addr;
    let url = |path: &str| format!("http://{addr}{path}");
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(url("/readyz"))
            .send()
            .await
            .expect("GET")
            .status(),
        StatusCode::OK
    );
    let stopping = tokio::spawn(app.stop());
    // 200 until the stop is seen, then 503; every answer from a server still serving.
    let deadline = Instant::now() + Duration::from_secs(10);
    let response = loop {
        let response = client
            .get(url("/readyz"))
            .send()
            .await
            .expect("still serving");
        if response.status() != StatusCode::OK {
            break response;
        }
        assert!(Instant::now() < deadline, "/readyz still 200 after 10 s");
        sleep(10).await;
    };
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response
            .headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );
    let json: serde_json::Value = response.json().await.expect("json");
    assert_eq!(json["reason"], "draining");
    let response = client
        .get(url("/healthz"))
        .send()
        .await
        .expect("still serving");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "pages are still served during the grace"
    );
    // Once the grace has passed, no longer accepting.
    wait_until_refused(addr).await;
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("stopped")
        .expect("join");
}

/// A connection the kernel completed but the server had not yet accepted when the grace
/// ended (here: queued behind the one connection slot) is served, not reset: its client
/// may already have sent a POST that a proxy would not retry.
#[tokio::test]
async fn connections_queued_when_the_grace_ends_are_served() {
    let app = TestApp::spawn_with(|s| {
        s.max_connections = 1;
        s.drain_grace = Duration::from_millis(500);
    })
    .await;
    let addr = app.addr;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    // Takes the only slot and keeps it, idle, after one answered request.
    let mut holder = tokio::net::TcpStream::connect(addr).await.expect("connect");
    holder.write_all(request.as_bytes()).await.expect("write");
    assert!(read_head(&mut holder).await.starts_with("HTTP/1.1 200"));
    // Completed by the kernel, waiting in the accept queue with its request sent. Looked
    // at after the server has had a chance to run: with no free slot, it must not take it.
    let mut queued = tokio::net::TcpStream::connect(addr).await.expect("connect");
    queued.write_all(request.as_bytes()).await.expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        sleep(10).await;
        if accept_queue(addr) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second connection is not waiting in the accept queue"
        );
    }
    let stopping = tokio::spawn(app.stop());
    let head = read_head(&mut queued).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("stopped")
        .expect("join");
    drop(holder);
}

/// The vendored driver skips the pool's ping on release for a clean connection
/// (vendor/sqlx-postgres/PORTCULLIS-PATCH.md) and keeps it for any other. A transaction
/// dropped without commit queues its ROLLBACK; the ping on release is what sends it. Were
/// it skipped, the row lock would stay held while the connection sits idle in the pool,
/// and the other connection's lock would time out.
#[tokio::test]
async fn a_dropped_transaction_releases_its_locks_when_its_connection_returns() {
    let (pool, _name) = fresh_database().await;
    sqlx::query("CREATE TABLE locked (id int PRIMARY KEY)")
        .execute(&pool)
        .await
        .expect("table");
    sqlx::query("INSERT INTO locked VALUES (1)")
        .execute(&pool)
        .await
        .expect("row");
    let mut other = pool.acquire().await.expect("second connection");
    {
        let mut abandoned = pool.begin().await.expect("begin");
        sqlx::query("SELECT id FROM locked WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *abandoned)
            .await
            .expect("lock");
        // Dropped here without commit, as a cancelled request drops its transaction.
    }
    sqlx::query("SET lock_timeout = '3s'")
        .execute(&mut *other)
        .await
        .expect("lock_timeout");
    let started = Instant::now();
    let locked = sqlx::query("SELECT id FROM locked WHERE id = 1 FOR UPDATE")
        .fetch_one(&mut *other)
        .await;
    assert!(
        locked.is_ok(),
        "the abandoned transaction still held its lock: {locked:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// The app's connections plan with `random_page_cost` 1.1 (a small, cached working set:
/// otherwise a few hundred users are scanned whole on every session lookup), unless the
/// operator set a value of their own, which is kept.
#[tokio::test]
async fn the_app_lowers_random_page_cost_unless_the_operator_set_one() {
    let (pool, name) = fresh_database().await;
    pool.close().await;
    let settings = portcullis::db::PoolSettings {
        size: 1,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Some(Duration::from_secs(5)),
        pgbouncer: false,
    };
    let database = portcullis::db::Database::at(database_options(&name), None);
    let show = async |pool: &sqlx::PgPool| -> (String, String) {
        sqlx::query_as(
            "SELECT current_setting('random_page_cost'), current_setting('statement_timeout')",
        )
        .fetch_one(pool)
        .await
        .expect("settings")
    };
    let app_pool = database.pool(settings).await.expect("pool");
    assert_eq!(show(&app_pool).await, ("1.1".into(), "5s".into()));
    app_pool.close().await;

    let mut admin = admin_connection().await;
    sqlx::query(&format!(
        "ALTER DATABASE \"{name}\" SET random_page_cost = 2"
    ))
    .execute(&mut admin)
    .await
    .expect("alter database");
    // A new start asks again.
    let database = portcullis::db::Database::at(database_options(&name), None);
    let app_pool = database.pool(settings).await.expect("pool");
    assert_eq!(show(&app_pool).await, ("2".into(), "5s".into()));
    app_pool.close().await;
}
