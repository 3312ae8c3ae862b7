//! Re-authentication, the third answer: signed in, but not recently enough for a
//! sensitive change. Neither 401 (who are you?) nor 403 (you may not).

use portcullis::auth::Role;
use reqwest::{StatusCode, header::ACCEPT};

use crate::support::*;

/// Makes every session of `name` look signed in `minutes` ago (no sleeping).
async fn age_authentication(app: &TestApp, name: &str, minutes: i64) {
    sqlx::query(
        "UPDATE sessions SET authenticated_at = now() - make_interval(mins => $2) \
         WHERE user_id = (SELECT id FROM users WHERE username = $1)",
    )
    .bind(name)
    .bind(minutes as i32)
    .execute(&app.pool)
    .await
    .expect("age the sign-in");
}

#[tokio::test]
async fn a_stale_admin_confirms_and_lands_back_on_the_change_with_its_fields() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    app.create_user("eve", Role::Member).await;
    let eve = app.user_id("eve").await;
    age_authentication(&app, "root", 11).await;

    let csrf = app.session_csrf(&admin).await;
    let action = format!("/admin/users/{eve}/role");
    let response = admin
        .post(app.url(&action))
        .header(ACCEPT, BROWSER_ACCEPT)
        .header("referer", app.url(&format!("/admin/users/{eve}")))
        .form(&[("csrf", csrf.as_str()), ("role", "editor")])
        .send()
        .await
        .expect("POST");
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "{}",
        describe(response).await
    );
    let to = location(&response);
    assert_eq!(to, format!("/reauth?next=%2Fadmin%2Fusers%2F{eve}"));
    let role: String = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
        .bind(eve)
        .fetch_one(&app.pool)
        .await
        .expect("role");
    assert_eq!(role, "member", "nothing changed yet");
    app.audit(
        "event = 'denied' AND reason = 'reauth_required' AND username = 'root'",
        1,
    )
    .await;

    // The page names the change.
    let page = app.get(&admin, &to).await.text().await.expect("body");
    assert!(
        page.contains("Confirm it’s you") && page.contains("change a user&#39;s role"),
        "{page}"
    );
    let csrf = hidden_field(&page, "csrf").expect("csrf");

    // A wrong password is refused on the same page.
    let wrong = app
        .post_form_with_csrf(
            &admin,
            "/reauth",
            &[("password", "not my password"), ("next", "/admin")],
            &csrf,
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong
            .text()
            .await
            .expect("body")
            .contains("That is not your password.")
    );

    // The right one: a new session id, then the change offered again, fields kept.
    let before = admin.cookie(&app.url("/"), app.settings.session_cookie_name());
    let confirmed = app
        .post_form_with_csrf(
            &admin,
            "/reauth",
            &[("password", PASSWORD), ("next", "/admin")],
            &csrf,
        )
        .await;
    assert_eq!(
        confirmed.status(),
        StatusCode::OK,
        "{}",
        describe(confirmed).await
    );
    let after = admin.cookie(&app.url("/"), app.settings.session_cookie_name());
    assert!(
        after.is_some() && after != before,
        "the session id is cycled"
    );
    let page = confirmed.text().await.expect("body");
    assert!(page.contains(&format!(r#"action="{action}""#)), "{page}");
    assert!(page.contains(r#"name="role" value="editor""#), "{page}");
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let done = app
        .post_form_with_csrf(&admin, &action, &[("role", "editor")], &csrf)
        .await;
    assert_eq!(
        location(&done),
        format!("/admin/users/{eve}?done=role_changed")
    );
    app.audit("event = 'reauthenticated' AND username = 'root'", 1)
        .await;
    app.audit("event = 'role_changed' AND target = 'eve'", 1)
        .await;
}

#[tokio::test]
async fn a_program_gets_401_insufficient_user_authentication() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    app.create_user("eve", Role::Member).await;
    let eve = app.user_id("eve").await;
    age_authentication(&app, "root", 30).await;
    let csrf = app.session_csrf(&admin).await;
    let response = admin
        .post(app.url(&format!("/admin/users/{eve}/disable")))
        .header(ACCEPT, "application/json")
        .form(&[("csrf", csrf.as_str()), ("confirm", "yes")])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&response, "www-authenticate"),
        r#"Session realm="portcullis", error="insufficient_user_authentication", max_age=600"#
    );
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "insufficient_user_authentication");
    assert_eq!(body["reason"], "reauth_required");
    let disabled: Option<i64> =
        sqlx::query_scalar("SELECT id FROM users WHERE id = $1 AND disabled_at IS NOT NULL")
            .bind(eve)
            .fetch_optional(&app.pool)
            .await
            .expect("query");
    assert_eq!(disabled, None, "nothing changed");
}

/// Within the window nothing is asked; signing out this very session never asks; signing
/// out the others does once the window has passed.
#[tokio::test]
async fn only_sensitive_changes_outside_the_window_ask() {
    let app = TestApp::spawn().await;
    let member = app.user_client("mo", Role::Member).await;
    let other = app.client();
    app.login(&other, "mo").await;
    let response = app
        .post_form(&member, "/account/sessions/revoke-others", &[])
        .await;
    assert_eq!(location(&response), "/account?done=others_revoked");

    app.login(&other, "mo").await;
    age_authentication(&app, "mo", 11).await;
    let response = app
        .post_form(&member, "/account/sessions/revoke-others", &[])
        .await;
    assert!(
        location(&response).starts_with("/reauth?next="),
        "{}",
        location(&response)
    );

    let page = app
        .get(&member, "/account")
        .await
        .text()
        .await
        .expect("body");
    let current: i64 = sqlx::query_scalar(
        "SELECT id FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = 'mo') \
         AND ended_at > now() ORDER BY created_at LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .expect("session");
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let response = app
        .post_form_with_csrf(
            &member,
            &format!("/account/sessions/{current}/revoke"),
            &[],
            &csrf,
        )
        .await;
    assert!(
        location(&response).starts_with("/login?"),
        "signing out needs no confirmation: {}",
        location(&response)
    );
}
