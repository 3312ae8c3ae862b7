//! Sign-in throttling as an attacker meets it: the budget holds under simultaneous
//! guesses, nobody can lock the owner out, and no block lasts for good.

use std::sync::Arc;

use portcullis::{accounts, auth::Role};
use reqwest::{StatusCode, header::ACCEPT};
use tokio::sync::Barrier;

use crate::support::*;

/// 300 wrong guesses for one name sent at the same moment, each from its own address
/// (through a trusted proxy): exactly the budget is checked, every other one is refused
/// before any hash (429, or 503 where the hasher's line overflowed), and afterwards the
/// owner still signs in from the browser that signed in before. A browser that never did
/// waits like the attacker.
#[tokio::test]
async fn a_burst_of_simultaneous_guesses_gets_exactly_the_budget_and_the_owner_still_signs_in() {
    let app = TestApp::spawn_with(|s| {
        s.trusted_proxies = vec!["127.0.0.0/8".parse().expect("net")];
    })
    .await;
    app.create_user("owner", Role::Member).await;
    let owner = app.client();
    app.login(&owner, "owner").await;

    let attacker = app.client();
    let csrf = app.login_csrf(&attacker).await;
    let burst = 300;
    let barrier = Arc::new(Barrier::new(burst));
    let guesses = (0..burst).map(|n| {
        let client = (*attacker).clone();
        let url = app.url("/login");
        let csrf = csrf.clone();
        let barrier = Arc::clone(&barrier);
        tokio::spawn(async move {
            let request = client
                .post(url)
                .header(ACCEPT, BROWSER_ACCEPT)
                .header(
                    "x-forwarded-for",
                    format!("10.9.{}.{}", n / 250, n % 250 + 1),
                )
                .form(&[
                    ("username", "owner"),
                    ("password", "wrong guess!"),
                    ("csrf", csrf.as_str()),
                ]);
            barrier.wait().await;
            request.send().await.map(|r| r.status())
        })
    });
    let mut statuses = Vec::new();
    for guess in guesses.collect::<Vec<_>>() {
        statuses.push(guess.await.expect("task").expect("response"));
    }
    let count = |status: StatusCode| statuses.iter().filter(|s| **s == status).count();
    assert_eq!(
        count(StatusCode::UNAUTHORIZED),
        5,
        "exactly the budget is checked: {statuses:?}"
    );
    // Sign-ins wait in the hasher's line before the throttle sees them, and a full line is
    // answered 503 at once: a burst this size can overflow it. Either way no hash is spent.
    assert_eq!(
        count(StatusCode::TOO_MANY_REQUESTS) + count(StatusCode::SERVICE_UNAVAILABLE),
        burst - 5,
        "all the others are refused before hashing (blocked, or busy): {statuses:?}"
    );
    let checked = app.audit("event = 'sign_in_failed'", 5).await;
    assert_eq!(checked.len(), 5, "{checked:?}");

    // The owner's browser is a known device: its own counter, untouched by the flood.
    app.login(&owner, "owner").await;
    // A browser that never signed in waits, even with the right password.
    let stranger = app.client();
    let response = app.post_login(&stranger, "owner", PASSWORD, "").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// A known device's own failures are throttled too, on its own counter.
#[tokio::test]
async fn a_known_device_has_its_own_budget() {
    let app = TestApp::spawn().await;
    app.create_user("ann", Role::Member).await;
    let browser = app.client();
    app.login(&browser, "ann").await;
    for _ in 0..5 {
        let response = app.post_login(&browser, "ann", "wrong guess!", "").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = app.post_login(&browser, "ann", PASSWORD, "").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // The name's shared counter was not touched: another browser may still try.
    app.login(&app.client(), "ann").await;
    let rows = app
        .count("SELECT count(*) FROM login_throttles WHERE scope = 'device' AND key LIKE 'ann:%'")
        .await;
    assert_eq!(rows, 1);
}

/// However many failures pile up, a name's block never outlasts the throttle window: a
/// permanent lock would let anyone lock out anyone, the only administrator first.
#[tokio::test]
async fn no_number_of_failures_locks_a_name_for_good() {
    let app = TestApp::spawn().await;
    app.create_user("admin1", Role::Admin).await;
    // 500 failures in a row, the last block just over.
    sqlx::query(
        "INSERT INTO login_throttles VALUES ('account', 'admin1', 60, 500, now(), now(), now() - interval '1 second')",
    )
    .execute(&app.pool)
    .await
    .expect("seed");
    let response = app
        .post_login(&app.client(), "admin1", "wrong guess!", "")
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let longest = app
        .count(
            "SELECT extract(epoch FROM blocked_until - now())::bigint FROM login_throttles \
             WHERE scope = 'account' AND key = 'admin1'",
        )
        .await;
    assert!(
        (1..=15 * 60).contains(&longest),
        "blocked for {longest} s, at most the 15-minute window"
    );
    let response = app.post_login(&app.client(), "admin1", PASSWORD, "").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = response.text().await.expect("body");
    assert!(body.contains("Try again in about"), "{body}");
}

/// `portcullis user unlock NAME` and a password reset (its link used) lift a block.
#[tokio::test]
async fn unlock_and_password_reset_lift_a_block() {
    let app = TestApp::spawn().await;
    app.create_user("kim", Role::Member).await;
    for _ in 0..5 {
        app.post_login(&app.client(), "kim", "wrong guess!", "")
            .await;
    }
    let blocked = app.post_login(&app.client(), "kim", PASSWORD, "").await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);

    let url = database_url(&app.db_name);
    let (ok, out, err) = cli(&["user", "unlock", "KIM", "--database-url", &url], "");
    assert!(ok && out.contains("lifted"), "{out} {err}");
    app.login(&app.client(), "kim").await;
    app.audit(
        "event = 'throttle_cleared' AND username = 'cli' AND target = 'kim'",
        1,
    )
    .await;

    for _ in 0..5 {
        app.post_login(&app.client(), "kim", "wrong guess!", "")
            .await;
    }
    let admin = app.user_client("boss", Role::Admin).await;
    let link = crate::links::reset_link(&app, &admin, "kim").await;
    crate::links::use_link(&app, &link, "a brand new passphrase").await;
    let response = app
        .post_login(&app.client(), "kim", "a brand new passphrase", "")
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

/// An attacker can block hundreds of names: the admin page searches and pages them.
#[tokio::test]
async fn the_throttles_page_searches_and_pages() {
    let app = TestApp::spawn().await;
    sqlx::query(
        "INSERT INTO login_throttles \
         SELECT 'account', 'victim' || n, 5, 5, now(), now(), now() + interval '10 minutes' \
         FROM generate_series(1, 120) n",
    )
    .execute(&app.pool)
    .await
    .expect("seed");
    let admin = app.user_client("boss", Role::Admin).await;
    let page = app
        .get(&admin, "/admin/throttles")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("120 throttles") && page.contains("Page 1 of 3"),
        "{page}"
    );
    let page = app
        .get(&admin, "/admin/throttles?q=victim11&page=1")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("11 throttles"),
        "victim11, victim110..119: {page}"
    );
    assert!(
        page.contains("victim115") && !page.contains("victim12<"),
        "{page}"
    );
    let page = app
        .get(&admin, "/admin/throttles?page=3")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("Page 3 of 3"), "{page}");
    // Clearing one lifts its block, on the record.
    let response = app
        .post_form(
            &admin,
            "/admin/throttles/clear",
            &[("scope", "account"), ("key", "victim7")],
        )
        .await;
    assert_eq!(location(&response), "/admin/throttles?done=cleared");
    app.audit("event = 'throttle_cleared' AND target = 'victim7'", 1)
        .await;
    let left = app
        .count("SELECT count(*) FROM login_throttles WHERE key = 'victim7'")
        .await;
    assert_eq!(left, 0);
}

/// A sign-in that upgrades an old hash replaces only the hash it verified: a password
/// changed meanwhile is never undone.
#[tokio::test]
async fn a_hash_upgrade_never_undoes_a_password_change() {
    let app = TestApp::spawn().await;
    app.create_user("lee", Role::Member).await;
    let lee = accounts::find(&app.pool, "lee").await.expect("lee");
    let current: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(lee.id)
        .fetch_one(&app.pool)
        .await
        .expect("hash");
    let stale = "$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA";
    let upgraded = accounts::upgrade_password_hash(&app.pool, lee.id, stale, "replacement")
        .await
        .expect("query");
    assert!(!upgraded);
    let after: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(lee.id)
        .fetch_one(&app.pool)
        .await
        .expect("hash");
    assert_eq!(after, current);
}

/// Hammering a blocked name is refused before any password check, and counted, not
/// recorded one row per attempt: the audit trail does not grow with a bot's requests.
#[tokio::test]
async fn refused_attempts_are_counted_not_recorded_one_row_each() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        app.post_login(&app.client(), "victim", "wrong guess!", "")
            .await;
    }
    // The five checked attempts are events (written a moment later, off the request).
    app.audit("event = 'sign_in_failed'", 5).await;
    let rows = app.count("SELECT count(*) FROM audit_events").await;
    let client = app.client();
    for _ in 0..40 {
        let response = app.post_login(&client, "victim", "wrong guess!", "").await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(
        app.counted("status = 429 AND reason = 'account'", 40).await,
        40
    );
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events").await,
        rows,
        "no row per refused attempt"
    );
}
