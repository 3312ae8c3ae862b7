//! Sign-in and sign-out: notices, session ids, redirects, CSRF and enumeration.

use portcullis::auth::Role;
use portcullis::{accounts, accounts::admin, audit::Actor};
use reqwest::{StatusCode, header::ACCEPT};

use crate::support::*;

#[tokio::test]
async fn each_notice_is_shown_on_the_sign_in_page() {
    let app = TestApp::spawn().await;
    let client = app.client();
    for (key, text) in [
        ("required", "Please sign in to continue."),
        ("expired", "Your session has expired, please sign in again."),
        ("signed_out", "You have been signed out."),
        ("revoked", "You were signed out of this session."),
    ] {
        let page = app
            .get(&client, &format!("/login?notice={key}"))
            .await
            .text()
            .await
            .expect("body");
        assert!(page.contains(text), "notice {key}: {page}");
        assert!(page.contains(FORGET_FRAME), "notice {key}: {page}");
    }
    // Unknown notices show nothing (the query string cannot inject text).
    for path in ["/login?notice=%3Cscript%3E", "/login"] {
        let page = app.get(&client, path).await.text().await.expect("body");
        assert!(
            !page.contains("<script>") && !page.contains("class=\"notice\""),
            "{page}"
        );
        assert!(!page.contains(FORGET_FRAME), "{path}: nothing to forget");
    }
    // The frame's answer: nothing to show, and "forget this site's pages" (the browser
    // suite checks what it does to the back button).
    let forget = app.get(&client, "/login/forget-pages").await;
    assert_eq!(forget.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&forget, "clear-site-data"), "\"cache\"");
    assert_eq!(header(&forget, "cache-control"), "no-store");
}

/// The hidden frame a sign-in page with a notice loads (see `FORGET_PAGES`).
const FORGET_FRAME: &str = "<iframe hidden src=\"/login/forget-pages\"";

#[tokio::test]
async fn signing_in_lands_on_next_or_the_account_page() {
    let app = TestApp::spawn().await;
    app.create_user("alice", Role::Editor).await;
    let client = app.client();
    let response = app
        .post_login(&client, "alice", PASSWORD, "/reports?tab=2")
        .await;
    assert_eq!(
        location(&response),
        "/login/complete?next=%2Freports%3Ftab%3D2"
    );
    assert_eq!(app.landing(&client, response).await, "/reports?tab=2");
    assert_eq!(
        app.get(&client, "/reports?tab=2").await.status(),
        StatusCode::OK
    );

    let other = app.client();
    let response = app.post_login(&other, "ALICE", PASSWORD, "").await;
    assert_eq!(
        app.landing(&other, response).await,
        "/account",
        "usernames are case-insensitive"
    );
}

#[tokio::test]
async fn the_sign_in_form_keeps_next_from_the_redirect() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let response = app.get(&client, "/reports?x=1").await;
    let target = location(&response);
    let page = app.get(&client, &target).await.text().await.expect("body");
    assert_eq!(hidden_field(&page, "next").as_deref(), Some("/reports?x=1"));
    assert!(page.contains("Please sign in to continue."));
}

#[tokio::test]
async fn open_redirects_are_refused() {
    let app = TestApp::spawn().await;
    app.create_user("olga", Role::Member).await;
    for evil in [
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "http:evil.example",
        "javascript:alert(1)",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "/%252F%252Fevil.example",
        "%2F%2Fevil.example",
        "\\\\evil.example",
        "/login",
    ] {
        let client = app.client();
        let response = app.post_login(&client, "olga", PASSWORD, evil).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{evil}");
        assert_eq!(
            app.landing(&client, response).await,
            "/account",
            "next={evil:?} must fall back"
        );
        // The landing step checks `next` again.
        let response = app
            .get(
                &client,
                &format!("/login/complete?next={}", urlencode(evil)),
            )
            .await;
        assert_eq!(location(&response), "/account", "{evil}");
        // Nor is it echoed into the form.
        let page = app
            .get(&app.client(), &format!("/login?next={}", urlencode(evil)))
            .await
            .text()
            .await
            .expect("body");
        assert_eq!(hidden_field(&page, "next").as_deref(), Some(""), "{evil}");
    }
}

#[tokio::test]
async fn sign_in_issues_a_new_session_id_and_kills_a_planted_one() {
    let app = TestApp::spawn().await;
    app.create_user("sam", Role::Member).await;
    app.create_user("eve", Role::Member).await;
    // An attacker who knows a valid id (their own session) plants it in the victim's browser.
    let attacker = app.client();
    app.login(&attacker, "eve").await;
    let eve_cookie = app.session_cookie_of(&attacker).await;

    let csrf_client = app.bare_client();
    let login_page = csrf_client
        .get(app.url("/login"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .send()
        .await
        .expect("GET");
    let csrf_cookie = app.csrf_cookie(login_page.headers()).expect("csrf cookie");
    let token = hidden_field(&login_page.text().await.expect("body"), "csrf").expect("token");
    let response = csrf_client
        .post(app.url("/login"))
        .header("cookie", format!("{csrf_cookie}; {eve_cookie}"))
        .form(&[
            ("username", "sam"),
            ("password", PASSWORD),
            ("next", ""),
            ("csrf", &token),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let sam_cookie = app
        .session_cookie(response.headers())
        .expect("a new session cookie");
    assert_ne!(
        sam_cookie, eve_cookie,
        "the pre-login id must not be reused"
    );
    // The planted id was replaced, not promoted: it no longer works at all.
    let with_old = csrf_client
        .get(app.url("/api/me"))
        .header("cookie", &eve_cookie)
        .send()
        .await
        .expect("GET");
    assert_api_401(with_old, "invalid_session").await;
    let me: serde_json::Value = csrf_client
        .get(app.url("/api/me"))
        .header("cookie", &sam_cookie)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(me["username"], "sam");
}

#[tokio::test]
async fn session_cookie_flags_are_strict() {
    let app = TestApp::spawn().await;
    app.create_user("flo", Role::Member).await;
    let response = app.post_login(&app.client(), "flo", PASSWORD, "").await;
    let set_cookie: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let session = set_cookie
        .iter()
        .find(|c| c.starts_with("portcullis_session="))
        .expect("session cookie");
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("SameSite=Lax"), "{session}");
    assert!(session.contains("Path=/"), "{session}");
    assert!(
        !session.contains("Secure"),
        "plain HTTP by default: {session}"
    );
    assert!(
        !session.to_lowercase().contains("max-age") && !session.to_lowercase().contains("expires"),
        "a browser-session cookie outlives the server-side deadline: {session}"
    );

    let secure = TestApp::spawn_with(|s| s.secure_cookies = true).await;
    secure.create_user("flo", Role::Member).await;
    let response = secure
        .post_login(&secure.client(), "flo", PASSWORD, "")
        .await;
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-portcullis_session="))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("__Host- cookie: {:?}", response.headers()));
    assert!(
        cookie.contains("Secure") && cookie.contains("Path=/") && !cookie.contains("Domain"),
        "{cookie}"
    );
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_some()
    );
}

#[tokio::test]
async fn sign_out_deletes_the_session_and_a_copied_cookie_is_dead() {
    let app = TestApp::spawn().await;
    let client = app.user_client("lou", Role::Member).await;
    let cookie = app.session_cookie_of(&client).await;
    let csrf = app.session_csrf(&client).await;
    let response = client
        .post(app.url("/logout"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("POST /logout");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/login?notice=signed_out");
    let cleared = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("portcullis_session=;") || c.contains("Max-Age=0"));
    assert!(cleared, "the cookie is cleared: {:?}", response.headers());
    assert_eq!(
        app.count("SELECT count(*) FROM sessions").await,
        0,
        "the row is deleted"
    );

    let page = app
        .get(&client, "/login?notice=signed_out")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("You have been signed out."));
    assert_login_redirect(
        app.get(&client, "/account").await,
        "required",
        Some("/account"),
    )
    .await;
    let replay = app
        .bare_client()
        .get(app.url("/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET");
    assert_api_401(replay, "invalid_session").await;
}

#[tokio::test]
async fn sign_out_without_a_live_session_just_lands_on_sign_in() {
    let app = TestApp::spawn().await;
    let response = app
        .client()
        .post(app.url("/logout"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .form(&[("csrf", "stale")])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/login?notice=signed_out");
}

#[tokio::test]
async fn csrf_missing_or_wrong_is_refused_with_the_form_expired_page() {
    let app = TestApp::spawn().await;
    app.create_user("cara", Role::Member).await;
    let client = app.client();
    let good = app.login_csrf(&client).await;
    for token in ["", "forged", &good[..good.len() - 2]] {
        let response = client
            .post(app.url("/login"))
            .header(ACCEPT, BROWSER_ACCEPT)
            .form(&[
                ("username", "cara"),
                ("password", PASSWORD),
                ("csrf", token),
            ])
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body = response.text().await.expect("body");
        assert!(body.contains("This form has expired"), "{body}");
    }
    // Without the cookie the token alone is useless (signed double submit).
    let response = app
        .bare_client()
        .post(app.url("/login"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .form(&[
            ("username", "cara"),
            ("password", PASSWORD),
            ("csrf", good.as_str()),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("SELECT count(*) FROM sessions").await, 0);

    // Signed in: sign-out with a wrong token is refused and the session survives.
    app.login(&client, "cara").await;
    let response = client
        .post(app.url("/logout"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("This form has expired")
    );
    assert_eq!(app.get(&client, "/account").await.status(), StatusCode::OK);
    // Another session's token does not work either.
    let other = app.client();
    app.login(&other, "cara").await;
    let foreign = app.session_csrf(&other).await;
    let response = client
        .post(app.url("/logout"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .form(&[("csrf", foreign.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn failed_sign_ins_are_indistinguishable() {
    let app = TestApp::spawn().await;
    app.create_user("known-user", Role::Member).await;
    app.create_user("dis-abled", Role::Member).await;
    let off = accounts::find(&app.pool, "dis-abled").await.expect("user");
    admin::disable(&app.pool, &Actor::cli(), off.id)
        .await
        .expect("disable");

    let mut seen = Vec::new();
    for (username, password) in [
        ("known-user", "wrong password!"),
        ("nobody-zzz", "wrong password!"),
        ("dis-abled", PASSWORD),
    ] {
        let client = app.client();
        let response = app
            .post_login(&client, username, password, "/reports")
            .await;
        let status = response.status();
        let mut header_names: Vec<String> = response
            .headers()
            .keys()
            .map(|k| k.as_str().to_owned())
            .filter(|k| k != "date" && k != "x-request-id")
            .collect();
        header_names.sort();
        let challenge = response.headers().get("www-authenticate").cloned();
        let body = response.text().await.expect("body");
        // Strip what legitimately differs per request: the CSRF token and the username typed.
        let token = hidden_field(&body, "csrf").expect("csrf");
        let normalized = body.replace(&token, "TOKEN").replace(username, "USER");
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{username}");
        assert!(challenge.is_some());
        assert!(body.contains("Invalid username or password."), "{body}");
        assert_eq!(
            hidden_field(&body, "next").as_deref(),
            Some("/reports"),
            "next is kept"
        );
        assert!(
            body.contains(&format!("value=\"{username}\"")),
            "the username is kept"
        );
        seen.push((status, header_names, normalized));
    }
    assert_eq!(seen[0], seen[1], "unknown user differs from wrong password");
    assert_eq!(
        seen[0], seen[2],
        "disabled account differs from wrong password"
    );
}

impl TestApp {
    /// The session cookie (`name=value`) a browser currently holds.
    pub async fn session_cookie_of(&self, browser: &Browser) -> String {
        browser
            .cookie(&self.url("/"), self.settings.session_cookie_name())
            .expect("the browser holds a session cookie")
    }

    pub fn csrf_cookie(&self, headers: &reqwest::header::HeaderMap) -> Option<String> {
        let name = self.settings.csrf_cookie_name();
        headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap_or_default().to_owned())
    }
}
