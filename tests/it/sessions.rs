//! Session lifetimes: idle and absolute expiry, sliding, tampering, revocation, cleanup,
//! and the cost of the hot path.

use portcullis::auth::{Role, store};
use portcullis::{accounts, accounts::admin, audit::Actor};
use reqwest::StatusCode;
use time::Duration;

use crate::support::*;

#[tokio::test]
async fn an_idle_session_expires_with_a_notice() {
    let app = TestApp::spawn_with(|s| s.idle_timeout = Duration::seconds(2)).await;
    let browser = app.user_client("ida", Role::Member).await;
    let api = app.client();
    app.login(&api, "ida").await;
    assert_eq!(app.get(&browser, "/account").await.status(), StatusCode::OK);
    // Both sessions go unused for longer than the idle window.
    app.idle_out("ida").await;
    assert_login_redirect(
        app.get(&browser, "/account").await,
        "expired",
        Some("/account"),
    )
    .await;
    assert_api_401(app.get_json(&api, "/api/me").await, "session_expired_idle").await;
    // The sign-in page the redirect leads to says so.
    let page = app
        .get(&browser, "/login?next=%2Faccount&notice=expired")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("Your session has expired, please sign in again."));
    // Signing in again returns to where the person was.
    let response = app.post_login(&browser, "ida", PASSWORD, "/account").await;
    assert_eq!(app.landing(&browser, response).await, "/account");
    assert_eq!(app.get(&browser, "/account").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_session_in_use_never_idles_out() {
    let app = TestApp::spawn_with(|s| s.idle_timeout = Duration::seconds(2)).await;
    let browser = app.user_client("active", Role::Member).await;
    // 4.8 s of activity, a request every 0.6 s: well past the 2 s idle window in total,
    // so only the requests sliding the idle deadline keep the session alive.
    for _ in 0..8 {
        app.age_sessions("active", Duration::milliseconds(600))
            .await;
        let response = app.get(&browser, "/account").await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{}",
            describe(response).await
        );
    }
}

#[tokio::test]
async fn the_absolute_lifetime_ends_even_an_active_session() {
    // Deadlines far above what a loaded machine takes per request (the sessions are aged
    // in SQL, not slept through), so only the ageing decides which deadline passes first.
    let app = TestApp::spawn_with(|s| {
        s.idle_timeout = Duration::seconds(20);
        s.absolute_timeout = Duration::seconds(30);
    })
    .await;
    let browser = app.user_client("abe", Role::Member).await;
    let api = app.client();
    app.login(&api, "abe").await;
    // A request every 5 s: the idle deadline keeps sliding, the absolute one does not.
    let mut last = StatusCode::OK;
    for _ in 0..8 {
        app.age_sessions("abe", Duration::seconds(5)).await;
        last = app.get(&browser, "/account").await.status();
        if last != StatusCode::OK {
            break;
        }
    }
    assert_eq!(
        last,
        StatusCode::SEE_OTHER,
        "the session outlived its absolute lifetime"
    );
    assert_login_redirect(
        app.get(&browser, "/account").await,
        "expired",
        Some("/account"),
    )
    .await;
    assert_api_401(
        app.get_json(&api, "/api/me").await,
        "session_expired_absolute",
    )
    .await;
}

#[tokio::test]
async fn tampered_and_unknown_cookies_are_the_401_case() {
    let app = TestApp::spawn().await;
    let client = app.bare_client();
    for (cookie, reason) in [
        ("portcullis_session=not-a-session-id!", "invalid_session"),
        ("portcullis_session=", "invalid_session"),
        (
            "portcullis_session=AAAAAAAAAAAAAAAAAAAAAA",
            "invalid_session",
        ),
        ("portcullis_session=%00%00%00", "invalid_session"),
        ("other=1", "no_session"),
    ] {
        let response = client
            .get(app.url("/api/me"))
            .header("cookie", cookie)
            .send()
            .await
            .expect("GET");
        assert_api_401(response, reason).await;
        let response = client
            .get(app.url("/account"))
            .header("accept", BROWSER_ACCEPT)
            .header("cookie", cookie)
            .send()
            .await
            .expect("GET");
        assert_login_redirect(response, "required", Some("/account")).await;
    }
}

#[tokio::test]
async fn revoked_sessions_tell_their_holder_they_were_signed_out() {
    let app = TestApp::spawn().await;
    let first = app.user_client("rex", Role::Member).await;
    let second = app.client();
    app.login(&second, "rex").await;
    let user = accounts::find(&app.pool, "rex").await.expect("user");
    let ended = accounts::revoke_sessions(&app.pool, user.id, None, "test")
        .await
        .expect("revoke");
    assert_eq!(ended, 2);
    assert_login_redirect(
        app.get(&first, "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;
    assert_api_401(app.get_json(&second, "/api/me").await, "session_revoked").await;
}

#[tokio::test]
async fn sessions_are_stored_with_owner_lifetimes_and_client_but_not_their_id() {
    let app = TestApp::spawn().await;
    let browser = app.user_client("sue", Role::Member).await;
    let cookie = app.session_cookie_of(&browser).await;
    let id = cookie
        .split_once('=')
        .map(|(_, v)| v.to_owned())
        .expect("value");
    let row: (i64, Option<String>, Option<String>, bool, bool) = sqlx::query_as(
        "SELECT user_id, ip, user_agent, absolute_expires_at > idle_expires_at, \
                encode(token_hash, 'escape') LIKE '%' || $1 || '%' FROM sessions",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .expect("row");
    let user = accounts::find(&app.pool, "sue").await.expect("user");
    assert_eq!(row.0, user.id);
    assert_eq!(row.1.as_deref(), Some("127.0.0.1"));
    assert!(row.3, "idle deadline comes before the absolute one");
    assert!(!row.4, "the raw session id is not stored");
    let raw_in_table: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sessions WHERE token_hash = convert_to($1, 'UTF8')",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(raw_in_table, 0);
}

#[tokio::test]
async fn ended_sessions_are_swept_after_their_tombstone_period() {
    let app = TestApp::spawn().await;
    app.create_user("old", Role::Member).await;
    for _ in 0..3 {
        app.login(&app.client(), "old").await;
    }
    // Two sessions ended long ago, one is live.
    sqlx::query(
        "UPDATE sessions SET idle_expires_at = now() - interval '8 days', \
                             created_at = now() - interval '9 days', \
                             last_seen_at = now() - interval '9 days' \
         WHERE id IN (SELECT id FROM sessions ORDER BY id LIMIT 2)",
    )
    .execute(&app.pool)
    .await
    .expect("age");
    let deleted = store::delete_ended(&app.pool, Duration::days(7))
        .await
        .expect("sweep");
    assert_eq!(deleted, 2);
    assert_eq!(app.count("SELECT count(*) FROM sessions").await, 1);
    // Recently ended sessions stay as tombstones.
    sqlx::query("UPDATE sessions SET revoked_at = now()")
        .execute(&app.pool)
        .await
        .expect("revoke");
    assert_eq!(
        store::delete_ended(&app.pool, Duration::days(7))
            .await
            .expect("sweep"),
        0
    );
}

/// Transactions and row writes in a database so far. Backends report statistics when
/// they exit, so callers close their pools first; poll until the figures settle.
async fn settled_stats(db_name: &str) -> (i64, i64) {
    // Read from the maintenance database, so the readings do not count themselves.
    let mut conn = admin_connection().await;
    let mut read = async || {
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut conn)
            .await
            .expect("clear");
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT xact_commit + xact_rollback, tup_updated + tup_inserted + tup_deleted \
             FROM pg_stat_database WHERE datname = $1",
        )
        .bind(db_name)
        .fetch_one(&mut conn)
        .await
        .expect("stats")
    };
    sleep(300).await;
    let mut last = read().await;
    let mut stable_for = 0;
    for _ in 0..50 {
        sleep(200).await;
        let now = read().await;
        if now == last {
            stable_for += 1;
            if stable_for >= 5 {
                break;
            }
        } else {
            stable_for = 0;
        }
        last = now;
    }
    last
}

/// An app instance on `db_name` with a one-connection pool, run until `work` is done,
/// then stopped with its pool closed (so its statistics are reported).
async fn run_instance(db_name: &str, work: impl AsyncFnOnce(&TestApp)) {
    let pool = portcullis::db::pool_options(1)
        .connect_with(database_options(db_name))
        .await
        .expect("pool");
    let app = TestApp::spawn_on(pool, db_name.to_owned(), |_| {}).await;
    // The start-up sweep (ended sessions, throttles, then audit retention) must be done
    // before the work, and before the pool closes, or runs differ by its statements. It
    // runs on the only connection, so it is done once that one's last statement, idle,
    // is the audit prune. (A fixed 200 ms was not always enough on a busy machine.)
    let mut conn = admin_connection().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let swept: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = $1 \
             AND state = 'idle' AND query LIKE '%DELETE FROM audit_events%')",
        )
        .bind(db_name)
        .fetch_one(&mut conn)
        .await
        .expect("pg_stat_activity");
        if swept {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the start-up sweep did not run within 10 s"
        );
        sleep(10).await;
    }
    work(&app).await;
    app.pool.close().await;
}

/// The hot path: an authenticated GET costs one statement and no write at steady state.
#[tokio::test]
async fn an_authenticated_page_view_is_one_query_and_no_write() {
    // Set up a user and a session directly (no app instance, so nothing is in flight).
    let (setup_pool, db) = fresh_database().await;
    let hasher = portcullis::auth::password::PasswordHasher::start(1).expect("hasher");
    let user = admin::create(
        &setup_pool,
        &hasher,
        &Actor::cli(),
        "hot",
        PASSWORD,
        Role::Member,
        8,
    )
    .await
    .expect("user");
    let id = tower_sessions::session::Id::default();
    let now = time::OffsetDateTime::now_utc();
    let mut record = tower_sessions::session::Record {
        id,
        data: [(
            store::BINDING_KEY.to_owned(),
            serde_json::to_value(store::SessionBinding {
                user_id: user.id,
                created_at: now,
                absolute_expires_at: now + Duration::hours(1),
                ip: None,
                user_agent: None,
                prev_sign_in_at: None,
                prev_sign_in_ip: None,
                password_changed_at: None,
                authenticated_at: None,
                auth_method: None,
                remember_until: None,
            })
            .expect("json"),
        )]
        .into(),
        expiry_date: now + Duration::hours(1),
    };
    tower_sessions::SessionStore::create(
        &store::PgSessionStore::new(setup_pool.clone(), Duration::minutes(30)),
        &mut record,
    )
    .await
    .expect("session");
    setup_pool.close().await;
    let cookie = format!("portcullis_session={}", record.id);

    // A first instance creates what instances create once (the CSRF key); the second
    // measures what starting an instance costs, so it can be subtracted.
    run_instance(&db, async |_: &TestApp| {}).await;
    let base = settled_stats(&db).await;
    run_instance(&db, async |_: &TestApp| {}).await;
    let idle = settled_stats(&db).await;
    run_instance(&db, async |app: &TestApp| {
        for _ in 0..20 {
            let response = app
                .bare_client()
                .get(app.url("/account"))
                .header("accept", BROWSER_ACCEPT)
                .header("cookie", &cookie)
                .send()
                .await
                .expect("GET");
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{}",
                describe(response).await
            );
        }
    })
    .await;
    let busy = settled_stats(&db).await;

    let start_up = (idle.0 - base.0, idle.1 - base.1);
    let views = (busy.0 - idle.0 - start_up.0, busy.1 - idle.1 - start_up.1);
    // 20 executions, plus the one Parse/Describe/Sync that prepares the query on the
    // instance's only connection (PostgreSQL counts its Sync as a transaction).
    assert_eq!(
        views.0,
        20 + 1,
        "transactions for 20 page views (start-up costs {start_up:?})"
    );
    assert_eq!(views.1, 0, "rows written by 20 page views");
}
