//! One-time links (invitations, password resets): issued by an administrator or the command
//! line, used once to choose a password, then sign-in as usual.

use std::sync::Arc;

use portcullis::{accounts::admin, audit::Actor, auth::Role};
use reqwest::StatusCode;

use crate::support::*;

const NEW_PASSWORD: &str = "a password of my very own";

/// The link shown on the admin's link page (`<input id="link" … value="…">`).
pub fn link_in(page: &str) -> String {
    let marker = "id=\"link\" type=\"text\" value=\"";
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("no link in the page: {page}"))
        + marker.len();
    let end = page[start..].find('"').expect("end of the link") + start;
    page[start..end]
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&#x3d;", "=")
        .replace("&#61;", "=")
        .replace("&amp;", "&")
}

/// `link`'s path and query, to request from the test app (links name `localhost`, tests
/// talk to 127.0.0.1).
pub fn path_of(link: &str) -> String {
    let url = url::Url::parse(link).unwrap_or_else(|e| panic!("{link}: {e}"));
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}

/// Opens `link` in `browser` (token to cookie, redirect) and returns the form page's CSRF
/// token, asserting the page is the "choose your password" form.
pub async fn open_link(app: &TestApp, browser: &Browser, link: &str) -> String {
    let response = app.get(browser, &path_of(link)).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "{}",
        describe(response).await
    );
    assert_eq!(
        location(&response),
        "/password/new",
        "the token leaves the URL"
    );
    assert_eq!(header(&response, "referrer-policy"), "no-referrer");
    let response = app.get(browser, "/password/new").await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        describe(response).await
    );
    assert_eq!(header(&response, "referrer-policy"), "no-referrer");
    assert_eq!(header(&response, "cache-control"), "no-store");
    let page = response.text().await.expect("body");
    assert!(page.contains("Choose your password"), "{page}");
    hidden_field(&page, "csrf").expect("csrf field")
}

/// Sends the "choose your password" form.
pub async fn choose(
    app: &TestApp,
    browser: &Browser,
    csrf: &str,
    password: &str,
    again: &str,
) -> reqwest::Response {
    browser
        .post(app.url("/password/new"))
        .header(reqwest::header::ACCEPT, BROWSER_ACCEPT)
        .form(&[
            ("csrf", csrf),
            ("password", password),
            ("confirm_password", again),
        ])
        .send()
        .await
        .expect("POST /password/new")
}

/// Opens `link` in a new browser and chooses `password`; asserts it worked (a 303 to the
/// sign-in page with its notice).
pub async fn use_link(app: &TestApp, link: &str, password: &str) {
    let browser = app.client();
    let csrf = open_link(app, &browser, link).await;
    let response = choose(app, &browser, &csrf, password, password).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "{}",
        describe(response).await
    );
    assert_eq!(location(&response), "/login?notice=password_set");
}

/// An administrator invites `name` through the admin page; returns the link shown.
pub async fn invite(app: &TestApp, admin: &Browser, name: &str, role: &str) -> String {
    let response = app
        .post_form(admin, "/admin/users", &[("username", name), ("role", role)])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "cache-control"), "no-store");
    link_in(&response.text().await.expect("body"))
}

/// An administrator makes a password link for `name` on the user page; returns it.
pub async fn reset_link(app: &TestApp, admin: &Browser, name: &str) -> String {
    let id = app.user_id(name).await;
    let response = app
        .post_form(admin, &format!("/admin/users/{id}/password-link"), &[])
        .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        describe(response).await
    );
    let page = response.text().await.expect("body");
    assert!(page.contains("Password link for"), "{page}");
    link_in(&page)
}

/// The page a link that does not work gets: its status and text.
async fn refused(app: &TestApp, link: &str) -> (StatusCode, String) {
    let response = app.get(&app.client(), &path_of(link)).await;
    let status = response.status();
    assert_eq!(header(&response, "referrer-policy"), "no-referrer");
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn an_invitation_lets_the_person_choose_a_password_then_sign_in() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    let link = invite(&app, &admin, "Nora", "editor").await;
    assert!(
        link.starts_with(&format!(
            "http://localhost:{}/password/new?token=",
            app.addr.port()
        )),
        "{link}"
    );
    let token = link.rsplit('=').next().expect("token");
    assert_eq!(token.len(), 43, "32 random bytes, URL-safe");
    assert_eq!(
        app.count("SELECT count(*) FROM password_links WHERE purpose = 'invite'")
            .await,
        1
    );

    // Invited, not yet able to sign in: listed as such, and the sign-in fails as for a
    // wrong password (the same message, whatever the password).
    let list = app.get(&admin, "/admin").await.text().await.expect("body");
    assert!(list.contains("invited (link not used yet)"), "{list}");
    for attempt in [PASSWORD, NEW_PASSWORD, "x"] {
        let response = app.post_login(&app.client(), "nora", attempt, "").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{attempt:?}");
        let page = response.text().await.expect("body");
        assert!(page.contains("Invalid username or password."), "{page}");
    }

    // The person opens the link and chooses; they are not signed in by it.
    let browser = app.client();
    let csrf = open_link(&app, &browser, &link).await;
    let response = choose(&app, &browser, &csrf, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(location(&response), "/login?notice=password_set");
    assert!(
        app.session_cookie(response.headers()).is_none(),
        "choosing a password does not sign in"
    );
    let page = app
        .get(&browser, "/login?notice=password_set")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("Your password is set. Sign in with it."),
        "{page}"
    );
    let response = app.post_login(&browser, "nora", NEW_PASSWORD, "").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.get(&browser, "/reports").await.status(), StatusCode::OK);

    let list = app.get(&admin, "/admin").await.text().await.expect("body");
    assert!(!list.contains("invited (link not used yet)"), "{list}");
    let issued = app
        .audit("event = 'password_link_issued' AND target = 'Nora'", 1)
        .await;
    assert_eq!(issued[0].username.as_deref(), Some("root"));
    assert_eq!(issued[0].reason.as_deref(), Some("invite"));
    app.audit(
        "event = 'password_link_used' AND username = 'Nora' AND reason = 'invite'",
        1,
    )
    .await;
    app.audit(
        "event = 'user_created' AND username = 'root' AND target = 'Nora'",
        1,
    )
    .await;
}

#[tokio::test]
async fn a_used_link_gets_410_saying_what_to_do() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    let link = invite(&app, &admin, "ulla", "member").await;
    use_link(&app, &link, NEW_PASSWORD).await;
    let (status, page) = refused(&app, &link).await;
    assert_eq!(status, StatusCode::GONE, "{page}");
    assert!(
        page.contains("already been used") && page.contains("ask an administrator for a new link"),
        "{page}"
    );
    // The password chosen stays; the second use changed nothing.
    app.post_login(&app.client(), "ulla", NEW_PASSWORD, "")
        .await;
}

#[tokio::test]
async fn an_expired_link_gets_410() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    let link = invite(&app, &admin, "eli", "member").await;
    // A browser that opened it in time and sends the form after it expired is refused too.
    let late = app.client();
    let csrf = open_link(&app, &late, &link).await;
    sqlx::query("UPDATE password_links SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .expect("expire");
    let (status, page) = refused(&app, &link).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(
        page.contains("expired") && page.contains("new link"),
        "{page}"
    );
    let response = choose(&app, &late, &csrf, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::GONE);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM users WHERE password_hash IS NOT NULL AND username = 'eli'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_newer_link_voids_the_older_one() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    app.create_user("vera", Role::Member).await;
    let first = reset_link(&app, &admin, "vera").await;
    let second = reset_link(&app, &admin, "vera").await;
    assert_ne!(first, second);
    let (status, page) = refused(&app, &first).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(page.contains("replaced by a newer one"), "{page}");
    use_link(&app, &second, NEW_PASSWORD).await;
    app.audit(
        "event = 'password_link_voided' AND username = 'root' AND target = 'vera'",
        1,
    )
    .await;
}

#[tokio::test]
async fn an_unknown_token_or_no_token_gets_a_page_not_a_bare_404() {
    let app = TestApp::spawn().await;
    for path in [
        "/password/new?token=nonsense",
        "/password/new?token=",
        "/password/new",
    ] {
        let response = app.get(&app.client(), path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let page = response.text().await.expect("body");
        assert!(
            page.contains("This link does not work") && page.contains("new link"),
            "{path}: {page}"
        );
    }
}

#[tokio::test]
async fn using_a_reset_link_signs_out_everywhere_and_lifts_sign_in_blocks() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    let rita = app.user_client("rita", Role::Member).await;
    let link = reset_link(&app, &admin, "rita").await;
    // Nothing changes until the link is used.
    assert_eq!(app.get(&rita, "/account").await.status(), StatusCode::OK);
    for _ in 0..5 {
        app.post_login(&app.client(), "rita", "wrong guess!", "")
            .await;
    }
    let blocked = app.post_login(&app.client(), "rita", PASSWORD, "").await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);

    use_link(&app, &link, NEW_PASSWORD).await;
    assert_login_redirect(
        app.get(&rita, "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;
    let old = app.post_login(&app.client(), "rita", PASSWORD, "").await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    let new = app
        .post_login(&app.client(), "rita", NEW_PASSWORD, "")
        .await;
    assert_eq!(new.status(), StatusCode::SEE_OTHER, "the block is lifted");
    app.audit(
        "event = 'password_link_used' AND username = 'rita' AND reason = 'reset' \
         AND detail->>'sessions_revoked' = '1'",
        1,
    )
    .await;
}

#[tokio::test]
async fn a_password_the_policy_refuses_keeps_the_link_usable() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    let link = invite(&app, &admin, "pia", "member").await;
    let browser = app.client();
    let csrf = open_link(&app, &browser, &link).await;
    for (password, again, says) in [
        ("short", "short", "at least 15 characters"),
        ("pia pia pia pia pia", "pia pia pia pia pia", "name"),
        (
            NEW_PASSWORD,
            "something else entirely",
            "The two passwords differ.",
        ),
    ] {
        let response = choose(&app, &browser, &csrf, password, again).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{password}");
        let page = response.text().await.expect("body");
        assert!(page.contains(says), "{password}: {page}");
        assert!(page.contains("Choose your password"));
    }
    let response = choose(&app, &browser, &csrf, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(location(&response), "/login?notice=password_set");
    app.post_login(&app.client(), "pia", NEW_PASSWORD, "").await;
}

/// Two browsers send the form of one link at the same moment: exactly one sets its
/// password.
#[tokio::test]
async fn two_simultaneous_uses_of_a_link_give_exactly_one_success() {
    let app = Arc::new(TestApp::spawn().await);
    let admin = app.user_client("root", Role::Admin).await;
    let link = invite(&app, &admin, "twin", "member").await;
    let mut browsers = Vec::new();
    for _ in 0..2 {
        let browser = app.client();
        let csrf = open_link(&app, &browser, &link).await;
        browsers.push((browser, csrf));
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let mut tasks = Vec::new();
    for (n, (browser, csrf)) in browsers.into_iter().enumerate() {
        let (app, barrier) = (Arc::clone(&app), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            let password = format!("{NEW_PASSWORD} number {n}");
            barrier.wait().await;
            let response = choose(&app, &browser, &csrf, &password, &password).await;
            (response.status(), password)
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task"));
    }
    let won: Vec<&String> = outcomes
        .iter()
        .filter(|(status, _)| *status == StatusCode::SEE_OTHER)
        .map(|(_, password)| password)
        .collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|(status, _)| *status == StatusCode::GONE),
        "{outcomes:?}"
    );
    let response = app.post_login(&app.client(), "twin", won[0], "").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE event = 'password_link_used'")
            .await,
        1
    );
}

#[tokio::test]
async fn an_invited_user_has_no_password_anywhere() {
    let app = TestApp::spawn().await;
    admin::invite(
        &app.pool,
        &Actor::cli(),
        "quiet",
        Role::Member,
        time::Duration::hours(24),
    )
    .await
    .expect("invite");
    assert_eq!(
        app.count("SELECT count(*) FROM users WHERE username = 'quiet' AND password_hash IS NULL")
            .await,
        1
    );
    let admin = app.user_client("root", Role::Admin).await;
    let id = app.user_id("quiet").await;
    let page = app
        .get(&admin, &format!("/admin/users/{id}"))
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("invited (link not used yet)") && page.contains("New invitation link"),
        "{page}"
    );
    // A new link for an invited user is an invitation again.
    let response = app
        .post_form(&admin, &format!("/admin/users/{id}/password-link"), &[])
        .await;
    let page = response.text().await.expect("body");
    assert!(
        page.contains("Invitation link for quiet") && page.contains("A new invitation for quiet"),
        "{page}"
    );
    use_link(&app, &link_in(&page), NEW_PASSWORD).await;
}

#[tokio::test]
async fn the_cli_prints_working_invitation_and_reset_links() {
    let app = TestApp::spawn().await;
    let url = database_url(&app.db_name);
    let db = ["--database-url", url.as_str()];
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&db);
        cli(&all, "")
    };
    let last_line = |out: &str| out.lines().last().unwrap_or_default().trim().to_owned();

    let (ok, out, err) = run(&["user", "invite", "Cleo", "--role", "editor"]);
    assert!(ok && out.contains("invited Cleo (editor)"), "{out}{err}");
    let link = last_line(&out);
    assert!(
        link.starts_with("http://localhost:3000/password/new?token="),
        "the default bind address, as localhost: {out}"
    );
    use_link(&app, &link, NEW_PASSWORD).await;
    let cleo = app.client();
    app.post_login(&cleo, "cleo", NEW_PASSWORD, "").await;
    assert_eq!(app.get(&cleo, "/reports").await.status(), StatusCode::OK);

    let (ok, out, err) = run(&[
        "user",
        "reset-link",
        "cleo",
        "--public-url",
        "https://login.example.com",
    ]);
    assert!(ok, "{out}{err}");
    let link = last_line(&out);
    assert!(
        link.starts_with("https://login.example.com/password/new?token="),
        "{out}"
    );
    assert!(app.get(&cleo, "/account").await.status() == StatusCode::OK);
    use_link(&app, &link, "another password of mine").await;
    assert_login_redirect(
        app.get(&cleo, "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;

    let (ok, _, err) = run(&["user", "reset-link", "nobody"]);
    assert!(!ok && err.contains("no user named nobody"), "{err}");
    let (ok, _, err) = run(&["user", "invite", "cleo"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    // `create` is the operator's own first administrator, not a way to choose someone
    // else's password.
    let (ok, _, err) = run(&["user", "create", "dan"]);
    assert!(!ok && err.contains("user invite"), "{err}");
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event FROM audit_events WHERE username = 'cli' ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .expect("events");
    assert_eq!(
        events,
        [
            "user_created",
            "password_link_issued",
            "password_link_issued"
        ]
    );
}

/// The link page says `Referrer-Policy: no-referrer`, so browsers send `Origin: null` with
/// its form: accepted only when the browser also says the form is the site's own.
#[tokio::test]
async fn the_forms_origin_null_passes_only_from_the_same_origin() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    let link = invite(&app, &admin, "olga", "member").await;
    let browser = app.client();
    let csrf = open_link(&app, &browser, &link).await;
    let send = async |site: Option<&str>| {
        let mut request = browser
            .post(app.url("/password/new"))
            .header(reqwest::header::ACCEPT, BROWSER_ACCEPT)
            .header(reqwest::header::ORIGIN, "null");
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        request
            .form(&[
                ("csrf", csrf.as_str()),
                ("password", NEW_PASSWORD),
                ("confirm_password", NEW_PASSWORD),
            ])
            .send()
            .await
            .expect("POST")
    };
    for site in [None, Some("cross-site"), Some("same-site")] {
        let response = send(site).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{site:?}");
    }
    let response = send(Some("same-origin")).await;
    assert_eq!(location(&response), "/login?notice=password_set");
}

#[tokio::test]
async fn links_are_swept_a_month_after_they_stopped_working() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    let old = invite(&app, &admin, "old", "member").await;
    invite(&app, &admin, "recent", "member").await;
    sqlx::query(
        "UPDATE password_links SET expires_at = now() - interval '31 days' \
         WHERE user_id = (SELECT id FROM users WHERE username = 'old')",
    )
    .execute(&app.pool)
    .await
    .expect("age a link");
    let swept = portcullis::accounts::links::sweep(&app.pool)
        .await
        .expect("sweep");
    assert_eq!(swept, 1);
    assert_eq!(app.count("SELECT count(*) FROM password_links").await, 1);
    // A link swept is one the site no longer knows.
    let (status, _) = refused(&app, &old).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
