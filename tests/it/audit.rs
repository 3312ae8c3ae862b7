//! The audit trail and the 401/403 dashboard built on it.

use portcullis::{accounts, accounts::admin, audit::Actor};
use portcullis::{
    audit::{AuditLog, RequestMeta, Retention},
    auth::Role,
};
use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn every_kind_of_event_is_recorded_with_its_precise_reason() {
    let app = TestApp::spawn_with(|s| s.idle_timeout = time::Duration::seconds(1)).await;
    app.create_user("mem", Role::Member).await;
    app.create_user("off", Role::Member).await;
    let off = app.user_id("off").await;
    admin::disable(&app.pool, &Actor::cli(), off)
        .await
        .expect("disable");
    let anon = app.bare_client();

    // 401s without a session.
    app.get(&anon, "/account").await;
    anon.get(app.url("/account"))
        .header("cookie", "portcullis_session=garbage")
        .send()
        .await
        .expect("GET");
    anon.get(app.url("/account"))
        .header("cookie", "portcullis_session=AAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await
        .expect("GET");
    // Failed sign-ins, each with its internal reason.
    app.post_login(&app.client(), "nobody", PASSWORD, "").await;
    app.post_login(&app.client(), "mem", "wrong password", "")
        .await;
    app.post_login(&app.client(), "off", PASSWORD, "").await;
    // Success, a 403, a CSRF failure, a sign-out.
    let member = app.client();
    app.login(&member, "mem").await;
    app.get(&member, "/reports").await;
    app.post_form_with_csrf(&member, "/logout", &[], "forged")
        .await;
    app.post_form(&member, "/logout", &[]).await;
    // Expiry: noticed once, then a 401 per request.
    let sleepy = app.client();
    app.login(&sleepy, "mem").await;
    app.idle_out("mem").await;
    app.get(&sleepy, "/account").await;
    app.get(&sleepy, "/reports").await;

    // Refusals without a signed-in user are counted (by minute, path and network), not
    // recorded one by one.
    for (condition, n) in [
        (
            "status = 401 AND reason = 'no_session' AND path = '/account'",
            1,
        ),
        ("status = 401 AND reason = 'tampered_cookie'", 1),
        ("status = 401 AND reason = 'unknown_session'", 1),
        ("status = 401 AND reason = 'expired_idle'", 2),
    ] {
        assert_eq!(app.counted(condition, n).await, n, "{condition}");
    }
    let expect = [
        (
            "event = 'sign_in_failed' AND status = 401 AND reason = 'unknown_user' AND username = 'nobody'",
            1,
        ),
        (
            "event = 'sign_in_failed' AND reason = 'bad_password' AND username = 'mem'",
            1,
        ),
        (
            "event = 'sign_in_failed' AND reason = 'disabled' AND username = 'off'",
            1,
        ),
        ("event = 'sign_in' AND username = 'mem'", 2),
        (
            "event = 'denied' AND status = 403 AND reason = 'insufficient_role' AND username = 'mem' AND path = '/reports'",
            1,
        ),
        (
            "event = 'denied' AND status = 403 AND reason = 'csrf' AND username = 'mem'",
            1,
        ),
        ("event = 'sign_out' AND username = 'mem'", 1),
        (
            "event = 'session_expired' AND reason = 'expired_idle' AND username = 'mem'",
            1,
        ),
    ];
    for (condition, n) in expect {
        let rows = app.audit(condition, n).await;
        assert_eq!(rows.len() as i64, n, "{condition}: {rows:#?}");
    }
    // And no refusal without a signed-in user became an event.
    app.audit("TRUE", 1).await;
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE event = 'denied' AND username IS NULL")
            .await,
        0
    );
    // Every row says where and from whom.
    let rows = app
        .audit(
            "event = 'denied' AND status = 403 AND reason = 'insufficient_role'",
            1,
        )
        .await;
    let row = &rows[0];
    assert_eq!(row.method.as_deref(), Some("GET"));
    assert_eq!(row.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(row.request_id.as_ref().map(String::len), Some(16));
    let detail = row.detail.clone().unwrap_or_default();
    assert_eq!(
        (detail["required"].as_str(), detail["role"].as_str()),
        (Some("editor"), Some("member"))
    );

    // Revoked and disabled sessions are 401s with their own reasons.
    let again = app.client();
    app.login(&again, "mem").await;
    let mem = app.user_id("mem").await;
    accounts::revoke_sessions(&app.pool, mem, None, "test")
        .await
        .expect("revoke");
    app.get(&again, "/account").await;
    app.counted("status = 401 AND reason = 'revoked'", 1).await;
}

#[tokio::test]
async fn the_dashboard_counts_a_scripted_sequence() {
    let app = TestApp::spawn().await;
    app.create_user("boss", Role::Admin).await;
    let member = app.user_client("lena", Role::Member).await;
    let anon = app.client();
    for _ in 0..3 {
        app.get(&anon, "/reports").await;
    }
    app.post_login(&app.client(), "lena", "bad password 1", "")
        .await;
    app.post_login(&app.client(), "ghost", "bad password 2", "")
        .await;
    for _ in 0..4 {
        assert_eq!(
            app.get(&member, "/admin").await.status(),
            StatusCode::FORBIDDEN
        );
    }
    app.audit("status IN (401, 403)", 6).await;

    let admin = app.client();
    app.login(&admin, "boss").await;
    let page = app
        .get(&admin, "/admin/denials?window=1h")
        .await
        .text()
        .await
        .expect("body");
    assert_eq!(
        tile(&page, "401 — not signed in"),
        5,
        "3 anonymous page views + 2 failed sign-ins"
    );
    assert_eq!(tile(&page, "403 — not allowed"), 4);
    assert_eq!(tile(&page, "failed sign-ins"), 2);
    assert!(
        page.contains("lena was refused /admin 4 times (needs admin)"),
        "{page}"
    );
    assert!(page.contains("grant the admin role"), "{page}");
    assert!(
        page.contains("/reports answered 401 3 times (3 no session"),
        "{page}"
    );
    assert!(
        page.contains("<svg class=\"chart\"")
            && page.contains("class=\"bar-401\"")
            && page.contains("class=\"bar-403\""),
        "{page}"
    );
    assert!(
        page.contains(">no_session</a>") && page.contains(">insufficient_role</a>"),
        "{page}"
    );
    // The other windows render too, and a bogus one falls back to a day.
    for window in ["24h", "7d", "bogus"] {
        assert_eq!(
            app.get(&admin, &format!("/admin/denials?window={window}"))
                .await
                .status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn a_graceful_stop_writes_every_queued_event_and_count() {
    let app = TestApp::spawn().await;
    let member = app.user_client("mia", Role::Member).await;
    let anon = app.bare_client();
    for _ in 0..200 {
        let response = anon.get(app.url("/api/me")).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let response = app.get(&member, "/reports").await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    let db = app.db_name.clone();
    app.stop().await;
    let pool = pool_for(&db).await;
    let written: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT sum(count) FROM audit_denials_by_minute WHERE reason = 'no_session')::bigint, \
                (SELECT sum(count) FROM audit_denials_by_network WHERE reason = 'no_session')::bigint, \
                (SELECT count(*) FROM audit_events WHERE reason = 'insufficient_role')",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(
        written,
        (200, 200, 200),
        "(counted, counted by network, events)"
    );
}

/// A tile's figure on the dashboard: `<span class="figure">N</span> label`.
fn tile(page: &str, label: &str) -> i64 {
    let at = page
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {page}"));
    let before = &page[..at];
    let start =
        before.rfind("<span class=\"figure\">").expect("figure") + "<span class=\"figure\">".len();
    before[start..]
        .split('<')
        .next()
        .unwrap_or_default()
        .trim()
        .parse()
        .expect("number")
}

#[tokio::test]
async fn an_anonymous_flood_is_counted_exactly_without_a_row_per_request() {
    use futures_util::StreamExt as _;
    const FLOOD: i64 = 2000;
    let app = TestApp::spawn().await;
    app.create_user("boss", Role::Admin).await;
    let admin = app.client();
    app.login(&admin, "boss").await;
    let rows_before = app.count("SELECT count(*) FROM audit_events").await;

    let anon = app.bare_client();
    let url = app.url("/account");
    let statuses: Vec<Option<StatusCode>> = futures_util::stream::iter(0..FLOOD)
        .map(|_| {
            let (anon, url) = (anon.clone(), url.clone());
            async move { anon.get(url).send().await.ok().map(|r| r.status()) }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let refused = statuses
        .iter()
        .filter(|s| **s == Some(StatusCode::SEE_OTHER))
        .count() as i64;
    assert_eq!(
        refused, FLOOD,
        "every anonymous GET /account is sent to sign in (401 case)"
    );

    // The dashboard counts every one of them (waiting for whatever is still in flight).
    let mut shown = 0;
    for _ in 0..50 {
        let page = app
            .get(&admin, "/admin/denials?window=1h")
            .await
            .text()
            .await
            .expect("body");
        shown = tile(&page, "401 — not signed in");
        if shown >= FLOOD {
            break;
        }
        sleep(100).await;
    }
    assert_eq!(shown, FLOOD, "the dashboard's 401 count");
    // The audit log, asked for refusals, says how many were counted.
    let log = app
        .get(&admin, "/admin/audit?status=denials&window=1h")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        log.contains("2000 refusals of requests without a signed-in user"),
        "{log}"
    );
    sleep(300).await;
    let rows_after = app.count("SELECT count(*) FROM audit_events").await;
    assert!(
        rows_after - rows_before <= 5,
        "{FLOOD} anonymous 401s added {} audit rows",
        rows_after - rows_before
    );
}

#[tokio::test]
async fn a_full_queue_makes_callers_wait_and_loses_no_event() {
    let (pool, _) = fresh_database().await;
    let (log, writer) = AuditLog::start_with_capacity(pool.clone(), 4);
    // A database that cannot keep up: the table is locked while the events arrive.
    let mut blocker = pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE audit_events IN EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .expect("lock");
    let recorders: Vec<_> = (0..100)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                let actor = Actor::new(format!("admin{i}"), RequestMeta::default());
                log.record(actor.event("role_changed", "someone")).await;
            })
        })
        .collect();
    sleep(1000).await;
    blocker.commit().await.expect("unlock");
    for recorder in recorders {
        recorder.await.expect("recorder");
    }
    writer.shutdown(std::time::Duration::from_secs(10)).await;
    let written: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE event = 'role_changed'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(written, 100, "every event about a known user is written");
}

#[tokio::test]
async fn retention_keeps_at_most_the_newest_events_up_to_the_cap() {
    let (pool, _) = fresh_database().await;
    sqlx::query(
        "INSERT INTO audit_events (at, event, username) \
         SELECT now() - make_interval(secs => i), 'sign_in', 'u' || i \
         FROM generate_series(1000, 1, -1) AS i",
    )
    .execute(&pool)
    .await
    .expect("events");
    // Hourly counts are kept for the retention, minute counts for eight days.
    sqlx::raw_sql(
        "INSERT INTO audit_denials_by_hour (hour, status, reason, path, count) \
         VALUES (now() - interval '91 days', 401, 'no_session', '/account', 5), \
                (now() - interval '89 days', 401, 'no_session', '/account', 7); \
         INSERT INTO audit_denials_by_minute (minute, status, reason, path, count) \
         VALUES (now() - interval '9 days', 401, 'no_session', '/account', 2), \
                (now() - interval '7 days', 401, 'no_session', '/account', 3)",
    )
    .execute(&pool)
    .await
    .expect("counts");
    let retention = Retention {
        age: time::Duration::days(90),
        max_events: 100,
    };
    let pruned = portcullis::audit::prune(&pool, retention)
        .await
        .expect("prune");
    assert_eq!((pruned.excess_events, pruned.old_counts), (900, 2));
    let counted: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT sum(count) FROM audit_denials_by_hour)::bigint, \
                (SELECT sum(count) FROM audit_denials_by_minute)::bigint",
    )
    .fetch_one(&pool)
    .await
    .expect("counts");
    assert_eq!(
        counted,
        (7, 3),
        "counts older than they are kept are pruned"
    );
    let (kept, oldest): (i64, Option<String>) = sqlx::query_as(
        "SELECT count(*), min(username) FILTER (WHERE at = (SELECT min(at) FROM audit_events)) \
         FROM audit_events",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!((kept, oldest.as_deref()), (100, Some("u100")));
}
