//! First run, "request access", the sign-in loop diagnosis, help and search engines.

use portcullis::{accounts::setup, auth::Role};
use reqwest::{StatusCode, header::ACCEPT};

use crate::support::*;

async fn setup_form(app: &TestApp, browser: &Browser, token: &str) -> (StatusCode, String) {
    let response = app
        .get(browser, &format!("/setup?token={}", urlencode(token)))
        .await;
    let status = response.status();
    (status, response.text().await.expect("body"))
}

async fn post_setup(
    app: &TestApp,
    browser: &Browser,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    browser
        .post(app.url("/setup"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .form(fields)
        .send()
        .await
        .expect("POST /setup")
}

#[tokio::test]
async fn the_first_admin_is_created_with_a_one_time_link() {
    let app = TestApp::spawn().await;
    let token = setup::issue_token(&app.pool)
        .await
        .expect("token")
        .expect("no users yet");
    let browser = app.client();
    for bad in ["", "wrong", &token[..token.len() - 1]] {
        assert_eq!(
            setup_form(&app, &browser, bad).await.0,
            StatusCode::NOT_FOUND,
            "{bad:?}"
        );
    }
    let (status, page) = setup_form(&app, &browser, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Set up Portcullis"), "{page}");
    let csrf = hidden_field(&page, "csrf").expect("csrf");

    // The password policy applies.
    let response = post_setup(
        &app,
        &browser,
        &[
            ("token", &token),
            ("csrf", &csrf),
            ("username", "root"),
            ("password", "short"),
            ("confirm_password", "short"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("at least 15 characters")
    );

    let response = post_setup(
        &app,
        &browser,
        &[
            ("token", &token),
            ("csrf", &csrf),
            ("username", "root"),
            ("password", PASSWORD),
            ("confirm_password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(
        location(&response),
        "/login?next=%2Fadmin&notice=setup_done"
    );
    let page = app
        .get(&browser, "/login?next=%2Fadmin&notice=setup_done")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("The administrator account was created."));
    let response = app.post_login(&browser, "root", PASSWORD, "/admin").await;
    assert_eq!(app.landing(&browser, response).await, "/admin");
    assert_eq!(app.get(&browser, "/admin").await.status(), StatusCode::OK);

    // Single use, and gone for good once a user exists.
    assert_eq!(
        setup_form(&app, &browser, &token).await.0,
        StatusCode::NOT_FOUND
    );
    let response = post_setup(
        &app,
        &browser,
        &[
            ("token", &token),
            ("csrf", &csrf),
            ("username", "evil"),
            ("password", PASSWORD),
            ("confirm_password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(setup::issue_token(&app.pool).await.expect("token"), None);
    assert_eq!(app.count("SELECT count(*) FROM users").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM setup_tokens").await, 0);
    let rows = app
        .audit("event = 'user_created' AND username = 'setup'", 1)
        .await;
    assert_eq!(rows[0].target.as_deref(), Some("root"));
}

#[tokio::test]
async fn two_browsers_racing_with_the_setup_link_create_one_admin() {
    let app = TestApp::spawn().await;
    let token = setup::issue_token(&app.pool)
        .await
        .expect("token")
        .expect("no users yet");
    let (a, b) = (app.client(), app.client());
    let csrf_a = hidden_field(&setup_form(&app, &a, &token).await.1, "csrf").expect("csrf");
    let csrf_b = hidden_field(&setup_form(&app, &b, &token).await.1, "csrf").expect("csrf");
    let fields_a = [
        ("token", token.as_str()),
        ("csrf", &csrf_a),
        ("username", "first"),
        ("password", PASSWORD),
        ("confirm_password", PASSWORD),
    ];
    let fields_b = [
        ("token", token.as_str()),
        ("csrf", &csrf_b),
        ("username", "second"),
        ("password", PASSWORD),
        ("confirm_password", PASSWORD),
    ];
    let (ra, rb) = tokio::join!(
        post_setup(&app, &a, &fields_a),
        post_setup(&app, &b, &fields_b)
    );
    let statuses = [ra.status(), rb.status()];
    assert!(
        statuses.contains(&StatusCode::SEE_OTHER) && statuses.contains(&StatusCode::NOT_FOUND),
        "{statuses:?}"
    );
    assert_eq!(app.count("SELECT count(*) FROM users").await, 1);
}

#[tokio::test]
async fn request_access_from_the_403_page_through_grant() {
    let app = TestApp::spawn().await;
    let member = app.user_client("mara", Role::Member).await;
    let page = app
        .get(&member, "/reports")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("Request access") && page.contains(r#"name="path" value="/reports""#),
        "{page}"
    );
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    for _ in 0..3 {
        let response = app
            .post_form_with_csrf(
                &member,
                "/access-requests",
                &[
                    ("role", "editor"),
                    ("path", "/reports"),
                    ("message", "I review the monthly reports."),
                ],
                &csrf,
            )
            .await;
        assert_eq!(location(&response), "/reports");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM access_requests").await,
        1,
        "repeated clicks do not pile up"
    );
    let page = app
        .get(&member, "/reports")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("You asked for the editor role") && !page.contains(">Request access<"),
        "{page}"
    );

    let admin = app.user_client("boss", Role::Admin).await;
    let page = app.get(&admin, "/admin").await.text().await.expect("body");
    assert!(
        page.contains(r#"<span class="count">1<"#),
        "the navigation counts pending requests: {page}"
    );
    let page = app
        .get(&admin, "/admin/requests")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("mara") && page.contains("I review the monthly reports."),
        "{page}"
    );
    let id: i64 = sqlx::query_scalar("SELECT id FROM access_requests")
        .fetch_one(&app.pool)
        .await
        .expect("id");
    let response = app
        .post_form(&admin, &format!("/admin/requests/{id}/grant"), &[])
        .await;
    assert_eq!(location(&response), "/admin/requests?done=granted");
    assert_eq!(
        app.get(&member, "/reports").await.status(),
        StatusCode::OK,
        "effective on the next request"
    );
    let page = app
        .get(&member, "/account")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("Your access requests") && page.contains("granted"),
        "{page}"
    );
    for event in ["access_requested", "access_granted"] {
        app.audit(&format!("event = '{event}'"), 1).await;
    }
}

#[tokio::test]
async fn a_declined_request_says_why_and_can_be_made_again() {
    let app = TestApp::spawn().await;
    let editor = app.user_client("eli", Role::Editor).await;
    let admin = app.user_client("boss", Role::Admin).await;
    app.post_form(
        &editor,
        "/access-requests",
        &[("role", "admin"), ("path", "/admin")],
    )
    .await;
    let id: i64 = sqlx::query_scalar("SELECT id FROM access_requests")
        .fetch_one(&app.pool)
        .await
        .expect("id");
    let response = app
        .post_form(
            &admin,
            &format!("/admin/requests/{id}/decline"),
            &[("note", "")],
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "a reason is required"
    );
    let page = response.text().await.expect("body");
    assert!(
        page.contains("Say why you decline") && page.contains("Grant admin"),
        "the requests page again, saying what is missing: {page}"
    );
    assert!(
        page.contains(&format!(r#"aria-describedby="note-error-{id}""#)),
        "the problem is tied to that request's field: {page}"
    );
    let response = app
        .post_form(
            &admin,
            &format!("/admin/requests/{id}/decline"),
            &[("note", "Admins are the IT team only.")],
        )
        .await;
    assert_eq!(location(&response), "/admin/requests?done=declined");
    let page = app.get(&editor, "/admin").await.text().await.expect("body");
    assert!(
        page.contains("was declined") && page.contains("Admins are the IT team only."),
        "{page}"
    );
    assert!(
        page.contains(">Request access<"),
        "asking again is possible: {page}"
    );
    let page = app
        .get(&editor, "/account")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("declined") && page.contains("Admins are the IT team only."),
        "{page}"
    );
    app.audit("event = 'access_declined'", 1).await;
    // Programs get the way to ask in the 403 JSON.
    let json: serde_json::Value = app
        .get_json(&editor, "/admin")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(json["request_access"], "/access-requests");
}

#[tokio::test]
async fn blocked_cookies_are_diagnosed_instead_of_looping() {
    let app = TestApp::spawn().await;
    app.create_user("crumb", Role::Member).await;
    // A browser that keeps no cookies: the form's token arrives, its cookie does not.
    let no_cookies = app.bare_client();
    let page = app
        .get(&no_cookies, "/login")
        .await
        .text()
        .await
        .expect("body");
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let response = no_cookies
        .post(app.url("/login"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .form(&[
            ("username", "crumb"),
            ("password", PASSWORD),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = response.text().await.expect("body");
    assert!(
        body.contains("Signing in needs cookies") && body.contains("Allow cookies for this site"),
        "{body}"
    );
    app.counted("status = 403 AND reason = 'cookies_blocked'", 1)
        .await;

    // The session cookie not coming back after a good sign-in.
    let response = app
        .get(&no_cookies, "/login/complete?next=%2Faccount")
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("did not send back the session cookie")
    );
    app.counted("reason = 'session_cookie_not_returned'", 1)
        .await;
}

#[tokio::test]
async fn secure_cookies_over_plain_http_are_diagnosed_as_the_operators_problem() {
    let app = TestApp::spawn_with(|s| s.secure_cookies = true).await;
    app.create_user("crumb", Role::Member).await;
    // Browsers keep Secure cookies away from plain-HTTP sites (loopback aside, which test
    // clients and Chromium treat as secure): this browser sends none back.
    let browser = app.bare_client();
    let page = app.get(&browser, "/login").await;
    let set_cookie = page
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        set_cookie.starts_with("__Host-portcullis_csrf=") && set_cookie.contains("Secure"),
        "{set_cookie}"
    );
    let csrf = hidden_field(&page.text().await.expect("body"), "csrf").expect("csrf");
    let response = browser
        .post(app.url("/login"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .form(&[
            ("username", "crumb"),
            ("password", PASSWORD),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = response.text().await.expect("body");
    assert!(
        body.contains("set up for HTTPS only") && body.contains("--secure-cookies"),
        "{body}"
    );
    app.counted("reason = 'secure_cookie_over_http'", 1).await;

    // Through a trusted proxy that says HTTPS, the same request is not misdiagnosed.
    let proxied = TestApp::spawn_with(|s| {
        s.secure_cookies = true;
        s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    })
    .await;
    let response = proxied
        .bare_client()
        .post(proxied.url("/login"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .header("x-forwarded-proto", "https")
        .form(&[
            ("username", "crumb"),
            ("password", PASSWORD),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .expect("POST");
    let body = response.text().await.expect("body");
    assert!(
        body.contains("Allow cookies for this site") && !body.contains("set up for HTTPS only"),
        "{body}"
    );
}

#[tokio::test]
async fn private_pages_are_noindex_and_robots_txt_keeps_crawlers_out() {
    let app = TestApp::spawn_with(|s| s.support_contact = Some("it-help@example.com".into())).await;
    let member = app.user_client("robo", Role::Member).await;
    let anonymous = app.client();
    for (client, path, status) in [
        (&anonymous, "/login", StatusCode::OK),
        (&anonymous, "/account", StatusCode::SEE_OTHER),
        (&member, "/admin", StatusCode::FORBIDDEN),
        (&anonymous, "/help/access", StatusCode::OK),
        (&anonymous, "/setup", StatusCode::NOT_FOUND),
    ] {
        let response = app.get(client, path).await;
        assert_eq!(response.status(), status, "{path}");
        let tag = response
            .headers()
            .get("x-robots-tag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(tag.contains("noindex"), "{path}: {tag:?}");
    }
    let response = app.get(&anonymous, "/").await;
    assert!(
        response.headers().get("x-robots-tag").is_none(),
        "the home page may be indexed"
    );
    let robots = app
        .get(&anonymous, "/robots.txt")
        .await
        .text()
        .await
        .expect("body");
    for path in ["/account", "/admin", "/reports", "/api/"] {
        assert!(robots.contains(&format!("Disallow: {path}")), "{robots}");
    }
    // The help page explains, for people and operators, with the configured contact.
    let help = app
        .get(&anonymous, "/help/access")
        .await
        .text()
        .await
        .expect("body");
    for text in [
        "Caps Lock",
        "clear this site's cookies",
        "Signing in again will not help",
        "mailto:it-help@example.com",
        "401/403 dashboard",
        "request id",
    ] {
        assert!(help.contains(text), "help lacks {text:?}");
    }
    // Every 401 notice and the 403 page link to it.
    let page = app
        .get(&anonymous, "/login?notice=expired")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains(r#"href="/help/access""#));
    let page = app.get(&member, "/admin").await.text().await.expect("body");
    assert!(page.contains(r#"href="/help/access#access""#));
}

/// A setup link works for an hour, and only the newest one does: links printed by earlier
/// starts (and copied into journals and proxy logs) stop working, and they do not pile up.
#[tokio::test]
async fn only_the_newest_setup_link_works_and_only_for_an_hour() {
    let app = TestApp::spawn().await;
    let issue = || async {
        setup::issue_token(&app.pool)
            .await
            .expect("issue")
            .expect("no user yet")
    };
    let old = issue().await;
    let new = issue().await;
    assert_eq!(app.count("SELECT count(*) FROM setup_tokens").await, 1);
    let browser = app.client();
    assert_eq!(
        setup_form(&app, &browser, &old).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, page) = setup_form(&app, &browser, &new).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("It works for an hour"), "{page}");
    sqlx::query("UPDATE setup_tokens SET created_at = now() - interval '61 minutes'")
        .execute(&app.pool)
        .await
        .expect("age the link");
    assert_eq!(
        setup_form(&app, &browser, &new).await.0,
        StatusCode::NOT_FOUND
    );
}
