//! Devices people recognise, in the browser: the account page on a phone (each session a
//! card with its own working "Sign out"), and the time zone taken from the browser.

use portcullis::auth::Role;
use reqwest::{StatusCode, header::ACCEPT};
use serde_json::json;

use super::app;
use crate::{
    browser::harness::{Browser, Js, Turn},
    support::{BROWSER_ACCEPT, PASSWORD, TestApp, assert_login_redirect},
};

const FIREFOX_ANDROID: &str =
    "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0";

/// A session of `name` from another device (a phone's Firefox), over plain HTTP.
async fn phone_session(app: &TestApp, name: &str) -> crate::support::Browser {
    let phone = app.client();
    let csrf = app.login_csrf(&phone).await;
    let response = phone
        .post(app.url("/login"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .header("user-agent", FIREFOX_ANDROID)
        .form(&[("username", name), ("password", PASSWORD), ("csrf", &csrf)])
        .send()
        .await
        .expect("POST /login");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    phone
}

/// Fails unless what `css` matches lies within a screen `width` CSS pixels wide.
async fn within_screen(browser: &Browser, css: &str, width: f64) {
    let element = browser.find(css).await;
    let (x, _, w, h) = match element.rectangle().await {
        Ok(rect) => rect,
        Err(e) => browser.fail(format!("no rectangle for {css}: {e}")).await,
    };
    if x < 0.0 || x + w > width || w < 1.0 || h < 1.0 {
        browser
            .fail(format!(
                "{css} is not on a {width} px screen: x {x}, width {w}, height {h}"
            ))
            .await;
    }
}

/// 18. On a phone (390 px wide), the account page shows each session as a card: the
///     device in words, when, how, and its own "Sign out" button on screen, which works.
pub(super) async fn sessions_as_cards_on_a_phone(turn: &Turn, js: Js) {
    let app = app().await;
    app.create_user("sam", Role::Member).await;
    let phone = phone_session(&app, "sam").await;
    let browser = turn.browser(&app, js).await;
    browser.set_viewport(390, 844, true).await;
    browser.visit("/login").await;
    browser.sign_in("sam", PASSWORD).await;
    browser.expect_location("/account").await;

    if browser.count("ul.sessions > li").await != 2 {
        browser.fail("expected two session cards".into()).await;
    }
    browser.expect_text("Firefox on Android").await;
    browser.expect_text("This device").await;
    browser.expect_text("Signed in with").await;
    // Every part of the other session's card is on screen, its button too.
    for css in [
        "ul.sessions > li:not(.current) h3",
        "ul.sessions > li:not(.current) dl",
        "ul.sessions > li:not(.current) button",
        "ul.sessions > li.current button",
    ] {
        within_screen(&browser, css, 390.0).await;
    }
    browser.click("ul.sessions > li:not(.current) button").await;
    browser.expect_text("That session was signed out.").await;
    if browser.count("ul.sessions > li").await != 1 {
        browser
            .fail("the signed-out session is still listed".into())
            .await;
    }
    assert_login_redirect(
        app.get(&phone, "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;

    // The current session's card signs this browser out.
    browser.click("ul.sessions > li.current button").await;
    browser.expect_path("/login").await;
    browser.expect_text("You have been signed out.").await;
    browser.reset_viewport().await;
    browser.close().await;
}

/// 19. With JavaScript, the account page offers the browser's time zone (here Tokyo's) and
///     selects it in the list; one click saves it, and times read in it.
pub(super) async fn time_zone_from_the_browser(turn: &Turn) {
    let app = app().await;
    app.create_user("kei", Role::Member).await;
    let browser = turn.browser(&app, Js::On).await;
    browser
        .cdp(
            "Emulation.setTimezoneOverride",
            json!({ "timezoneId": "Asia/Tokyo" }),
        )
        .await;
    browser.visit("/login").await;
    browser.sign_in("kei", PASSWORD).await;
    browser.expect_location("/account").await;
    browser
        .expect_text("Times on these pages are shown in UTC")
        .await;
    browser
        .expect_text("Your browser is set to Asia/Tokyo.")
        .await;
    // The list, on its own page, has it selected already.
    browser.click_link("Choose your time zone").await;
    browser.expect_heading("Time zone").await;
    if browser.value("#time_zone").await != "Asia/Tokyo" {
        browser
            .fail("the browser's zone is not selected".into())
            .await;
    }
    browser.click_link("← Your account").await;
    browser.click_button("Use my browser’s time zone").await;
    browser.expect_text("Your time zone was saved.").await;
    browser
        .expect_text("Times on these pages are shown in Asia/Tokyo.")
        .await;
    browser.expect_text(" JST").await;
    // Nothing left to offer: the page's zone is the browser's.
    if browser
        .attr("form[data-browser-zone]", "hidden")
        .await
        .is_none()
    {
        browser.fail("the offer is still shown".into()).await;
    }
    let stored: Option<String> = sqlx::query_scalar("SELECT time_zone FROM users")
        .fetch_one(&app.pool)
        .await
        .expect("time zone");
    assert_eq!(stored.as_deref(), Some("Asia/Tokyo"));
    browser.close().await;
}

/// 19, without JavaScript: nothing is offered, the list works.
pub(super) async fn time_zone_from_the_list(turn: &Turn, js: Js) {
    let app = app().await;
    app.create_user("ines", Role::Member).await;
    let browser = turn.browser(&app, js).await;
    browser.visit("/login").await;
    browser.sign_in("ines", PASSWORD).await;
    browser.expect_location("/account").await;
    browser.expect_no_text("Your browser is set to").await;
    browser.click_link("Choose your time zone").await;
    browser.expect_heading("Time zone").await;
    browser.expect_no_text("Your browser is set to").await;
    browser.choose("#time_zone", "Europe/Lisbon").await;
    browser.click_button("Save time zone").await;
    browser.expect_text("Your time zone was saved.").await;
    browser
        .expect_text("Times on these pages are shown in Europe/Lisbon.")
        .await;
    browser.close().await;
}
