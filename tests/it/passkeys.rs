//! Passkeys over HTTP, with a software authenticator (`support::SoftPasskey`) answering
//! the server's own options, so webauthn-rs checks every ceremony for real: registration,
//! signing in with a passkey alone, as the second step, re-authentication, and refusals.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use portcullis::{auth::Role, config::RequireMfa};
use reqwest::{
    StatusCode,
    header::{ACCEPT, COOKIE},
};
use serde_json::Value;

use crate::support::*;

fn origin(app: &TestApp) -> String {
    app.settings.relying_party.origin.as_str().to_owned()
}

/// POSTs `csrf` to an options endpoint as `static/passkeys.js` does; the response.
async fn ask(app: &TestApp, client: &Browser, path: &str, csrf: &str) -> reqwest::Response {
    client
        .post(app.url(path))
        .header(ACCEPT, "application/json")
        .form(&[("csrf", csrf)])
        .send()
        .await
        .expect("POST options")
}

async fn options(app: &TestApp, client: &Browser, path: &str, csrf: &str) -> Value {
    let response = ask(app, client, path, csrf).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.expect("options JSON")
}

/// Registers a passkey named `name` for the signed-in `client`.
async fn register(app: &TestApp, client: &Browser, name: &str) -> SoftPasskey {
    let csrf = app.session_csrf(client).await;
    let options = options(app, client, "/account/passkeys/options", &csrf).await;
    let (passkey, answer) = SoftPasskey::register(&options, &origin(app));
    let response = app
        .post_form_with_csrf(
            client,
            "/account/passkeys",
            &[("name", name), ("credential", &answer)],
            &csrf,
        )
        .await;
    assert_eq!(
        location(&response),
        "/account/passkeys?done=added",
        "{}",
        describe(response).await
    );
    passkey
}

/// Signs in with `passkey` alone from the sign-in page; the response to the answer.
async fn passkey_sign_in(
    app: &TestApp,
    client: &Browser,
    passkey: &mut SoftPasskey,
) -> reqwest::Response {
    let csrf = app.login_csrf(client).await;
    let options = options(app, client, "/login/passkey/options", &csrf).await;
    let answer = passkey.assert(&options, &origin(app));
    client
        .post(app.url("/login/passkey"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .form(&[
            ("csrf", csrf.as_str()),
            ("next", ""),
            ("credential", &answer),
        ])
        .send()
        .await
        .expect("POST /login/passkey")
}

async fn auth_method(app: &TestApp, username: &str) -> String {
    sqlx::query_scalar(
        "SELECT auth_method FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = $1) \
         ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(username)
    .fetch_one(&app.pool)
    .await
    .expect("session")
}

#[tokio::test]
async fn sign_in_options_cost_no_row_and_keep_their_state_in_a_strict_short_cookie() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    let csrf = app.login_csrf(&browser).await;
    let response = ask(&app, &browser, "/login/passkey/options", &csrf).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = header(&response, "set-cookie");
    assert!(
        cookie.starts_with("portcullis_passkey=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Max-Age=300"),
        "{cookie}"
    );
    assert!(header(&response, "cache-control").contains("no-store"));
    let options: Value = response.json().await.expect("JSON");
    let public_key = &options["publicKey"];
    assert_eq!(public_key["rpId"], "localhost");
    assert_eq!(public_key["userVerification"], "required");
    assert_eq!(public_key["allowCredentials"], serde_json::json!([]));
    assert!(options.get("mediation").is_none(), "a button, not autofill");
    assert!(
        public_key["challenge"]
            .as_str()
            .is_some_and(|c| c.len() >= 43)
    );
    for table in ["sessions", "passkey_challenges_spent", "login_throttles"] {
        let rows = app.count(&format!("SELECT count(*) FROM {table}")).await;
        assert_eq!(rows, 0, "{table}: asking for a challenge writes nothing");
    }
    // Without the sign-in form's token: refused, as JSON the script shows.
    let forged = ask(&app, &browser, "/login/passkey/options", "forged").await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let json: Value = forged.json().await.expect("JSON");
    assert_eq!(json["error"], "csrf_failed");
}

#[tokio::test]
async fn a_passkey_is_registered_listed_and_signs_in_alone() {
    let app = TestApp::spawn().await;
    let owner = app.user_client("pia", Role::Member).await;
    let csrf = app.session_csrf(&owner).await;
    let creation = options(&app, &owner, "/account/passkeys/options", &csrf).await;
    let public_key = &creation["publicKey"];
    assert_eq!(public_key["rp"]["id"], "localhost");
    assert_eq!(public_key["user"]["name"], "pia");
    assert_eq!(
        public_key["authenticatorSelection"]["residentKey"],
        "required"
    );
    assert_eq!(
        public_key["authenticatorSelection"]["userVerification"],
        "required"
    );
    let mut passkey = register(&app, &owner, "Work laptop").await;
    app.audit("event = 'passkey_registered' AND username = 'pia'", 1)
        .await;
    let page = app
        .get(&owner, "/account/passkeys")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("Work laptop") && page.contains("never"),
        "{page}"
    );
    // The same authenticator's credential again: refused, nothing added.
    let again = options(&app, &owner, "/account/passkeys/options", &csrf).await;
    let excluded = again["publicKey"]["excludeCredentials"][0]["id"].clone();
    assert!(
        excluded.is_string(),
        "registered credentials are excluded: {again}"
    );

    let browser = app.client();
    let response = passkey_sign_in(&app, &browser, &mut passkey).await;
    assert_eq!(app.landing(&browser, response).await, "/account");
    assert_eq!(auth_method(&app, "pia").await, "passkey");
    app.audit(
        "event = 'sign_in' AND reason = 'passkey' AND username = 'pia'",
        1,
    )
    .await;
    let page = app
        .get(&browser, "/account/passkeys")
        .await
        .text()
        .await
        .expect("body");
    assert!(!page.contains("never"), "last use shown: {page}");
    let account = app
        .get(&browser, "/account")
        .await
        .text()
        .await
        .expect("body");
    assert!(account.contains("1 passkey."), "{account}");
}

#[tokio::test]
async fn an_answered_challenge_cannot_be_replayed() {
    let app = TestApp::spawn().await;
    let owner = app.user_client("rex", Role::Member).await;
    let mut passkey = register(&app, &owner, "Phone").await;
    let browser = app.client();
    let csrf = app.login_csrf(&browser).await;
    let response = ask(&app, &browser, "/login/passkey/options", &csrf).await;
    let ceremony = header(&response, "set-cookie")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let options: Value = response.json().await.expect("JSON");
    let answer = passkey.assert(&options, &origin(&app));
    let csrf_cookie = browser
        .cookie(&app.url("/"), "portcullis_csrf")
        .expect("csrf cookie");
    let send = || async {
        app.bare_client()
            .post(app.url("/login/passkey"))
            .header(ACCEPT, BROWSER_ACCEPT)
            .header(COOKIE, format!("{csrf_cookie}; {ceremony}"))
            .form(&[("csrf", csrf.as_str()), ("credential", answer.as_str())])
            .send()
            .await
            .expect("POST")
    };
    let first = send().await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let replay = send().await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    let page = replay.text().await.expect("body");
    assert!(page.contains("expired or was already used"), "{page}");
    app.audit(
        "event = 'sign_in_failed' AND reason = 'passkey_replayed'",
        1,
    )
    .await;
}

#[tokio::test]
async fn refused_answers_say_why_in_the_audit_trail_and_are_throttled_per_address() {
    let app = TestApp::spawn_with(|settings| settings.throttle.ip_failures = 4).await;
    let owner = app.user_client("sue", Role::Member).await;
    let mut passkey = register(&app, &owner, "Key").await;

    // A tampered signature.
    let browser = app.client();
    let csrf = app.login_csrf(&browser).await;
    let options_json = options(&app, &browser, "/login/passkey/options", &csrf).await;
    let mut answer: Value =
        serde_json::from_str(&passkey.assert(&options_json, &origin(&app))).expect("JSON");
    let mut signature = URL_SAFE_NO_PAD
        .decode(answer["response"]["signature"].as_str().expect("signature"))
        .expect("base64url");
    signature[12] ^= 0x55;
    answer["response"]["signature"] = Value::from(URL_SAFE_NO_PAD.encode(signature));
    let post = |credential: String, csrf: String| {
        let browser = &browser;
        let app = &app;
        async move {
            browser
                .post(app.url("/login/passkey"))
                .header(ACCEPT, BROWSER_ACCEPT)
                .form(&[("csrf", csrf.as_str()), ("credential", credential.as_str())])
                .send()
                .await
                .expect("POST")
        }
    };
    let tampered = post(answer.to_string(), csrf.clone()).await;
    assert_eq!(tampered.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&tampered, "www-authenticate").contains("Session"));
    // A passkey this site never registered.
    let csrf = app.login_csrf(&browser).await;
    let options_json = options(&app, &browser, "/login/passkey/options", &csrf).await;
    let (mut stranger, _) = SoftPasskey::register(
        &serde_json::json!({ "publicKey": {
            "rp": { "id": "localhost" }, "user": { "id": "AAAA" }, "challenge": "AAAA" } }),
        &origin(&app),
    );
    let unknown = post(stranger.assert(&options_json, &origin(&app)), csrf).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    // No challenge at all (the cookie expired or was never set).
    let csrf = app.login_csrf(&browser).await;
    let expired = post(passkey.assert(&options_json, &origin(&app)), csrf).await;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    for reason in [
        "bad_passkey",
        "unknown_passkey",
        "passkey_challenge_expired",
    ] {
        app.audit(
            &format!("event = 'sign_in_failed' AND reason = '{reason}'"),
            1,
        )
        .await;
    }
    // The address's budget: four failures, then a wait.
    let csrf = app.login_csrf(&browser).await;
    let fourth = post("{}".into(), csrf.clone()).await;
    assert_eq!(fourth.status(), StatusCode::UNAUTHORIZED);
    let throttled = post("{}".into(), csrf).await;
    assert_eq!(
        throttled.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        describe(throttled).await
    );
}

#[tokio::test]
async fn adding_a_passkey_needs_a_recent_sign_in() {
    let app = TestApp::spawn().await;
    let owner = app.user_client("val", Role::Member).await;
    let csrf = app.session_csrf(&owner).await;
    sqlx::query("UPDATE sessions SET authenticated_at = now() - interval '20 minutes'")
        .execute(&app.pool)
        .await
        .expect("age the sign-in");
    let response = ask(&app, &owner, "/account/passkeys/options", &csrf).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&response, "www-authenticate").contains("insufficient_user_authentication"));
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["reauth_url"], "/reauth");
    // An answer without a registration waiting in the session is refused too.
    let (_, answer) = SoftPasskey::register(
        &serde_json::json!({ "publicKey": {
            "rp": { "id": "localhost" }, "user": { "id": "AAAA" }, "challenge": "AAAA" } }),
        &origin(&app),
    );
    let refused = app
        .post_form_with_csrf(
            &owner,
            "/account/passkeys",
            &[("name", "Sneaky"), ("credential", &answer)],
            &csrf,
        )
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count("SELECT count(*) FROM passkeys").await, 0);
    app.audit(
        "event = 'passkey_registration_failed' AND reason = 'no_ceremony'",
        1,
    )
    .await;
}

#[tokio::test]
async fn removing_a_passkey_needs_a_reauthentication_which_a_passkey_gives() {
    let app = TestApp::spawn().await;
    let owner = app.user_client("wes", Role::Member).await;
    let mut passkey = register(&app, &owner, "Old phone").await;
    let id: i64 = app.count("SELECT id FROM passkeys").await;
    sqlx::query("UPDATE sessions SET authenticated_at = now() - interval '20 minutes'")
        .execute(&app.pool)
        .await
        .expect("age the sign-in");
    let remove = format!("/account/passkeys/{id}/remove");
    let response = app.post_form(&owner, &remove, &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(location(&response).starts_with("/reauth"), "{response:?}");
    assert_eq!(app.count("SELECT count(*) FROM passkeys").await, 1);

    // A passkey is this account's only second factor: the page asks for it, not a password.
    let page = app.get(&owner, "/reauth").await.text().await.expect("body");
    assert!(
        page.contains("To remove a passkey, confirm with your passkey.")
            && page.contains("Confirm with your passkey")
            && !page.contains("id=\"password\""),
        "{page}"
    );
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let password_only = app
        .post_form_with_csrf(&owner, "/reauth", &[("password", PASSWORD)], &csrf)
        .await;
    assert_eq!(password_only.status(), StatusCode::UNAUTHORIZED);

    let request = options(&app, &owner, "/reauth/passkey/options", &csrf).await;
    assert_eq!(
        request["publicKey"]["allowCredentials"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let answer = passkey.assert(&request, &origin(&app));
    let confirmed = app
        .post_form_with_csrf(
            &owner,
            "/reauth",
            &[("credential", &answer), ("next", "/account/passkeys")],
            &csrf,
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let page = confirmed.text().await.expect("body");
    assert!(page.contains("Now remove a passkey"), "{page}");
    let csrf = hidden_field(&page, "csrf").expect("renewed csrf");
    let removed = app.post_form_with_csrf(&owner, &remove, &[], &csrf).await;
    assert_eq!(location(&removed), "/account/passkeys?done=removed");
    assert_eq!(app.count("SELECT count(*) FROM passkeys").await, 0);
    app.audit(
        "event = 'reauthenticated' AND username = 'wes' AND detail->>'method' = 'passkey'",
        1,
    )
    .await;
    app.audit("event = 'passkey_removed' AND username = 'wes'", 1)
        .await;
}

#[tokio::test]
async fn a_passkey_is_a_second_factor_for_the_policy_and_the_second_step() {
    let app = TestApp::spawn_with(|settings| settings.require_mfa = RequireMfa::Admins).await;
    let admin = app.user_client("ada", Role::Admin).await;
    let response = app.get(&admin, "/admin").await;
    assert_eq!(location(&response), "/account/two-factor?required=1");
    let mut passkey = register(&app, &admin, "Security key").await;
    assert_eq!(app.get(&admin, "/admin").await.status(), StatusCode::OK);

    // The password now leads to the second step, which offers the passkey (no code: no app).
    let browser = app.client();
    let response = app.post_login(&browser, "ada", PASSWORD, "/admin").await;
    assert_eq!(location(&response), "/login/second-factor?next=%2Fadmin");
    let page = app
        .get(&browser, "/login/second-factor?next=%2Fadmin")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("Use your passkey") && !page.contains("name=\"code\""),
        "{page}"
    );
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let request = options(
        &app,
        &browser,
        "/login/second-factor/passkey/options",
        &csrf,
    )
    .await;
    let answer = passkey.assert(&request, &origin(&app));
    let response = browser
        .post(app.url("/login/second-factor"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .form(&[
            ("csrf", csrf.as_str()),
            ("next", "/admin"),
            ("credential", answer.as_str()),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(app.landing(&browser, response).await, "/admin");
    assert_eq!(auth_method(&app, "ada").await, "password+passkey");

    // The administrator's last second factor stays.
    let id: i64 = app.count("SELECT id FROM passkeys").await;
    let kept = app
        .post_form(&browser, &format!("/account/passkeys/{id}/remove"), &[])
        .await;
    assert_eq!(kept.status(), StatusCode::CONFLICT);
    assert_eq!(app.count("SELECT count(*) FROM passkeys").await, 1);
}

#[tokio::test]
async fn another_accounts_passkey_cannot_answer_a_second_step() {
    let app = TestApp::spawn().await;
    let alice = app.user_client("alice", Role::Member).await;
    let mut hers = register(&app, &alice, "Hers").await;
    let bob = app.user_client("bob", Role::Member).await;
    register(&app, &bob, "His").await;
    let browser = app.client();
    app.post_login(&browser, "bob", PASSWORD, "").await;
    let page = app
        .get(&browser, "/login/second-factor")
        .await
        .text()
        .await
        .expect("body");
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let request = options(
        &app,
        &browser,
        "/login/second-factor/passkey/options",
        &csrf,
    )
    .await;
    let answer = hers.assert(&request, &origin(&app));
    let response = browser
        .post(app.url("/login/second-factor"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .form(&[("csrf", csrf.as_str()), ("credential", answer.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.audit(
        "event = 'sign_in_failed' AND reason = 'passkey_of_another_account' AND username = 'bob'",
        1,
    )
    .await;
    // Without a first step there is no challenge to ask for.
    let stranger = app.client();
    let csrf = app.login_csrf(&stranger).await;
    let response = ask(
        &app,
        &stranger,
        "/login/second-factor/passkey/options",
        &csrf,
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_disabled_accounts_passkey_signs_nobody_in_and_a_reset_removes_passkeys() {
    let app = TestApp::spawn().await;
    let owner = app.user_client("dan", Role::Member).await;
    let mut passkey = register(&app, &owner, "Laptop").await;
    sqlx::query("UPDATE users SET disabled_at = now() WHERE username = 'dan'")
        .execute(&app.pool)
        .await
        .expect("disable");
    let browser = app.client();
    let response = passkey_sign_in(&app, &browser, &mut passkey).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    sqlx::query("UPDATE users SET disabled_at = NULL WHERE username = 'dan'")
        .execute(&app.pool)
        .await
        .expect("enable");
    let dan = app.user_id("dan").await;
    portcullis::accounts::admin::reset_second_factor(
        &app.pool,
        &portcullis::audit::Actor::new("test-setup", Default::default()),
        dan,
    )
    .await
    .expect("reset");
    assert_eq!(app.count("SELECT count(*) FROM passkeys").await, 0);
    app.audit("event = 'passkey_removed' AND reason = 'reset'", 1)
        .await;
}

#[tokio::test]
async fn a_public_url_passkeys_cannot_use_is_refused_at_start() {
    for (url, why) in [
        ("http://login.example.com", "https://"),
        ("https://10.1.2.3", "IP"),
    ] {
        let output = portcullis(&[
            "serve",
            "--public-url",
            url,
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
        ])
        .output()
        .expect("run");
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{url} must be refused");
        assert!(
            err.contains("passkeys") && err.contains(why),
            "{url}: {err}"
        );
    }
}
