//! The audit trail and the 401/403 dashboard built on it.

use portcullis::{accounts, accounts::admin, audit::Actor};
use portcullis::{
    audit::{AuditEvent, AuditLog, RequestMeta},
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

    let expect = [
        (
            "event = 'denied' AND status = 401 AND reason = 'no_session'",
            1,
        ),
        (
            "event = 'denied' AND status = 401 AND reason = 'tampered_cookie'",
            1,
        ),
        (
            "event = 'denied' AND status = 401 AND reason = 'unknown_session'",
            1,
        ),
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
        (
            "event = 'denied' AND status = 401 AND reason = 'expired_idle'",
            2,
        ),
    ];
    for (condition, n) in expect {
        let rows = app.audit(condition, n).await;
        assert_eq!(rows.len() as i64, n, "{condition}: {rows:#?}");
    }
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
    app.audit(
        "event = 'denied' AND status = 401 AND reason = 'revoked'",
        1,
    )
    .await;
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
    app.audit("status IN (401, 403)", 9).await;

    let admin = app.client();
    app.login(&admin, "boss").await;
    let page = app
        .get(&admin, "/admin/denials?window=1h")
        .await
        .text()
        .await
        .expect("body");
    let figure = |label: &str| -> i64 {
        let at = page
            .find(label)
            .unwrap_or_else(|| panic!("no {label:?} in {page}"));
        let before = &page[..at];
        let start = before.rfind("<span class=\"figure\">").expect("figure")
            + "<span class=\"figure\">".len();
        before[start..]
            .split('<')
            .next()
            .unwrap_or_default()
            .trim()
            .parse()
            .expect("number")
    };
    assert_eq!(
        figure("401 — not signed in"),
        5,
        "3 anonymous page views + 2 failed sign-ins"
    );
    assert_eq!(figure("403 — not allowed"), 4);
    assert_eq!(figure("failed sign-ins"), 2);
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
async fn a_graceful_stop_writes_every_queued_event() {
    let app = TestApp::spawn().await;
    let anon = app.bare_client();
    for _ in 0..200 {
        let response = anon.get(app.url("/api/me")).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let db = app.db_name.clone();
    app.stop().await;
    let written = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM audit_events WHERE reason = 'no_session'",
    )
    .fetch_one(&pool_for(&db).await)
    .await
    .expect("count");
    assert_eq!(written, 200);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_growing() {
    let (pool, _) = fresh_database().await;
    // A closed pool: the writer cannot insert, so the queue fills up.
    pool.close().await;
    let (log, writer) = AuditLog::start_with_capacity(pool, 4);
    for _ in 0..100 {
        log.record(AuditEvent::new("denied", RequestMeta::default()).status(401));
    }
    assert!(log.dropped() >= 90, "dropped {}", log.dropped());
    assert!(log.queued() <= 4);
    writer.shutdown(std::time::Duration::from_millis(100)).await;
}
