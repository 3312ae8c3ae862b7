//! "Keep me signed in" (`--remember-days`): a session that survives closing the browser and
//! idle time, whose token is re-issued at most once a day, that ends like any other (sign-out,
//! a password or second-factor change, "sign out everywhere"), that never keeps an
//! administrator past the usual limits, and that never stands in for a second factor.

use portcullis::auth::Role;
use reqwest::{StatusCode, header::SET_COOKIE};
use time::Duration;

use crate::support::*;

const DAYS: i64 = 30;

async fn remembering_app() -> TestApp {
    TestApp::spawn_with(|s| {
        s.idle_timeout = Duration::minutes(30);
        s.absolute_timeout = Duration::hours(12);
        s.remember = Some(Duration::days(DAYS));
    })
    .await
}

/// Signs `name` in from `client`, ticking "Keep me signed in" when `remember`; returns the
/// `Set-Cookie` header of the session cookie.
async fn sign_in(app: &TestApp, client: &Browser, name: &str, remember: bool) -> String {
    let csrf = app.login_csrf(client).await;
    let mut form = vec![
        ("username", name),
        ("password", PASSWORD),
        ("next", "/account"),
        ("csrf", csrf.as_str()),
    ];
    if remember {
        form.push(("remember", "on"));
    }
    let response = client
        .post(app.url("/login"))
        .header(reqwest::header::ACCEPT, BROWSER_ACCEPT)
        .form(&form)
        .send()
        .await
        .expect("POST /login");
    let cookie = session_set_cookie(app, response.headers()).expect("a session cookie");
    assert_eq!(app.landing(client, response).await, "/account");
    cookie
}

fn session_set_cookie(app: &TestApp, headers: &reqwest::header::HeaderMap) -> Option<String> {
    let name = format!("{}=", app.settings.session_cookie_name());
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&name))
        .map(str::to_owned)
}

/// Seconds of `Max-Age` in a `Set-Cookie` header, if it has one.
fn max_age(set_cookie: &str) -> Option<i64> {
    set_cookie
        .split(';')
        .map(str::trim)
        .find_map(|part| part.strip_prefix("Max-Age="))
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn the_box_is_offered_only_when_configured() {
    let off = TestApp::spawn().await;
    let page = off
        .get(&off.client(), "/login")
        .await
        .text()
        .await
        .expect("body");
    assert!(!page.contains(r#"name="remember""#), "{page}");
    // Ticking it anyway (a crafted form) keeps the usual browser-session cookie.
    off.create_user("plain", Role::Member).await;
    let cookie = sign_in(&off, &off.client(), "plain", true).await;
    assert_eq!(max_age(&cookie), None, "{cookie}");

    let on = remembering_app().await;
    let page = on
        .get(&on.client(), "/login")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains(r#"name="remember""#), "{page}");
    assert!(page.contains(&format!("{DAYS} days")), "{page}");
}

#[tokio::test]
async fn a_remembered_session_survives_idle_time_and_the_browser_closing() {
    let app = remembering_app().await;
    app.create_user("rita", Role::Member).await;
    app.create_user("una", Role::Member).await;
    let remembered = app.client();
    let cookie = sign_in(&app, &remembered, "rita", true).await;
    // A persistent cookie: it outlives the browser, until the remember period ends.
    let age = max_age(&cookie).expect("Max-Age on a remembered session's cookie");
    assert!(
        (DAYS * 86_400 - 120..=DAYS * 86_400).contains(&age),
        "{cookie}"
    );
    // Not ticked: a cookie that ends with the browser, as before.
    let ordinary = app.client();
    let cookie = sign_in(&app, &ordinary, "una", false).await;
    assert_eq!(max_age(&cookie), None, "{cookie}");

    // Three days without a request: the remembered session is still there, the other idled out.
    app.age_sessions("rita", Duration::days(3)).await;
    app.age_sessions("una", Duration::days(3)).await;
    assert_eq!(
        app.get(&remembered, "/account").await.status(),
        StatusCode::OK
    );
    assert_login_redirect(
        app.get(&ordinary, "/account").await,
        "expired",
        Some("/account"),
    )
    .await;
    // The account page says how long it lasts.
    let page = app
        .get(&remembered, "/account")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("Kept signed in"), "{page}");

    // Its own end still holds: past the remember period it is over.
    app.age_sessions("rita", Duration::days(DAYS)).await;
    assert_login_redirect(
        app.get(&remembered, "/account").await,
        "expired",
        Some("/account"),
    )
    .await;
}

#[tokio::test]
async fn its_token_is_reissued_at_most_once_a_day() {
    let app = remembering_app().await;
    app.create_user("tess", Role::Member).await;
    let browser = app.client();
    let first = sign_in(&app, &browser, "tess", true).await;
    let first_value = first.split(';').next().unwrap_or_default().to_owned();
    // Within the day: no new cookie, no write.
    let response = app.get(&browser, "/account").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(session_set_cookie(&app, response.headers()), None);

    // A day later, the next page view re-issues it: a new token, still persistent.
    sqlx::query(
        "UPDATE sessions SET token_issued_at = token_issued_at - interval '25 hours' \
         WHERE user_id = (SELECT id FROM users WHERE username = 'tess')",
    )
    .execute(&app.pool)
    .await
    .expect("age the token");
    let response = app.get(&browser, "/account").await;
    assert_eq!(response.status(), StatusCode::OK);
    let second = session_set_cookie(&app, response.headers()).expect("a re-issued cookie");
    let second_value = second.split(';').next().unwrap_or_default().to_owned();
    assert_ne!(first_value, second_value);
    assert!(
        max_age(&second).is_some_and(|age| age > 86_400 * (DAYS - 2)),
        "{second}"
    );
    assert!(second.contains("HttpOnly"), "{second}");
    // The page it came with carries forms that work with the new token.
    let page = response.text().await.expect("body");
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let response = app
        .post_form_with_csrf(&browser, "/account/sessions/revoke-others", &[], &csrf)
        .await;
    assert!(
        response.status().is_redirection() || response.status().is_success(),
        "{}",
        describe(response).await
    );
    // Still one session, and the old token opens nothing.
    assert_eq!(
        app.count(
            "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.username = 'tess' AND s.ended_at > now()"
        )
        .await,
        1
    );
    let stale = app.bare_client();
    let response = stale
        .get(app.url("/api/me"))
        .header(reqwest::header::COOKIE, &first_value)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The next view the same day changes nothing.
    let response = app.get(&browser, "/account").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(session_set_cookie(&app, response.headers()), None);
}

#[tokio::test]
async fn an_administrator_keeps_the_usual_limits() {
    let app = remembering_app().await;
    app.create_user("ada", Role::Admin).await;
    app.create_user("mel", Role::Member).await;
    let admin = app.client();
    sign_in(&app, &admin, "ada", true).await;
    let member = app.client();
    sign_in(&app, &member, "mel", true).await;
    // 40 minutes idle: past the idle limit, which still binds an administrator.
    app.age_sessions("ada", Duration::minutes(40)).await;
    app.age_sessions("mel", Duration::minutes(40)).await;
    assert_login_redirect(app.get(&admin, "/admin").await, "expired", Some("/admin")).await;
    assert_eq!(app.get(&member, "/account").await.status(), StatusCode::OK);

    // Promoted while remembered: the absolute limit counts from the sign-in.
    sign_in(&app, &admin, "ada", true).await;
    let member_id = app.user_id("mel").await;
    sqlx::query("UPDATE users SET role = 'admin' WHERE id = $1")
        .bind(member_id)
        .execute(&app.pool)
        .await
        .expect("promote");
    for _ in 0..3 {
        // Active every 25 minutes for 13 hours: never idle, but past the 12-hour limit.
        app.age_sessions("mel", Duration::hours(13) / 3).await;
        sqlx::query("UPDATE sessions SET last_seen_at = now() WHERE user_id = $1")
            .bind(member_id)
            .execute(&app.pool)
            .await
            .expect("activity");
    }
    assert_login_redirect(app.get(&member, "/admin").await, "expired", Some("/admin")).await;
}

#[tokio::test]
async fn sign_out_and_a_password_change_end_it() {
    let app = remembering_app().await;
    app.create_user("pat", Role::Member).await;
    let laptop = app.client();
    sign_in(&app, &laptop, "pat", true).await;
    let phone = app.client();
    sign_in(&app, &phone, "pat", true).await;
    // A password change on the phone ends the laptop's remembered session.
    let response = app
        .post_form(
            &phone,
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "another long passphrase of mine"),
                ("confirm_password", "another long passphrase of mine"),
            ],
        )
        .await;
    assert!(
        response.status().is_redirection(),
        "{}",
        describe(response).await
    );
    // The phone's new session id comes in a cookie that keeps the remembered lifetime.
    let cookie = session_set_cookie(&app, response.headers()).expect("a new session id");
    assert!(max_age(&cookie).is_some(), "{cookie}");
    assert_login_redirect(
        app.get(&laptop, "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;
    // The phone's session goes on, still remembered (its cookie re-issued with the new id
    // keeps its lifetime).
    app.age_sessions("pat", Duration::days(2)).await;
    assert_eq!(app.get(&phone, "/account").await.status(), StatusCode::OK);
    // Signing out ends it for good.
    let csrf = app.session_csrf(&phone).await;
    let response = app.post_form_with_csrf(&phone, "/logout", &[], &csrf).await;
    assert!(response.status().is_redirection());
    assert_eq!(
        app.count(
            "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.username = 'pat' AND s.ended_at > now()"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_second_factor_change_ends_it_and_it_never_stands_in_for_one() {
    let app = remembering_app().await;
    app.create_user("sam", Role::Member).await;
    let kept = app.client();
    sign_in(&app, &kept, "sam", true).await;
    let plain = app.client();
    sign_in(&app, &plain, "sam", false).await;
    let here = app.client();
    sign_in(&app, &here, "sam", false).await;
    // Turning on two-step verification ends the remembered session elsewhere (not the
    // ordinary one: that one ends by itself within the idle limit).
    let (key, _) = crate::two_factor::enrol(&app, &here).await;
    assert_login_redirect(
        app.get(&kept, "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;
    assert_eq!(app.get(&plain, "/account").await.status(), StatusCode::OK);

    // A new device, "keep me signed in" ticked: the second step all the same, and the box
    // is honoured once it is passed.
    let phone = app.client();
    let csrf = app.login_csrf(&phone).await;
    let response = phone
        .post(app.url("/login"))
        .header(reqwest::header::ACCEPT, BROWSER_ACCEPT)
        .form(&[
            ("username", "sam"),
            ("password", PASSWORD),
            ("csrf", csrf.as_str()),
            ("remember", "on"),
        ])
        .send()
        .await
        .expect("POST /login");
    assert_eq!(location(&response), "/login/second-factor?next=");
    assert_eq!(
        session_set_cookie(&app, response.headers()),
        None,
        "no session yet"
    );
    assert_login_redirect(
        app.get(&phone, "/account").await,
        "required",
        Some("/account"),
    )
    .await;
    let page = app
        .get(&phone, "/login/second-factor")
        .await
        .text()
        .await
        .expect("body");
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let code = crate::two_factor::code(&key, 1);
    let response = phone
        .post(app.url("/login/second-factor"))
        .header(reqwest::header::ACCEPT, BROWSER_ACCEPT)
        .form(&[("csrf", csrf.as_str()), ("code", code.as_str())])
        .send()
        .await
        .expect("POST");
    let cookie = session_set_cookie(&app, response.headers()).expect("a session cookie");
    assert!(
        max_age(&cookie).is_some(),
        "remembered after the second step: {cookie}"
    );
    app.landing(&phone, response).await;
    assert_eq!(
        app.count(
            "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.username = 'sam' AND s.remembered AND s.ended_at > now()"
        )
        .await,
        1
    );
}
