//! Before the measurements: the databases seeded with the same users, the servers
//! started; and the round-trip census, which runs a second instance of each server.

use std::{path::Path, time::Duration};

use portcullis::{
    accounts::admin,
    audit::Actor,
    auth::{Role, password::PasswordHasher},
};
use sqlx::PgPool;

use crate::{
    Census, Plan, REPO, Subject,
    db::Db,
    load::{Load, Request},
    log, proxy,
    servers::{Server, free_port},
    sessions, stages,
};

/// Everyone the sign-in and page scenarios use: the page users, then the flood's.
fn all_users(plan: &Plan) -> impl Iterator<Item = String> {
    (0..plan.users)
        .map(sessions::member)
        .chain((0..plan.flood_users).map(sessions::flooder))
}

pub async fn seed_portcullis(
    db: &Db,
    name: &str,
    hasher: &PasswordHasher,
    plan: &Plan,
) -> anyhow::Result<PgPool> {
    let pool = db.recreate(name).await?;
    portcullis::db::migrate(&pool).await?;
    for name in all_users(plan) {
        admin::create(
            &pool,
            hasher,
            &Actor::cli(),
            &name,
            portcullis_bench::PASSWORD,
            Role::Member,
            15,
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating {name}: {e}"))?;
    }
    Ok(pool)
}

pub async fn seed_ceiling(db: &Db, plan: &Plan) -> anyhow::Result<PgPool> {
    let pool = db.recreate("bench_ceiling").await?;
    portcullis_bench::apply_schema(&pool, portcullis_bench::CEILING_SCHEMA).await?;
    for k in 0..plan.users {
        sqlx::query("INSERT INTO users (username, role) VALUES ($1, 'member')")
            .bind(sessions::member(k))
            .execute(&pool)
            .await?;
    }
    for i in 0..plan.sessions {
        let token = sessions::random_token();
        sqlx::query(
            "INSERT INTO tokens (token, user_id, expires_at) \
             SELECT $1, id, now() + interval '1 day' FROM users WHERE username = $2",
        )
        .bind(token)
        .bind(sessions::member(i % plan.users))
        .execute(&pool)
        .await?;
    }
    Ok(pool)
}

pub async fn seed_peer(db: &Db, plan: &Plan) -> anyhow::Result<PgPool> {
    let pool = db.recreate("bench_peer").await?;
    portcullis_bench::apply_schema(&pool, portcullis_bench::PEER_SCHEMA).await?;
    for name in all_users(plan) {
        // password_auth's defaults are argon2id m=19456 KiB, t=2, p=1: Portcullis' own.
        let hash = tokio::task::spawn_blocking(|| {
            password_auth::generate_hash(portcullis_bench::PASSWORD)
        })
        .await?;
        sqlx::query("INSERT INTO users (username, password, role) VALUES ($1, $2, 'member')")
            .bind(name)
            .bind(hash)
            .execute(&pool)
            .await?;
    }
    Ok(pool)
}

/// Whose tables [`populate`] fills.
#[derive(Clone, Copy)]
pub enum Schema {
    Portcullis,
    Ceiling,
    Peer,
}

/// Gives a server's database the size of a deployment's: `plan.residents` more accounts
/// and `plan.resident_sessions` live sessions among them (none of them used by a
/// scenario), then fresh statistics for every table.
///
/// With only the benchmark's 32 accounts and 64 sessions, PostgreSQL planned each server's
/// lookup by what its statistics happened to say about a toy. Portcullis' tables, analysed
/// by autovacuum after the sign-ins, got a hash join that reads every user on every
/// request; the ceiling's users table, never analysed, was taken for a larger one and got
/// an index lookup, which costs PostgreSQL less CPU per statement. The ratios measured
/// that accident (benches/ANALYSIS.md). In tables of a deployment's size every server's
/// lookup is an index lookup, in each of the three databases alike.
pub async fn populate(pool: &PgPool, schema: Schema, plan: &Plan) -> anyhow::Result<()> {
    let users = i64::try_from(plan.residents)?;
    let sessions = i64::try_from(plan.resident_sessions)?;
    if users == 0 {
        return Ok(());
    }
    // Each session belongs to resident `1 + i % users`; tokens derive from `i`, so they are
    // unique and never collide with a random one of 16 bytes or more.
    let statements: &[&str] = match schema {
        Schema::Portcullis => &[
            "INSERT INTO users (username, username_key, role) \
             SELECT 'resident' || i, 'resident' || i, 'member' FROM generate_series(1, $1) i",
            "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, \
                 idle_expires_at, absolute_expires_at, ip, user_agent, authenticated_at, \
                 auth_method) \
             SELECT sha256(convert_to('resident session ' || i, 'UTF8')), u.id, \
                 now() - interval '1 hour', now() - interval '5 minutes', \
                 now() + interval '1 day', now() + interval '7 days', '192.0.2.1', \
                 'Mozilla/5.0 (X11; Linux x86_64)', now() - interval '1 hour', 'password' \
             FROM generate_series(1, $2) i \
             JOIN users u ON u.username = 'resident' || (1 + i % $1)",
        ],
        Schema::Ceiling => &[
            "INSERT INTO users (username, role) \
             SELECT 'resident' || i, 'member' FROM generate_series(1, $1) i",
            "INSERT INTO tokens (token, user_id, expires_at, ip, user_agent) \
             SELECT encode(sha256(convert_to('resident session ' || i, 'UTF8')), 'hex'), u.id, \
                 now() + interval '1 day', '192.0.2.1', 'Mozilla/5.0 (X11; Linux x86_64)' \
             FROM generate_series(1, $2) i \
             JOIN users u ON u.username = 'resident' || (1 + i % $1)",
        ],
        // The peer never signs residents in: a password that is no hash is never read.
        Schema::Peer => &[
            "INSERT INTO users (username, password, role) \
             SELECT 'resident' || i, 'not-a-hash', 'member' FROM generate_series(1, $1) i",
            "INSERT INTO tower_sessions.session (id, data, expiry_date) \
             SELECT encode(sha256(convert_to('resident session ' || i, 'UTF8')), 'base64'), \
                 '\\x80'::bytea, now() + interval '1 day' \
             FROM generate_series(1, $2) i",
        ],
    };
    for statement in statements {
        sqlx::query(statement)
            .bind(users)
            .bind(sessions)
            .execute(pool)
            .await?;
    }
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

pub async fn start_portcullis(
    bins: &Path,
    db: &Db,
    db_name: &str,
    logs: &Path,
    extra: &[&str],
) -> anyhow::Result<Server> {
    start_portcullis_at(bins, &db.url(db_name), logs, "portcullis", extra).await
}

pub async fn start_portcullis_at(
    bins: &Path,
    url: &str,
    logs: &Path,
    log_name: &str,
    extra: &[&str],
) -> anyhow::Result<Server> {
    let port = free_port()?;
    Server::start(
        "portcullis",
        &bins.join("portcullis"),
        &portcullis_args(port, url, extra),
        port,
        &logs.join(format!("{log_name}.log")),
    )
    .await
}

/// Portcullis' command line in the benchmark: its defaults, on loopback `port`.
pub fn portcullis_args(port: u16, url: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "serve".to_owned(),
        "--bind".into(),
        format!("127.0.0.1:{port}"),
        "--database-url".into(),
        url.to_owned(),
        "--static-dir".into(),
        format!("{REPO}/static"),
        // The flood scenario reads Portcullis' stage timings from /metrics.
        "--metrics-token".into(),
        stages::METRICS_TOKEN.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

pub async fn start_app(
    bins: &Path,
    name: &'static str,
    db: &Db,
    db_name: &str,
    logs: &Path,
) -> anyhow::Result<Server> {
    start_app_at(bins, name, &db.url(db_name), logs, name).await
}

pub async fn start_app_at(
    bins: &Path,
    name: &'static str,
    url: &str,
    logs: &Path,
    log_name: &str,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    Server::start(
        name,
        &bins.join(name),
        &app_args(port, url),
        port,
        &logs.join(format!("{log_name}.log")),
    )
    .await
}

/// The ceiling's and the peer's command line, on loopback `port`.
pub fn app_args(port: u16, url: &str) -> Vec<String> {
    vec![
        "--bind".to_owned(),
        format!("127.0.0.1:{port}"),
        "--database-url".into(),
        url.to_owned(),
    ]
}

/// The second instances' scenarios (the census, the instruction counts), by name: the
/// anonymous redirect, the account page, the API, and a member's 403.
pub fn scenarios(
    s: &Subject,
    names: &[&'static str],
) -> Vec<(&'static str, Vec<Request>, &'static str)> {
    let signed_in = |path: &str| -> Vec<Request> {
        s.cookies
            .iter()
            .map(|c| Request::get(path, c.clone()))
            .collect()
    };
    names
        .iter()
        .filter_map(|&name| match name {
            "anonymous" => Some((name, vec![Request::get("/account", "")], "3xx")),
            "hot" => Some((name, signed_in("/account"), "200")),
            "api" => Some((name, signed_in("/api/me"), "200")),
            "forbidden" => Some((name, signed_in("/reports"), "403")),
            _ => None,
        })
        .collect()
}

/// A scenario's load against `target` (base URL, requests, expected status), run for
/// `warm_s` first: every pooled connection open, statements prepared, caches filled.
pub async fn warmed_load(
    work: &Path,
    label: &str,
    (base, requests, expect): (&str, &[Request], &str),
    connections: u32,
    warm_s: u64,
) -> anyhow::Result<Load> {
    let load = Load::prepare(work, label, base, requests, expect)?;
    load.run(connections, Duration::from_secs(warm_s)).await?;
    Ok(load)
}

/// Round trips per request, counted by a second instance of the server whose database
/// connection goes through the counting proxy.
pub async fn round_trip_census(
    bins: &Path,
    db: &Db,
    work: &Path,
    logs: &Path,
    s: &Subject,
    plan: &Plan,
) -> anyhow::Result<Vec<Census>> {
    let (port, counters, proxy_task) = proxy::start(db.upstream.clone()).await?;
    let url = db.proxied_url(s.db_name, port)?;
    let log_name = format!("{}-census", s.server.name);
    let instance = match s.server.name {
        "portcullis" => start_portcullis_at(bins, &url, logs, &log_name, &[]).await?,
        name => start_app_at(bins, name, &url, logs, &log_name).await?,
    };
    let scenarios = scenarios(s, &["anonymous", "hot", "api", "forbidden"]);
    let mut out = Vec::new();
    let seconds = Duration::from_secs(plan.census_s);
    for (scenario, requests, expect) in scenarios {
        let label = format!("{}-census-{scenario}", s.server.name);
        let target = (instance.base.as_str(), requests.as_slice(), expect);
        let load = warmed_load(work, &label, target, plan.census_connections, 1).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = counters.snapshot();
        let result = load.run(plan.census_connections, seconds).await?;
        // sqlx returns connections to the pool (and pings them) after the response.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let delta = counters.snapshot().since(&before);
        log(format!(
            "  {:<10} {:<9} {:.2} round trips/request ({:.2} with statements, {:.2} pings) over {} requests",
            s.server.name,
            scenario,
            delta.round_trips() as f64 / result.requests.max(1) as f64,
            delta.statement_round_trips as f64 / result.requests.max(1) as f64,
            delta.ping_round_trips as f64 / result.requests.max(1) as f64,
            result.requests
        ));
        out.push(Census {
            server: s.server.name.into(),
            scenario: scenario.into(),
            requests: result.requests,
            round_trips: delta,
        });
    }
    instance.stop().await;
    proxy_task.abort();
    Ok(out)
}
