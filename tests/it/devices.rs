//! Devices people recognise: session lists with the device in words, the sign-in method and
//! relative times; times in the viewer's time zone; "sign out everyone"; `--max-sessions`.

use std::sync::Arc;

use portcullis::auth::{
    Role,
    store::{BINDING_KEY, PgSessionStore, SessionBinding},
};
use reqwest::{StatusCode, header::ACCEPT};
use tokio::sync::Barrier;
use tower_sessions::{
    SessionStore,
    session::{Id, Record},
};

use crate::support::*;

const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 \
                          (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const FIREFOX_ANDROID: &str =
    "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0";

/// Signs `name` in from a new client that sends `user_agent`.
async fn sign_in_as(app: &TestApp, name: &str, user_agent: &str) -> Browser {
    let browser = app.client();
    let csrf = app.login_csrf(&browser).await;
    let response = browser
        .post(app.url("/login"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .header("user-agent", user_agent)
        .form(&[("username", name), ("password", PASSWORD), ("csrf", &csrf)])
        .send()
        .await
        .expect("POST /login");
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "{}",
        describe(response).await
    );
    browser
}

async fn page(app: &TestApp, browser: &Browser, path: &str) -> String {
    let response = app.get(browser, path).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response.text().await.expect("body")
}

#[tokio::test]
async fn the_account_page_names_each_device_its_sign_in_method_and_when() {
    let app = TestApp::spawn().await;
    app.create_user("amy", Role::Member).await;
    let _phone = sign_in_as(&app, "amy", FIREFOX_ANDROID).await;
    let laptop = sign_in_as(&app, "amy", CHROME_MAC).await;
    let page = page(&app, &laptop, "/account").await;
    for text in [
        "Chrome on macOS",
        "Firefox on Android",
        // The raw user agent stays available, as the name's tooltip.
        &format!(r#"title="{CHROME_MAC}""#),
        "This device",
        "Signed in with</dt><dd>Password</dd>",
        r#"<time datetime=""#,
        ">just now</time>",
        "Sign out this session",
    ] {
        assert!(page.contains(text), "account page lacks {text:?}: {page}");
    }
    // "This device" marks the laptop's card, the one the page was asked from.
    let this = page.find("This device").expect("marker");
    let chrome = page.find(">Chrome on macOS<").expect("chrome card");
    let firefox = page.find(">Firefox on Android<").expect("firefox card");
    assert!(
        chrome < this && (firefox < chrome || firefox > this),
        "the marker belongs to Chrome's card: {page}"
    );
    // Times are relative with the exact time in the tooltip, UTC until a zone is chosen.
    let datetime = page
        .split(r#"<time datetime=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a datetime");
    assert!(datetime.ends_with("+00:00"), "{datetime}");
    assert!(
        page.contains(" UTC\">"),
        "exact UTC time in a title: {page}"
    );
}

#[tokio::test]
async fn the_admin_user_page_lists_sessions_the_same_way() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    app.create_user("bob", Role::Member).await;
    sign_in_as(&app, "bob", FIREFOX_ANDROID).await;
    let id = app.user_id("bob").await;
    let page = page(&app, &admin, &format!("/admin/users/{id}")).await;
    assert!(page.contains("Firefox on Android"), "{page}");
    assert!(page.contains(">just now</time>"), "{page}");
    assert!(
        !page.contains("This device"),
        "not the admin's session: {page}"
    );
}

#[tokio::test]
async fn a_chosen_time_zone_changes_the_times_on_every_page() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    let before = page(&app, &admin, "/account").await;
    assert!(
        before.contains("until you choose your time zone"),
        "{before}"
    );
    assert!(before.contains(r#"href="/account/time-zone""#), "{before}");
    // The list is on its own page: the account page stays light.
    assert!(!before.contains("Asia/Kolkata"), "{before}");
    let list = page(&app, &admin, "/account/time-zone").await;
    for zone in ["Asia/Kolkata", "Europe/Paris", "America/New_York"] {
        assert!(
            list.contains(&format!(r#"<option value="{zone}">"#)),
            "{list}"
        );
    }

    let response = app
        .post_form(
            &admin,
            "/account/time-zone",
            &[("time_zone", "Asia/Kolkata")],
        )
        .await;
    assert_eq!(location(&response), "/account?done=time_zone_saved");
    let stored: Option<String> = sqlx::query_scalar("SELECT time_zone FROM users")
        .fetch_one(&app.pool)
        .await
        .expect("time zone");
    assert_eq!(stored.as_deref(), Some("Asia/Kolkata"));

    let account = page(&app, &admin, "/account?done=time_zone_saved").await;
    assert!(account.contains("Your time zone was saved."), "{account}");
    assert!(
        account.contains("<strong>Asia/Kolkata</strong>"),
        "{account}"
    );
    assert!(account.contains(" IST"), "facts in IST: {account}");
    assert!(
        account.contains("+05:30\""),
        "datetime with the offset: {account}"
    );
    assert!(!account.contains(" UTC<"), "no time left in UTC: {account}");
    // Other pages follow the same preference, with the session's one query.
    for path in ["/admin", "/admin/audit"] {
        let other = page(&app, &admin, path).await;
        assert!(other.contains(" IST"), "{path} in IST: {other}");
        assert!(!other.contains(" UTC<"), "{path} still shows UTC: {other}");
    }

    // An empty choice goes back to UTC.
    let response = app
        .post_form(&admin, "/account/time-zone", &[("time_zone", "")])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let account = page(&app, &admin, "/account").await;
    assert!(account.contains(" UTC"), "{account}");
    assert!(
        account.contains("until you choose your time zone"),
        "{account}"
    );
}

#[tokio::test]
async fn an_unknown_time_zone_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let amy = app.user_client("amy", Role::Member).await;
    for bad in [
        "Mars/Olympus",
        "europe/paris",
        "Etc/GMT+5",
        "../../etc/passwd",
    ] {
        let response = app
            .post_form(&amy, "/account/time-zone", &[("time_zone", bad)])
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body = response.text().await.expect("body");
        assert!(body.contains("Choose a time zone from the list."), "{body}");
        assert!(
            body.contains(r#"<select id="time_zone" name="time_zone" aria-invalid="true""#),
            "the field is marked: {body}"
        );
        assert!(
            body.contains("<h1>Time zone</h1>"),
            "the page is whole: {body}"
        );
    }
    let stored: Option<String> = sqlx::query_scalar("SELECT time_zone FROM users")
        .fetch_one(&app.pool)
        .await
        .expect("time zone");
    assert_eq!(stored, None);
}

/// Makes every session of `name` look signed in 11 minutes ago, past the reauth window.
async fn age_authentication(app: &TestApp, name: &str) {
    sqlx::query(
        "UPDATE sessions SET authenticated_at = now() - interval '11 minutes' \
         WHERE user_id = (SELECT id FROM users WHERE username = $1)",
    )
    .bind(name)
    .execute(&app.pool)
    .await
    .expect("age the sign-in");
}

async fn live_sessions(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND ended_at > now()")
        .await
}

#[tokio::test]
async fn sign_out_everyone_needs_a_recent_sign_in_and_the_typed_words() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    let admin_phone = sign_in_as(&app, "root", FIREFOX_ANDROID).await;
    let amy = app.user_client("amy", Role::Member).await;
    let bob = app.user_client("bob", Role::Editor).await;
    assert_eq!(live_sessions(&app).await, 4);
    let path = "/admin/sessions/revoke-everyone";

    // Not recently authenticated: the third answer, nothing revoked.
    let csrf = app.session_csrf(&admin).await;
    age_authentication(&app, "root").await;
    let response = app
        .post_form_with_csrf(
            &admin,
            path,
            &[("confirmation", "sign out everyone")],
            &csrf,
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&response).starts_with("/reauth"),
        "{}",
        location(&response)
    );
    assert_eq!(live_sessions(&app).await, 4);
    sqlx::query("UPDATE sessions SET authenticated_at = now()")
        .execute(&app.pool)
        .await
        .expect("fresh again");

    // Without the words, or with others: 400, the field named, nothing revoked.
    for typed in ["", "sign out", "yes"] {
        let response = app
            .post_form(&admin, path, &[("confirmation", typed)])
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{typed:?}");
        let body = response.text().await.expect("body");
        assert!(body.contains("Nobody was signed out."), "{body}");
        assert!(
            body.contains(r#"id="everyone-confirmation""#)
                && body.contains("aria-invalid=\"true\""),
            "{body}"
        );
    }
    assert_eq!(live_sessions(&app).await, 4);

    let response = app
        .post_form(&admin, path, &[("confirmation", "  Sign out everyone ")])
        .await;
    assert_eq!(location(&response), "/admin?done=everyone_signed_out");
    // Everyone but the session that asked: the admin's phone too.
    assert_eq!(live_sessions(&app).await, 1);
    assert_eq!(app.get(&admin, "/admin").await.status(), StatusCode::OK);
    for (browser, path) in [
        (&amy, "/account"),
        (&bob, "/reports"),
        (&admin_phone, "/admin"),
    ] {
        assert_login_redirect(app.get(browser, path).await, "revoked", Some(path)).await;
    }
    let events = app.audit("event = 'sessions_revoked_everyone'", 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].username.as_deref(), Some("root"));
    let count = events[0].detail.as_ref().map(|d| d["count"].clone());
    assert_eq!(count, Some(serde_json::json!(3)), "{:?}", events[0].detail);
}

#[tokio::test]
async fn a_sign_in_beyond_the_cap_signs_out_the_oldest_with_its_own_notice() {
    let app = TestApp::spawn_with(|s| s.max_sessions = Some(2)).await;
    app.create_user("amy", Role::Member).await;
    let first = sign_in_as(&app, "amy", FIREFOX_ANDROID).await;
    let second = sign_in_as(&app, "amy", CHROME_MAC).await;
    assert_eq!(app.get(&first, "/account").await.status(), StatusCode::OK);
    let third = sign_in_as(&app, "amy", CHROME_MAC).await;
    assert_eq!(live_sessions(&app).await, 2);
    let response = app.get(&first, "/account").await;
    assert_login_redirect(response, "session_limit", Some("/account")).await;
    // A program is told the same reason.
    assert_api_401(app.get_json(&first, "/api/me").await, "session_limit").await;
    let notice = app
        .get(&first, "/login?notice=session_limit")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        notice.contains("You were signed out because you signed in on another device."),
        "{notice}"
    );
    for browser in [&second, &third] {
        assert_eq!(app.get(browser, "/account").await.status(), StatusCode::OK);
    }
    let reason: String =
        sqlx::query_scalar("SELECT revoked_reason FROM sessions WHERE revoked_at IS NOT NULL")
            .fetch_one(&app.pool)
            .await
            .expect("one revoked");
    assert_eq!(reason, "session_limit");
    let events = app
        .audit("event = 'session_revoked' AND reason = 'session_limit'", 1)
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].username.as_deref(), Some("amy"));
}

#[tokio::test]
async fn without_a_cap_sessions_are_not_limited() {
    let app = TestApp::spawn().await;
    app.create_user("amy", Role::Member).await;
    for _ in 0..4 {
        sign_in_as(&app, "amy", CHROME_MAC).await;
    }
    assert_eq!(live_sessions(&app).await, 4);
}

/// A session record as a sign-in hands it to the store.
fn new_session(user_id: i64) -> Record {
    let now = time::OffsetDateTime::now_utc();
    let binding = SessionBinding {
        user_id,
        created_at: now,
        absolute_expires_at: now + time::Duration::hours(1),
        ip: None,
        user_agent: Some(CHROME_MAC.into()),
        prev_sign_in_at: None,
        prev_sign_in_ip: None,
        password_changed_at: None,
        authenticated_at: None,
        auth_method: Some("password".into()),
        remember_until: None,
    };
    Record {
        id: Id::default(),
        data: [(
            BINDING_KEY.to_owned(),
            serde_json::to_value(binding).expect("json"),
        )]
        .into(),
        expiry_date: now + time::Duration::hours(1),
    }
}

#[tokio::test]
async fn simultaneous_sign_ins_never_leave_more_sessions_than_the_cap() {
    // Through HTTP, sign-ins queue for the password hasher and rarely overlap; the store's
    // insert is where they meet, so it is driven directly, all at the same moment, on
    // connections opened beforehand (the pool's five), a few rounds over.
    const CAP: u32 = 2;
    const AT_ONCE: usize = 5;
    const ROUNDS: usize = 4;
    let app = TestApp::spawn_with(|s| s.max_sessions = Some(CAP)).await;
    app.create_user("amy", Role::Member).await;
    let user_id = app.user_id("amy").await;
    let store = PgSessionStore::new(app.pool.clone(), time::Duration::minutes(30))
        .with_max_sessions(Some(CAP));
    for round in 0..ROUNDS {
        let mut open = Vec::new();
        for _ in 0..AT_ONCE {
            open.push(app.pool.acquire().await.expect("connection"));
        }
        drop(open);
        let barrier = Arc::new(Barrier::new(AT_ONCE));
        let tasks: Vec<_> = (0..AT_ONCE)
            .map(|_| {
                let store = store.clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    let mut record = new_session(user_id);
                    barrier.wait().await;
                    SessionStore::create(&store, &mut record).await
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task").expect("session stored");
        }
        assert_eq!(live_sessions(&app).await, i64::from(CAP), "round {round}");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM sessions WHERE revoked_reason = 'session_limit'")
            .await,
        (AT_ONCE * ROUNDS) as i64 - i64::from(CAP)
    );
    // The newest stay: the highest ids.
    let kept: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM sessions WHERE revoked_at IS NULL ORDER BY id DESC")
            .fetch_all(&app.pool)
            .await
            .expect("kept");
    let newest: Vec<i64> = sqlx::query_scalar("SELECT id FROM sessions ORDER BY id DESC LIMIT $1")
        .bind(i64::from(CAP))
        .fetch_all(&app.pool)
        .await
        .expect("newest");
    assert_eq!(kept, newest);
}
