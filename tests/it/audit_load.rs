//! Measurements behind BENCHMARKS.md's "Audit under a flood" (ignored: run them by name).
//!
//! ```sh
//! cargo test --release --test it audit_load -- --ignored --nocapture --test-threads 1
//! ```

use futures_util::StreamExt as _;

use crate::support::*;

/// What a flood of anonymous requests costs the database: rows and bytes per request.
#[tokio::test]
#[ignore = "measurement; run by name"]
async fn storage_per_anonymous_request() {
    const REQUESTS: i64 = 20_000;
    let app = TestApp::spawn().await;
    let size = "SELECT pg_database_size(current_database())";
    let rows = "SELECT (SELECT count(*) FROM audit_events) \
                + (SELECT count(*) FROM audit_denials_by_minute) \
                + (SELECT count(*) FROM audit_denials_by_hour) \
                + (SELECT count(*) FROM audit_denials_by_network)";
    let events = "SELECT count(*) FROM audit_events";
    let (bytes_before, rows_before, events_before) = (
        app.count(size).await,
        app.count(rows).await,
        app.count(events).await,
    );
    let anon = app.bare_client();
    let url = app.url("/account");
    let started = std::time::Instant::now();
    let answered = futures_util::stream::iter(0..REQUESTS)
        .map(|_| {
            let (anon, url) = (anon.clone(), url.clone());
            async move { anon.get(url).send().await.is_ok() }
        })
        .buffer_unordered(16)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await as i64;
    let elapsed = started.elapsed();
    // Let the writers finish (events are batched, counts flushed every second).
    sleep(3000).await;
    let (bytes_after, rows_after, events_after) = (
        app.count(size).await,
        app.count(rows).await,
        app.count(events).await,
    );
    let grown = bytes_after - bytes_before;
    println!(
        "{answered} anonymous GET /account in {elapsed:.1?}: database +{grown} bytes \
         ({:.1} bytes/request), audit_events +{} rows, all audit tables +{} rows",
        grown as f64 / answered as f64,
        events_after - events_before,
        rows_after - rows_before,
    );
    let tables: Vec<(String, i64)> = sqlx::query_as(
        "SELECT 'by_minute', count(*) FROM audit_denials_by_minute UNION ALL \
         SELECT 'by_hour', count(*) FROM audit_denials_by_hour UNION ALL \
         SELECT 'by_network', count(*) FROM audit_denials_by_network",
    )
    .fetch_all(&app.pool)
    .await
    .expect("rows");
    println!("count rows: {tables:?}");
}

/// A day of a 500 requests/s anonymous flood (43.2 million refusals) as the counts hold
/// it, in its realistic worst case, plus 300,000 events about known people.
///
/// - Per minute: 30 routes × 4 reasons (401 `no_session`, `tampered_cookie`,
///   `unknown_session`; 403 `cross_origin`) = 120 rows, 250 refusals each: 172,800 rows.
///   (Rows are per key, not per instance: more instances add to the same rows.) The
///   same per hour: 24 × 120 = 2,880 rows.
/// - Per hour and network: two instances at their cap of 2,000 (path, network) keys
///   each: 4,000 networks × 24 hours = 96,000 rows.
/// - Events: 120,000 sign-ins and 120,000 sign-outs of 2,000 people, 30,000 403s of 300
///   members on admin pages, 20,000 failed sign-ins from 200 addresses, 10,000 CSRF 403s.
const A_DAY_OF_FLOOD: &str = r#"
INSERT INTO audit_denials_by_minute (minute, status, reason, path, count)
SELECT date_trunc('minute', now()) - make_interval(mins => m), s.status, s.reason,
       '/route/' || p, 250
FROM generate_series(0, 1439) m, generate_series(1, 30) p,
     (VALUES (401::smallint, 'no_session'), (401, 'tampered_cookie'),
             (401, 'unknown_session'), (403, 'cross_origin')) s(status, reason);

INSERT INTO audit_denials_by_hour (hour, status, reason, path, count)
SELECT date_trunc('hour', minute, 'UTC'), status, reason, path, sum(count)
FROM audit_denials_by_minute GROUP BY 1, 2, 3, 4;

INSERT INTO audit_denials_by_network (hour, status, reason, path, network, count)
SELECT date_trunc('hour', now(), 'UTC') - make_interval(hours => h), 401, 'no_session',
       '/route/' || (1 + n % 30), '10.' || (n / 256) || '.' || (n % 256) || '.0/24', 450
FROM generate_series(0, 23) h, generate_series(0, 3999) n;

INSERT INTO audit_events (at, event, status, reason, username, target, path, method, ip,
                          user_agent, request_id, detail)
SELECT now() - make_interval(secs => i * 86400.0 / 300000), e.event, e.status, e.reason,
       'user' || (i % e.people), NULL, e.path || (i % 5), e.method,
       '192.168.' || (i % 50) || '.' || (i % 200), 'Mozilla/5.0 (X11; Linux x86_64)',
       lpad(to_hex(i), 16, '0'), e.detail
FROM generate_series(1, 300000) i,
LATERAL (SELECT * FROM (VALUES
    (0, 'sign_in', NULL::smallint, NULL, 2000, '/login', 'POST', NULL::jsonb),
    (1, 'sign_out', NULL, NULL, 2000, '/logout', 'POST', NULL),
    (2, 'denied', 403, 'insufficient_role', 300, '/admin/page', 'GET',
        '{"required": "admin", "role": "member"}'::jsonb),
    (3, 'sign_in_failed', 401, 'bad_password', 2000, '/login', 'POST', NULL),
    (4, 'denied', 403, 'csrf', 2000, '/account/password', 'POST', NULL)
  ) v(kind, event, status, reason, people, path, method, detail)
  WHERE kind = CASE WHEN i % 30 < 12 THEN 0 WHEN i % 30 < 24 THEN 1 WHEN i % 30 < 27 THEN 2
                    WHEN i % 30 < 29 THEN 3 ELSE 4 END) e;
"#;

/// How long `/admin/denials` takes for each window with [`A_DAY_OF_FLOOD`] behind it, and
/// each panel's query on its own.
#[tokio::test]
#[ignore = "measurement; run by name"]
async fn dashboard_under_a_day_of_flood() {
    use portcullis::audit::dashboard::{self, Period};
    let app = TestApp::spawn().await;
    app.create_user("boss", portcullis::auth::Role::Admin).await;
    let started = std::time::Instant::now();
    sqlx::raw_sql(A_DAY_OF_FLOOD)
        .execute(&app.pool)
        .await
        .expect("load");
    sqlx::raw_sql("VACUUM ANALYZE")
        .execute(&app.pool)
        .await
        .expect("vacuum");
    let (refusals, minute_rows, network_rows, events) = (
        app.count("SELECT sum(count)::bigint FROM audit_denials_by_minute")
            .await,
        app.count("SELECT count(*) FROM audit_denials_by_minute")
            .await,
        app.count("SELECT count(*) FROM audit_denials_by_network")
            .await,
        app.count("SELECT count(*) FROM audit_events").await,
    );
    println!(
        "loaded in {:.1?}: {refusals} counted refusals in {minute_rows} minute rows and \
         {network_rows} network rows; {events} events",
        started.elapsed()
    );
    let admin = app.client();
    app.login(&admin, "boss").await;
    for (window, seconds) in [("1h", 3600), ("24h", 86_400), ("7d", 7 * 86_400)] {
        let path = format!("/admin/denials?window={window}");
        let warm = app.get(&admin, &path).await;
        assert_eq!(warm.status(), reqwest::StatusCode::OK);
        let mut times = Vec::new();
        for _ in 0..9 {
            let started = std::time::Instant::now();
            let response = app.get(&admin, &path).await;
            let body = response.text().await.expect("body");
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            assert!(body.contains("401/403 dashboard"));
        }
        times.sort_by(f64::total_cmp);
        println!(
            "GET {path}: median {:.0} ms, min {:.0}, max {:.0} (9 runs after a warm-up; \
             load average {})",
            times[4],
            times[0],
            times[8],
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        );
        let period = Period::last(seconds);
        let pool = &app.pool;
        macro_rules! time {
            ($name:literal, $query:expr) => {{
                let started = std::time::Instant::now();
                $query.await.expect($name);
                print!(" {} {:.0}", $name, started.elapsed().as_secs_f64() * 1000.0);
            }};
        }
        print!("  panels alone (ms):");
        time!("totals", dashboard::totals(pool, period));
        time!("series", dashboard::series(pool, period, 3600));
        time!("reasons", dashboard::by_reason(pool, period));
        time!("paths", dashboard::by_path(pool, period));
        time!("users", dashboard::by_user(pool, period));
        time!("networks", dashboard::by_network(pool, period));
        time!(
            "failing",
            dashboard::failed_sign_ins_by_address(pool, period)
        );
        time!("refused", dashboard::repeated_refusals(pool, period));
        time!("answering", dashboard::paths_answering_401(pool, period));
        time!("latest", dashboard::latest_refusals(pool, period));
        time!("counted", dashboard::latest_counts(pool, period));
        println!();
    }
}
