//! The account page: session facts, the user's sessions, password change.

use portcullis::auth::Role;
use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn the_account_page_shows_the_session_and_every_session_of_the_user() {
    let app = TestApp::spawn().await;
    app.create_user("amy", Role::Member).await;
    let first = app.client();
    app.login(&first, "amy").await;
    let second = app.client();
    let response = second
        .post(app.url("/login"))
        .header("accept", BROWSER_ACCEPT)
        .header("user-agent", "SecondBrowser/1.0")
        .form(&[
            ("username", "amy"),
            ("password", PASSWORD),
            ("csrf", app.login_csrf(&second).await.as_str()),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = app
        .get(&second, "/account")
        .await
        .text()
        .await
        .expect("body");
    for text in [
        "amy",
        "This session started",
        "Ends if idle until",
        "Ends at the latest",
        "Previous sign-in",
        "SecondBrowser/1.0",
        "This device",
        "Sign out all other sessions (1)",
    ] {
        assert!(page.contains(text), "account page lacks {text:?}: {page}");
    }
    // The previous sign-in is the first browser's, with its address.
    assert!(page.contains("from 127.0.0.1"), "{page}");
}

#[tokio::test]
async fn signing_out_one_or_all_other_sessions() {
    let app = TestApp::spawn().await;
    app.create_user("ben", Role::Member).await;
    let browsers = [app.client(), app.client(), app.client()];
    for b in &browsers {
        app.login(b, "ben").await;
    }
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM sessions ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .expect("ids");
    // From browser 0, sign out browser 1's session.
    let response = app
        .post_form(
            &browsers[0],
            &format!("/account/sessions/{}/revoke", ids[1]),
            &[],
        )
        .await;
    assert_eq!(location(&response), "/account?done=session_revoked");
    assert_login_redirect(
        app.get(&browsers[1], "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;
    assert_eq!(
        app.get(&browsers[2], "/account").await.status(),
        StatusCode::OK
    );
    // Then all others.
    let response = app
        .post_form(&browsers[0], "/account/sessions/revoke-others", &[])
        .await;
    assert_eq!(location(&response), "/account?done=others_revoked");
    let page = app
        .get(&browsers[0], "/account?done=others_revoked")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("All your other sessions were signed out."));
    assert_login_redirect(
        app.get(&browsers[2], "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;
    // Another user's session cannot be touched.
    app.create_user("cat", Role::Member).await;
    let cat = app.client();
    app.login(&cat, "cat").await;
    let cats: i64 = sqlx::query_scalar("SELECT max(id) FROM sessions")
        .fetch_one(&app.pool)
        .await
        .expect("id");
    let response = app
        .post_form(
            &browsers[0],
            &format!("/account/sessions/{cats}/revoke"),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get(&cat, "/account").await.status(), StatusCode::OK);
    // "Sign out" on the current session signs out.
    let response = app
        .post_form(
            &browsers[0],
            &format!("/account/sessions/{}/revoke", ids[0]),
            &[],
        )
        .await;
    assert_eq!(location(&response), "/login?notice=signed_out");
    assert_login_redirect(
        app.get(&browsers[0], "/account").await,
        "required",
        Some("/account"),
    )
    .await;
    app.audit(
        "event = 'session_revoked' AND reason IN ('user', 'user_others')",
        2,
    )
    .await;
}

#[tokio::test]
async fn changing_the_password_cycles_this_session_and_revokes_the_others() {
    let app = TestApp::spawn().await;
    app.create_user("cy", Role::Member).await;
    let here = app.client();
    app.login(&here, "cy").await;
    let elsewhere = app.client();
    app.login(&elsewhere, "cy").await;
    let old_cookie = app.session_cookie_of(&here).await;

    // Wrong current password, mismatched confirmation and a short one: explained, nothing changes.
    let response = app
        .post_form(
            &here,
            "/account/password",
            &[
                ("current_password", "nope"),
                ("new_password", "short"),
                ("confirm_password", "other"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let page = response.text().await.expect("body");
    assert!(
        page.contains("That is not your current password."),
        "{page}"
    );
    assert!(page.contains("at least 15 characters"), "{page}");
    assert!(page.contains("The two new passwords differ."), "{page}");
    assert!(
        page.contains("This device"),
        "the re-rendered page still lists sessions"
    );
    assert_eq!(
        app.get(&elsewhere, "/account").await.status(),
        StatusCode::OK
    );

    let response = app
        .post_form(
            &here,
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "a better password"),
                ("confirm_password", "a better password"),
            ],
        )
        .await;
    assert_eq!(location(&response), "/account?done=password_changed");
    let new_cookie = app.session_cookie_of(&here).await;
    assert_ne!(old_cookie, new_cookie, "the session id is cycled");
    assert_eq!(
        app.get(&here, "/account").await.status(),
        StatusCode::OK,
        "this session continues"
    );
    assert_login_redirect(
        app.get(&elsewhere, "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;
    let replay = app
        .bare_client()
        .get(app.url("/api/me"))
        .header("cookie", &old_cookie)
        .send()
        .await
        .expect("GET");
    assert_api_401(replay, "invalid_session").await;
    assert_eq!(
        app.post_login(&app.client(), "cy", PASSWORD, "")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post_login(&app.client(), "cy", "a better password", "")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let rows = app.audit("event = 'password_changed'", 1).await;
    assert_eq!(
        rows[0]
            .detail
            .as_ref()
            .map(|d| d["other_sessions_revoked"].clone()),
        Some(1.into())
    );
    app.audit("event = 'password_change_failed'", 1).await;
}

#[tokio::test]
async fn a_stale_form_after_expiry_leads_to_sign_in_and_back_to_the_page() {
    let app = TestApp::spawn_with(|s| s.idle_timeout = time::Duration::seconds(1)).await;
    let browser = app.user_client("stale", Role::Member).await;
    let csrf = app.session_csrf(&browser).await;
    app.idle_out("stale").await;
    let response = browser
        .post(app.url("/account/sessions/revoke-others"))
        .header("accept", BROWSER_ACCEPT)
        .header("referer", app.url("/account"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("POST");
    assert_login_redirect(response, "form_expired", Some("/account")).await;
    let page = app
        .get(&browser, "/login?next=%2Faccount&notice=form_expired")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("Your session expired before the form was sent; sign in and send it again.")
    );
}
