//! One person signing in and out: deep links, the 403 page, the back button, idle expiry,
//! other sessions, a wrong password, a stale form, demo mode and help.

use portcullis::auth::Role;

use super::{FORBIDDEN, HELP, app};
use crate::{
    browser::{
        harness::{Js, Turn},
        pages::SUPPORT_CONTACT,
    },
    support::{PASSWORD, TestApp},
};

/// 1. A deep link while signed out: the sign-in page asks to sign in, then the person
///    lands on the page they asked for.
pub(super) async fn deep_link_then_sign_in(turn: &Turn, js: Js) {
    let app = app().await;
    app.create_user("eddie", Role::Editor).await;
    let browser = turn.browser(&app, js).await;

    browser.visit("/reports").await;
    browser
        .expect_location("/login?next=%2Freports&notice=required")
        .await;
    browser.expect_heading("Sign in").await;
    browser.expect_text("Please sign in to continue.").await;
    browser
        .expect_text("Sign in and you will be taken straight to it.")
        .await;
    assert_eq!(browser.focused_id().await, "username", "focus on arrival");

    browser.sign_in("eddie", PASSWORD).await;
    browser.expect_location("/reports").await;
    browser.expect_heading("Reports").await;
    browser.expect_text("Signed in as eddie").await;
    browser.close().await;
}

/// 2. A member opening an editor's page gets the 403 page, which names who they are,
///    their role and the role needed, says whom to ask, and whose links work.
pub(super) async fn member_sees_the_403_page(turn: &Turn, js: Js) {
    let app = app().await;
    app.create_user("mia", Role::Member).await;
    let browser = turn.browser(&app, js).await;

    browser.visit("/login").await;
    browser.sign_in("mia", PASSWORD).await;
    browser.expect_location("/account").await;
    browser.click_link("Reports").await;
    // Still at /reports: a 403 is an answer, not a redirect to sign-in.
    browser.expect_location("/reports").await;
    browser
        .expect_heading("You do not have access to this page")
        .await;
    browser
        .expect_text(
            "You are signed in as mia with the member role. The page /reports needs the \
             editor role.",
        )
        .await;
    browser.expect_text("Signing in again will not help").await;
    browser.expect_text(SUPPORT_CONTACT).await;
    assert_eq!(
        browser
            .attr("main a[href^='mailto:']", "href")
            .await
            .as_deref(),
        Some("mailto:it-help@example.com"),
        "the administrator contact is a link"
    );

    browser.click_link("Your account").await;
    browser.expect_location("/account").await;
    browser.expect_heading("Your account").await;
    browser.back().await;
    browser.expect_location("/reports").await;
    browser
        .expect_heading("You do not have access to this page")
        .await;
    browser.click_link("Go to the home page").await;
    browser.expect_location("/").await;
    browser
        .expect_text("You are signed in as mia with the member role.")
        .await;
    browser.close().await;
}

/// 3. After signing out, the back button shows no private content: the sign-in page made
///    the browser forget the site's pages (`FORGET_PAGES`; `no-store` alone no longer keeps
///    Chromium from restoring them), so it asks again and is sent to sign in.
pub(super) async fn back_after_sign_out_shows_nothing_private(turn: &Turn, js: Js) {
    let app = app().await;
    app.create_user("mia", Role::Member).await;
    let browser = turn.browser(&app, js).await;

    browser.visit("/login").await;
    browser.sign_in("mia", PASSWORD).await;
    browser.expect_location("/account").await;
    browser.expect_text("This session started").await;

    browser.sign_out().await;
    browser.expect_location("/login?notice=signed_out").await;
    browser.expect_text("You have been signed out.").await;

    browser.back().await;
    browser
        .expect_location("/login?next=%2Faccount&notice=required")
        .await;
    browser.expect_heading("Sign in").await;
    browser.expect_no_text("This session started").await;
    browser.expect_no_text("Signed in as").await;
    browser.close().await;
}

/// 4. Idle expiry: the next click lands on sign-in with "your session has expired", and
///    signing in returns to where the person was going. A stale sign-out form after
///    expiry also lands on sign-in, never on an error page, and going back from there
///    shows nothing of the ended session.
pub(super) async fn idle_expiry_then_back_where_you_were(turn: &Turn, js: Js) {
    let app = TestApp::spawn_with(|settings| {
        settings.idle_timeout = time::Duration::seconds(2);
        settings.absolute_timeout = time::Duration::hours(1);
    })
    .await;
    app.create_user("eddie", Role::Editor).await;
    let browser = turn.browser(&app, js).await;

    browser.visit("/login").await;
    browser.sign_in("eddie", PASSWORD).await;
    browser.expect_location("/account").await;
    app.idle_out("eddie").await;

    browser.click_link("Reports").await;
    browser
        .expect_location("/login?next=%2Freports&notice=expired")
        .await;
    browser
        .expect_text("Your session has expired, please sign in again.")
        .await;
    browser
        .expect_text("a session ends after 2 seconds without activity")
        .await;
    browser.sign_in("eddie", PASSWORD).await;
    browser.expect_location("/reports").await;
    browser.expect_heading("Reports").await;

    app.idle_out("eddie").await;
    browser.sign_out().await;
    browser.expect_path("/login").await;
    browser.expect_heading("Sign in").await;
    // Nor does the back button bring the expired session's page back.
    browser.back().await;
    browser.expect_path("/login").await;
    browser.expect_no_text("Signed in as").await;
    browser.close().await;
}

/// 5. One person, two browsers: "Sign out all other sessions" in one signs the other out
///    on its next navigation, with a notice saying so (and back shows nothing private);
///    the first stays signed in.
pub(super) async fn signing_out_other_sessions_reaches_the_other_browser(turn: &Turn, js: Js) {
    let app = app().await;
    app.create_user("sam", Role::Member).await;
    let first = turn.browser(&app, js).await;
    let second = turn.browser(&app, js).await;
    for browser in [&first, &second] {
        browser.visit("/login").await;
        browser.sign_in("sam", PASSWORD).await;
        browser.expect_location("/account").await;
    }

    first.visit("/account").await;
    first.click_button("Sign out all other sessions (1)").await;
    first
        .expect_text("All your other sessions were signed out.")
        .await;

    second.click_link("Account").await;
    second
        .expect_location("/login?next=%2Faccount&notice=revoked")
        .await;
    second
        .expect_text("You were signed out of this session.")
        .await;
    second.expect_text(SUPPORT_CONTACT).await;
    second.expect_no_text("Signed in as").await;
    second.back().await;
    second.expect_path("/login").await;
    second.expect_no_text("Signed in as").await;

    first.click_link("Account").await;
    first.expect_location("/account").await;
    first.expect_text("Signed in as sam").await;
    first.close().await;
    second.close().await;
}

/// 6. A wrong password: one generic message, the username kept, the password cleared,
///    focus on the password field, and the message tied to the fields.
pub(super) async fn wrong_password_keeps_username_and_focuses_password(turn: &Turn, js: Js) {
    let app = app().await;
    app.create_user("mia", Role::Member).await;
    let browser = turn.browser(&app, js).await;

    browser.visit("/login").await;
    browser.sign_in("mia", "not the password").await;
    browser.expect_location("/login").await;
    browser.expect_text("Invalid username or password.").await;
    browser.expect_text(SUPPORT_CONTACT).await;
    assert_eq!(browser.value("#username").await, "mia", "username kept");
    assert_eq!(browser.value("#password").await, "", "password cleared");
    assert_eq!(
        browser.focused_id().await,
        "password",
        "focus on the password field"
    );
    for field in ["#username", "#password"] {
        assert_eq!(
            browser.attr(field, "aria-describedby").await.as_deref(),
            Some("login-error"),
            "{field} points at the message"
        );
    }
    assert_eq!(
        browser.attr("#password", "aria-invalid").await.as_deref(),
        Some("true")
    );
    let message = browser
        .find("#login-error")
        .await
        .text()
        .await
        .expect("text");

    // An unknown user reads exactly the same.
    browser.sign_in("nobody", "not the password").await;
    browser.expect_location("/login").await;
    let unknown = browser
        .find("#login-error")
        .await
        .text()
        .await
        .expect("text");
    assert_eq!(
        unknown, message,
        "unknown user and wrong password look alike"
    );

    // The re-shown form works.
    browser.sign_in("mia", PASSWORD).await;
    browser.expect_location("/account").await;
    browser.expect_text("Signed in as mia").await;
    browser.close().await;
}

/// 11. A form sent after the session idled out ("Sign out all other sessions"): the
///     sign-in page says the form was not sent, and signing in leads back to the page
///     the form was on.
pub(super) async fn stale_form_returns_to_its_page(turn: &Turn, js: Js) {
    let app = TestApp::spawn_with(|settings| {
        settings.idle_timeout = time::Duration::seconds(2);
        settings.absolute_timeout = time::Duration::hours(1);
    })
    .await;
    app.create_user("sam", Role::Member).await;
    let browser = turn.browser(&app, js).await;

    browser.visit("/login").await;
    browser.sign_in("sam", PASSWORD).await;
    browser.expect_location("/account").await;
    // Signed in on another device too, so the page offers to sign that one out.
    app.login(&app.client(), "sam").await;
    browser.visit("/account").await;
    browser.expect_text("Sign out all other sessions (1)").await;

    app.idle_out("sam").await;
    browser
        .click_button("Sign out all other sessions (1)")
        .await;
    browser
        .expect_location("/login?next=%2Faccount&notice=form_expired")
        .await;
    browser.expect_heading("Sign in").await;
    browser
        .expect_text("Your session expired before the form was sent; sign in and send it again.")
        .await;
    browser
        .expect_text("Nothing was changed. A session ends after 2 seconds without activity")
        .await;
    assert_eq!(browser.focused_id().await, "username", "focus on arrival");
    browser.sign_in("sam", PASSWORD).await;
    browser.expect_location("/account").await;
    browser.expect_heading("Your account").await;
    browser.expect_text("Signed in as sam").await;
    browser.close().await;
}

/// 12. Demo mode: the banner is on every page, signed in or not; without `--demo`,
///     there is none.
pub(super) async fn demo_banner_on_every_page(turn: &Turn, js: Js) {
    let demo = TestApp::spawn_with(|settings| settings.demo = true).await;
    demo.create_user("member", Role::Member).await;
    let plain = app().await;
    let browser = turn.browser(&demo, js).await;
    let banner = "This site runs with demo accounts";

    browser.open(&plain.url("/")).await;
    browser.expect_heading("Welcome to Portcullis").await;
    browser.expect_no_text("Demo mode.").await;

    for path in ["/", "/login"] {
        browser.visit(path).await;
        browser.expect_text("Demo mode.").await;
        browser.expect_text(banner).await;
        assert!(
            browser
                .find(".demo-banner")
                .await
                .is_displayed()
                .await
                .unwrap_or(false),
            "{path}: the banner shows"
        );
    }
    browser.sign_in("member", PASSWORD).await;
    browser.expect_location("/account").await;
    browser.expect_text("Demo mode.").await;
    browser.close().await;
}

/// 13. Help is one click away from a sign-in notice (401) and from the 403 page, and
///     names whom to ask.
pub(super) async fn help_from_401_and_403(turn: &Turn, js: Js) {
    let app = app().await;
    app.create_user("mia", Role::Member).await;
    let browser = turn.browser(&app, js).await;
    let contact = format!("Your administrator: {SUPPORT_CONTACT}.");

    browser.visit("/account").await;
    browser
        .expect_location("/login?next=%2Faccount&notice=required")
        .await;
    browser
        .click_link("Why am I asked to sign in? What can I do?")
        .await;
    browser.expect_location("/help/access").await;
    browser.expect_heading(HELP).await;
    browser.expect_text(&contact).await;
    assert_eq!(
        browser
            .count(&format!("main a[href='mailto:{SUPPORT_CONTACT}']"))
            .await,
        1,
        "the contact is a link"
    );
    browser.back().await;
    browser
        .expect_location("/login?next=%2Faccount&notice=required")
        .await;
    browser.sign_in("mia", PASSWORD).await;
    browser.expect_location("/account").await;

    browser.click_link("Reports").await;
    browser.expect_heading(FORBIDDEN).await;
    browser.click_link("Help").await;
    browser.expect_location("/help/access").await;
    assert_eq!(
        browser.fragment().await.as_deref(),
        Some("access"),
        "the 403 page links to the 403 part"
    );
    browser.expect_heading(HELP).await;
    browser
        .expect_text("Signing in again will not help, and neither will clearing cookies.")
        .await;
    browser.expect_text(&contact).await;
    browser.close().await;
}
