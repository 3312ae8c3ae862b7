//! Bad input gets a clear 4xx (page or JSON), never a 500, a panic or a hang.

use portcullis::auth::Role;
use reqwest::{StatusCode, header::ACCEPT};

use crate::support::*;

async fn post_login_raw(
    app: &TestApp,
    browser: &Browser,
    body: Vec<u8>,
    content_type: &str,
) -> reqwest::Response {
    browser
        .post(app.url("/login"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("POST")
}

fn form_body(csrf: &str, username: &[u8], password: &[u8]) -> Vec<u8> {
    let mut body = format!("csrf={}&username=", urlencode(csrf)).into_bytes();
    body.extend_from_slice(username);
    body.extend_from_slice(b"&password=");
    body.extend_from_slice(password);
    body
}

#[tokio::test]
async fn hostile_sign_in_forms_get_the_generic_failure_or_the_form_again_never_an_error() {
    let app = TestApp::spawn().await;
    app.create_user("victim", Role::Member).await;
    let browser = app.client();
    let csrf = app.login_csrf(&browser).await;
    let form = "application/x-www-form-urlencoded";
    // Text a username or password may hold: tried, and failed like any wrong password.
    for (username, password) in [
        (&b"victim"[..], &b"%27%20OR%201%3D1%20--"[..]),
        (b"%27%20OR%20%271%27%3D%271", b"x"),
        (b"%E2%80%AEmitciv", b"whatever"),
    ] {
        let response =
            post_login_raw(&app, &browser, form_body(&csrf, username, password), form).await;
        let status = response.status();
        let body = response.text().await.expect("body");
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{username:?}/{password:?}: {body}"
        );
        assert!(body.contains("Invalid username or password."), "{body}");
    }
    // Text none can hold (NUL, control characters, line breaks, bytes that are not UTF-8):
    // the form again with a 400, nothing tried, nothing echoed.
    for (username, password) in [
        (&b"victim%00"[..], &b"password"[..]),
        (b"vic%00tim", b"pass%00word"),
        (b"%FF%FE%FD", b"%C3%28"),
        (b"victim", b"%FF%FF%FF%FF"),
        (b"victim", b"pass%1Bword"),
        (b"a%0D%0ASet-Cookie%3A%20x%3D1", b"whatever"),
    ] {
        let response =
            post_login_raw(&app, &browser, form_body(&csrf, username, password), form).await;
        let status = response.status();
        let body = response.text().await.expect("body");
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{username:?}/{password:?}: {body}"
        );
        assert!(
            body.contains("<h1>Sign in</h1>") && body.contains("no username or password contains"),
            "{body}"
        );
        assert!(
            !body.contains("victim") && !body.contains("Set-Cookie"),
            "{body}"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM sessions").await, 0);
    app.audit("event = 'sign_in_failed'", 3).await;
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE event = 'sign_in_failed'")
            .await,
        3,
        "refused forms are not sign-in attempts"
    );
}

#[tokio::test]
async fn empty_and_missing_fields_ask_for_both() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    let csrf = app.login_csrf(&browser).await;
    for body in [
        format!("csrf={}&username=&password=", urlencode(&csrf)),
        format!("csrf={}&username=bob", urlencode(&csrf)),
        format!("csrf={}&password=x", urlencode(&csrf)),
        format!("csrf={}&username=%20%20&password=x", urlencode(&csrf)),
    ] {
        let response = post_login_raw(
            &app,
            &browser,
            body.into_bytes(),
            "application/x-www-form-urlencoded",
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(
            response
                .text()
                .await
                .expect("body")
                .contains("Enter both your username and your password.")
        );
    }
}

#[tokio::test]
async fn over_long_passwords_are_refused_before_hashing() {
    let app = TestApp::spawn().await;
    app.create_user("long", Role::Member).await;
    let browser = app.client();
    let csrf = app.login_csrf(&browser).await;
    // Over the policy (512 bytes) but within the input rules: the generic failure, fast.
    let password = "p".repeat(2000);
    let started = std::time::Instant::now();
    let response = post_login_raw(
        &app,
        &browser,
        form_body(&csrf, b"long", password.as_bytes()),
        "application/x-www-form-urlencoded",
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let (hashes, _) = app.hasher.stats();
    // Only the user's creation and the start-up dummy hash ran (the latter outside stats).
    assert_eq!(hashes, 1, "the long password was hashed");

    // Over the input rules' 2,048 characters: the form again, before anything is tried.
    let response = post_login_raw(
        &app,
        &browser,
        form_body(&csrf, b"long", "p".repeat(4096).as_bytes()),
        "application/x-www-form-urlencoded",
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = response.text().await.expect("body");
    assert!(body.contains("far too many characters"), "{body}");
    assert_eq!(app.hasher.stats().0, 1, "the over-long password was hashed");

    // 10 MB: the body limit answers 413 with a page, before anything is read in full.
    let huge = vec![b'p'; 10 * 1024 * 1024];
    let response = post_login_raw(
        &app,
        &browser,
        form_body(&csrf, b"long", &huge),
        "application/x-www-form-urlencoded",
    )
    .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = response.text().await.expect("body");
    assert!(body.contains("Request too large"), "{body}");
}

#[tokio::test]
async fn malformed_requests_get_friendly_pages_or_json() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    let csrf = app.login_csrf(&browser).await;
    let cases: Vec<(Vec<u8>, &str, StatusCode)> = vec![
        // Duplicated fields.
        (
            format!("csrf={}&username=a&username=b&password=x", urlencode(&csrf)).into_bytes(),
            "application/x-www-form-urlencoded",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        // Wrong content type.
        (
            br#"{"username":"a","password":"b"}"#.to_vec(),
            "application/json",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            b"username=a".to_vec(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (body, content_type, expected) in cases {
        let response = post_login_raw(&app, &browser, body, content_type).await;
        let status = response.status();
        let content = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.expect("body");
        assert_eq!(status, expected, "{content_type}: {text}");
        assert!(content.starts_with("text/html"), "{content}");
        assert!(
            text.contains("<h1>") && !text.contains("Failed to deserialize"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_pages_for_people_and_json_for_programs() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    let response = app.get(&browser, "/no/such/page").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body = response.text().await.expect("body");
    assert!(
        body.contains("Page not found") && body.contains("request id"),
        "{body}"
    );
    // Error pages do not look the session up, so their header names nobody and offers no
    // "Sign in" button, which would confuse a person who is signed in.
    assert!(!body.contains(r#"href="/login""#), "{body}");

    let response = app.get_json(&browser, "/no/such/page").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let json: serde_json::Value = response.json().await.expect("json");
    assert_eq!(json["error"], "not_found");
    assert!(json["request_id"].is_string());

    let response = app.get(&browser, "/logout").await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(response.headers().get("allow").is_some());
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("Method not allowed")
    );

    let response = browser
        .delete(app.url("/login"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn every_response_carries_the_request_id_and_security_headers() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    for path in ["/", "/login", "/account", "/nope", "/healthz"] {
        let response = app.get(&browser, path).await;
        let headers = response.headers();
        let id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(id.len(), 16, "{path}: request id {id:?}");
        for name in [
            "content-security-policy",
            "x-content-type-options",
            "x-frame-options",
            "referrer-policy",
        ] {
            assert!(headers.contains_key(name), "{path} lacks {name}");
        }
    }
    // A client-supplied request id is not trusted.
    let response = browser
        .get(app.url("/"))
        .header("x-request-id", "forged-id")
        .send()
        .await
        .expect("GET");
    assert_ne!(
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("forged-id")
    );
}

#[tokio::test]
async fn static_files_are_cacheable_and_private_pages_are_not() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    let page = app.get(&browser, "/").await.text().await.expect("body");
    let start = page.find("/static/app.css?v=").expect("stylesheet link");
    let href = &page[start..page[start..].find('"').map(|e| e + start).expect("end")];
    let css = app.get(&browser, href).await;
    assert_eq!(css.status(), StatusCode::OK);
    let cache = header(&css, "cache-control");
    assert!(
        cache.contains("max-age=31536000") && cache.contains("immutable"),
        "{cache}"
    );
    // Another build's hash (a rolling upgrade asked the wrong instance): not kept.
    let other = app.get(&browser, "/static/app.css?v=0123456789ab").await;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(other.headers()["cache-control"], "no-cache");
    assert!(header(&css, "content-type").starts_with("text/css"));

    let client = app.user_client("cache", Role::Member).await;
    for path in ["/", "/account", "/api/me"] {
        let response = app.get(&client, path).await;
        assert_eq!(header(&response, "cache-control"), "no-store", "{path}");
    }
    // Path traversal out of the static directory is a 404, not a file.
    let response = app.get(&browser, "/static/../Cargo.toml").await;
    assert!(
        response.status() == StatusCode::NOT_FOUND || response.status() == StatusCode::BAD_REQUEST
    );
}

/// The scan's samples: NUL bytes and invalid UTF-8 in the admin search and every audit
/// filter were 500s (PostgreSQL refuses NUL in text).
#[tokio::test]
async fn bad_bytes_in_queries_get_a_400_page_naming_the_field() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    for (path, field, back) in [
        ("/admin?q=%2Fetc%2Fpasswd%00", "q", "/admin"),
        ("/admin?q=%FF", "q", "/admin"),
        ("/admin/audit?event=a%00", "event", "/admin/audit"),
        ("/admin/audit?reason=a%00", "reason", "/admin/audit"),
        ("/admin/audit?username=a%00", "username", "/admin/audit"),
        ("/admin/audit?ip=%00", "ip", "/admin/audit"),
        ("/admin/audit?path=%2F%00", "path", "/admin/audit"),
        ("/admin/audit?status=%FF", "status", "/admin/audit"),
        ("/admin/audit?window=1h%0A", "window", "/admin/audit"),
        ("/admin/audit.csv?event=a%00", "event", "/admin/audit.csv"),
        ("/admin/denials?window=%01", "window", "/admin/denials"),
        ("/login?next=%FF", "next", "/login"),
    ] {
        let response = app.get(&admin, path).await;
        let status = response.status();
        let body = response.text().await.expect("body");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(
            body.contains(&format!("The field “{field}”"))
                && body.contains(&format!(r#"href="{back}">Go back"#))
                && body.contains("request id"),
            "{path}: {body}"
        );
    }
    // Programs get JSON naming the field.
    let response = app.get_json(&admin, "/admin/audit?ip=%00").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let json: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        (json["error"].as_str(), json["field"].as_str()),
        (Some("bad_request"), Some("ip"))
    );
    // Plain values still work, and multi-line text is allowed where a field is multi-line.
    assert_eq!(
        app.get(&admin, "/admin?q=%2Fetc%2Fpasswd").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn bad_bytes_in_forms_get_a_400_page_and_change_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    let response = app
        .post_form(
            &admin,
            "/admin/throttles/clear",
            &[("scope", "account"), ("key", "root\0")],
        )
        .await;
    let status = response.status();
    let body = response.text().await.expect("body");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("The field “key” contains a control character"),
        "{body}"
    );
    let response = app
        .post_form(
            &admin,
            "/admin/users",
            &[("username", "new\nline"), ("role", "member")],
        )
        .await;
    let status = response.status();
    let body = response.text().await.expect("body");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("The field “username” contains a line break"),
        "{body}"
    );
    assert_eq!(app.count("SELECT count(*) FROM users").await, 1);

    // A multi-line field keeps its line breaks; a control character is still refused.
    let member = app.user_client("mia", Role::Member).await;
    let ask = |message: &'static str| {
        let (app, member) = (&app, &member);
        async move {
            app.post_form(
                member,
                "/access-requests",
                &[
                    ("role", "editor"),
                    ("path", "/reports"),
                    ("message", message),
                ],
            )
            .await
        }
    };
    assert_eq!(ask("bell\u{7}").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        ask("line one\r\nline two").await.status(),
        StatusCode::SEE_OTHER
    );
    let message: String = sqlx::query_scalar("SELECT message FROM access_requests")
        .fetch_one(&app.pool)
        .await
        .expect("request");
    assert_eq!(message, "line one\nline two");
}
