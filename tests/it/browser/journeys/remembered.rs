//! 18. "Keep me signed in" (`--remember-days`): ticked, the session survives the browser
//!     closing (Chromium drops its session cookies, as on quitting); not ticked, it does not.

use portcullis::auth::Role;
use serde_json::{Value, json};

use crate::{
    browser::{
        harness::{Browser, Js, Turn},
        pages::SUPPORT_CONTACT,
    },
    support::{PASSWORD, TestApp},
};

/// The session cookie as Chromium holds it: whether it is a session-only cookie, and when
/// it expires (seconds since the epoch; -1 for a session-only cookie).
async fn session_cookie(browser: &Browser, app: &TestApp) -> (bool, f64) {
    let all = browser.cdp("Network.getAllCookies", json!({})).await;
    let name = app.settings.session_cookie_name();
    let cookie = all["cookies"]
        .as_array()
        .and_then(|cookies| cookies.iter().find(|c| c["name"] == name))
        .cloned()
        .unwrap_or(Value::Null);
    if cookie.is_null() {
        browser.fail(format!("no {name} cookie in {all}")).await;
    }
    (
        cookie["session"].as_bool().unwrap_or(true),
        cookie["expires"].as_f64().unwrap_or(-1.0),
    )
}

/// What quitting the browser does to cookies: the session-only ones go.
async fn close_and_reopen(browser: &Browser) {
    let all = browser.cdp("Network.getAllCookies", json!({})).await;
    for cookie in all["cookies"].as_array().into_iter().flatten() {
        if cookie["session"].as_bool() == Some(true) {
            browser
                .cdp(
                    "Network.deleteCookies",
                    json!({ "name": cookie["name"], "domain": cookie["domain"], "path": cookie["path"] }),
                )
                .await;
        }
    }
}

pub(super) async fn kept_signed_in(turn: &Turn, js: Js) {
    let app = TestApp::spawn_with(|settings| {
        settings.support_contact = Some(SUPPORT_CONTACT.to_owned());
        settings.remember = Some(time::Duration::days(30));
    })
    .await;
    app.create_user("kim", Role::Member).await;
    let browser = turn.browser(&app, js).await;

    // Not ticked: closing the browser signs the person out.
    browser.visit("/login").await;
    browser
        .expect_text("Keep me signed in on this device for 30 days")
        .await;
    browser.sign_in("kim", PASSWORD).await;
    browser.expect_location("/account").await;
    let (session_only, _) = session_cookie(&browser, &app).await;
    assert!(session_only, "an ordinary sign-in ends with the browser");
    close_and_reopen(&browser).await;
    browser.visit("/account").await;
    browser.expect_path("/login").await;
    browser.expect_heading("Sign in").await;

    // Ticked: the session outlives the browser, and the account page says so.
    browser.fill("#username", "kim").await;
    browser.fill("#password", PASSWORD).await;
    // A checkbox: ticking it is a click that leads nowhere.
    browser
        .find("#remember")
        .await
        .click()
        .await
        .expect("tick the box");
    browser.click("main form button[type=submit]").await;
    browser.expect_location("/account").await;
    browser.expect_text("Kept signed in").await;
    let (session_only, expires) = session_cookie(&browser, &app).await;
    let in_29_days = (time::OffsetDateTime::now_utc() + time::Duration::days(29)).unix_timestamp();
    assert!(
        !session_only && expires > in_29_days as f64,
        "a remembered session's cookie lasts the 30 days: expires {expires}"
    );
    close_and_reopen(&browser).await;
    browser.visit("/account").await;
    browser.expect_location("/account").await;
    browser.expect_heading("Your account").await;

    // Signing out ends it there and then.
    browser.sign_out().await;
    browser.expect_heading("Sign in").await;
    browser.visit("/account").await;
    browser.expect_path("/login").await;
    browser.close().await;
}
