//! A rolling restart under load, and an upgrade rehearsal: two instances behind nginx,
//! many clients signed in and busy, instance A stopped (SIGTERM) and started again, then
//! a newer migration applied and instance B stopped and started again. No request may
//! fail, nobody may be signed out, and no audit event may be lost.

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicBool, Ordering},
};

use portcullis::auth::{Role, password::PasswordHasher};
use portcullis::{accounts::admin, audit::Actor};
use reqwest::StatusCode;
use tokio::task::JoinSet;

use super::*;
use crate::support::{PASSWORD, database_url, fresh_database};

const CLIENTS: usize = 8;
/// Clients that stay signed in for the whole run: their sessions must outlive both
/// restarts. The others sign out and in again every `CYCLE` page views.
const LONG_LIVED: usize = 2;
const CYCLE: usize = 40;
/// Bound on the whole exercise, load included.
const DEADLINE: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Tally {
    page_views: u64,
    sign_ins: u64,
    sign_outs: u64,
    failures: Vec<String>,
    latencies: Vec<Duration>,
}

/// One person: signs in, then views their account page until told to stop, signing out
/// and in again every `CYCLE` views (unless long-lived). Any error, 5xx or redirect to the
/// sign-in page is a failure; nothing is retried.
async fn person(visitor: Visitor, username: String, cycles: bool, stop: Arc<AtomicBool>) -> Tally {
    let mut tally = Tally::default();
    // Signed in before the load starts (counted: its audit row is expected too).
    match visitor.sign_in(&username, PASSWORD).await {
        Ok(()) => tally.sign_ins += 1,
        Err(e) => {
            tally
                .failures
                .push(format!("{username}: first sign-in: {e}"));
            return tally;
        }
    }
    let mut views = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match visitor.get("/account").await {
            Ok(response) if response.status() == StatusCode::OK => {
                if let Err(e) = response.bytes().await {
                    tally
                        .failures
                        .push(format!("{username}: GET /account body: {e:?}"));
                }
                tally.page_views += 1;
            }
            Ok(response) => {
                let what = if response.status() == StatusCode::SEE_OTHER {
                    "signed out"
                } else {
                    "failed"
                };
                tally.failures.push(format!(
                    "{username}: GET /account {what}: {}",
                    describe(response).await
                ));
            }
            Err(e) => tally.failures.push(format!("{username}: {e}")),
        }
        tally.latencies.push(started.elapsed());
        views += 1;
        if cycles && views.is_multiple_of(CYCLE) {
            match visitor.sign_out().await {
                Ok(()) => tally.sign_outs += 1,
                Err(e) => tally.failures.push(format!("{username}: sign-out: {e}")),
            }
            match visitor.sign_in(&username, PASSWORD).await {
                Ok(()) => tally.sign_ins += 1,
                Err(e) => tally.failures.push(format!("{username}: sign-in: {e}")),
            }
        }
        // A person reads the page for a moment; this also leaves the two cores some
        // room for the instances being restarted.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tally
}

/// Waits until nginx sends traffic to `instance` again (its own request counter grows):
/// nginx skips an instance for `fail_timeout` after a refused connection, and stopping the
/// other one before this one is back in rotation would leave nginx with no instance.
async fn wait_for_traffic(instance: &Instance, client: &Client) {
    let before = instance.requests_served(client, "/account").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while instance.requests_served(client, "/account").await == before {
        assert!(
            Instant::now() < deadline,
            "nginx sent {} no traffic within 30 s of its restart",
            instance.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A newer build's expand migration, applied while the old build runs (as a deploy
/// pipeline's `portcullis migrate` of the new version would): a new nullable column on
/// the busiest table, and its row in sqlx's bookkeeping.
async fn apply_newer_migration(pool: &sqlx::PgPool) {
    sqlx::query("ALTER TABLE sessions ADD COLUMN device_label text")
        .execute(pool)
        .await
        .expect("expand the sessions table");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'device label (from a newer build)', true, '\\x00', 0)",
    )
    .execute(pool)
    .await
    .expect("record the newer migration");
}

fn p99(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort();
    latencies
        .get(latencies.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_and_an_upgrade_under_load_fail_no_request_and_lose_no_event() {
    let Some([nginx_bin, openssl]) = tools(["nginx", "openssl"]) else {
        return;
    };
    // Not beside a browser test or the timing test: this one loads both cores.
    let _quiet = crate::browser::harness::quiet_machine().await;
    let scratch = Scratch::new("rolling");
    let (pool, db) = fresh_database().await;
    let hasher = PasswordHasher::start(1).expect("hasher");
    for n in 0..CLIENTS {
        admin::create(
            &pool,
            &hasher,
            &Actor::cli(),
            &format!("person{n}"),
            PASSWORD,
            Role::Member,
            8,
        )
        .await
        .expect("create user");
    }
    let args = instance_args(&database_url(&db));
    let mut a = Instance::start("A", free_port(), args.clone()).await;
    let mut b = Instance::start("B", free_port(), args).await;
    let cert = Certificate::make(&openssl, &scratch);
    let nginx = Nginx::start(&nginx_bin, &scratch, &cert, &[a.port, b.port]);
    let direct = direct_client();

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut people = JoinSet::new();
    for n in 0..CLIENTS {
        // Each person from an address of their own, as on the internet (and each within
        // nginx's per-address sign-in rate).
        let visitor = nginx.visitor(Ipv4Addr::new(127, 0, 1, n as u8 + 1));
        people.spawn(person(
            visitor,
            format!("person{n}"),
            n >= LONG_LIVED,
            Arc::clone(&stop),
        ));
    }

    // The rolling restart, while the load runs. A bounded exercise: each step has its
    // own deadline, and the whole is checked against DEADLINE.
    let mut steps = Vec::new();
    let mut step =
        |what: &str| steps.push(format!("{:>5.1}s {what}", started.elapsed().as_secs_f64()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    step("SIGTERM A");
    a.stop().await;
    step("A exited 0; starting A");
    a.spawn().await;
    a.wait_ready(&direct).await;
    step("A ready");
    wait_for_traffic(&a, &direct).await;
    step("A receives traffic; applying a newer migration");
    apply_newer_migration(&pool).await;
    step("SIGTERM B");
    b.stop().await;
    step("B exited 0; starting B on the newer schema");
    b.spawn().await;
    b.wait_ready(&direct).await;
    step("B ready");
    wait_for_traffic(&b, &direct).await;
    step("B receives traffic");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    while let Some(tally) = people.join_next().await {
        let tally = tally.expect("client task");
        total.page_views += tally.page_views;
        total.sign_ins += tally.sign_ins;
        total.sign_outs += tally.sign_outs;
        total.failures.extend(tally.failures);
        total.latencies.extend(tally.latencies);
    }
    step("load stopped");
    let elapsed = started.elapsed();
    assert!(elapsed < DEADLINE, "took {elapsed:?}");

    // Stopped gracefully, both instances wrote every queued audit event before exiting.
    tokio::join!(a.stop(), b.stop());
    // What nginx absorbed: connections refused by a stopped instance, each request
    // passed on to the other one.
    let error_log = nginx.error_log();
    let retried = error_log
        .lines()
        .filter(|line| line.contains("while connecting to upstream"))
        .count();
    // A connection an instance dropped under a sent request (none expected: see the
    // upstream keepalive_timeout in the config).
    let dropped = error_log
        .lines()
        .filter(|line| line.contains("while reading response header from upstream"))
        .count();
    let counted = |event: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM audit_events WHERE event = $1 AND username LIKE 'person%'",
            )
            .bind(event)
            .fetch_one(&pool)
            .await
            .expect("count") as u64
        }
    };
    let (signed_in, signed_out) = (counted("sign_in").await, counted("sign_out").await);
    let requests = total.page_views + 3 * total.sign_ins + 2 * total.sign_outs;
    let report = format!(
        "{}\nrequests {requests} (page views {}, sign-ins {}, sign-outs {}), failures {}, \
         p99 page view {:?}, audit sign_in {signed_in}, sign_out {signed_out}, \
         {retried} refused connections retried by nginx, {dropped} dropped under a request, \
         {:.1} s",
        steps.join("\n"),
        total.page_views,
        total.sign_ins,
        total.sign_outs,
        total.failures.len(),
        p99(total.latencies),
        elapsed.as_secs_f64(),
    );
    let _ = writeln!(std::io::stderr(), "deploy::rolling: {report}");
    assert!(
        total.failures.is_empty(),
        "{report}\nfirst failures:\n{}\n--- nginx error log\n{}\n--- A\n{}\n--- B\n{}",
        total
            .failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        nginx.error_log(),
        a.log_text(),
        b.log_text()
    );
    assert!(
        total.page_views > 500 && total.sign_ins > 2 * CLIENTS as u64,
        "too little load to mean anything: {report}"
    );
    assert_eq!(
        (signed_in, signed_out),
        (total.sign_ins, total.sign_outs),
        "every sign-in and sign-out has its audit event: {report}"
    );
    // Sessions survived both restarts and the new schema: the long-lived people kept
    // theirs from before the first restart to the end.
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE u.username IN ('person0', 'person1') AND s.revoked_at IS NULL",
    )
    .fetch_one(&pool)
    .await
    .expect("sessions");
    assert_eq!(live, LONG_LIVED as i64, "{report}");
}
