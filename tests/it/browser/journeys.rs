//! The journeys people take, asserted on what they see: page text, the address bar and
//! keyboard focus. Each journey is its own test with JavaScript on, and all of them run
//! again with JavaScript off (`every_journey_works_without_javascript`): the app has no
//! script at all, so nothing may depend on one.

use portcullis::auth::Role;

use super::{
    harness::{Js, Turn, turn},
    pages::{self, PAGES, SUPPORT_CONTACT},
};
use crate::support::{PASSWORD, TestApp, sleep};

async fn app() -> TestApp {
    TestApp::spawn_with(|settings| {
        settings.support_contact = Some(SUPPORT_CONTACT.to_owned());
    })
    .await
}

/// 1. A deep link while signed out: the sign-in page asks to sign in, then the person
///    lands on the page they asked for.
async fn deep_link_then_sign_in(turn: &Turn, js: Js) {
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
async fn member_sees_the_403_page(turn: &Turn, js: Js) {
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

/// 3. After signing out, the back button shows no private content: the page was never
///    cached (`no-store`), so the browser asks again and is sent to sign in.
async fn back_after_sign_out_shows_nothing_private(turn: &Turn, js: Js) {
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
async fn idle_expiry_then_back_where_you_were(turn: &Turn, js: Js) {
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
    sleep(2_500).await;

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

    sleep(2_500).await;
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
async fn signing_out_other_sessions_reaches_the_other_browser(turn: &Turn, js: Js) {
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
async fn wrong_password_keeps_username_and_focuses_password(turn: &Turn, js: Js) {
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

/// 7. The administration pages: create a user, change a role, sign someone out
///    everywhere (their browser notices on its next click), and the 401/403 dashboard
///    shows its chart with the refusal just made.
async fn admin_pages(turn: &Turn, js: Js) {
    let app = app().await;
    app.create_user("ada", Role::Admin).await;
    app.create_user("mia", Role::Member).await;
    let admin = turn.browser(&app, js).await;
    let member = turn.browser(&app, js).await;

    // A member is refused the administration (and that refusal reaches the dashboard).
    member.visit("/login").await;
    member.sign_in("mia", PASSWORD).await;
    member.expect_location("/account").await;
    member.click_link("Admin").await;
    member
        .expect_heading("You do not have access to this page")
        .await;

    admin.visit("/login").await;
    admin.sign_in("ada", PASSWORD).await;
    admin.expect_location("/account").await;
    admin.click_link("Admin").await;
    admin.expect_location("/admin").await;
    admin.expect_heading("Users").await;
    let rows = admin
        .client
        .find_all(fantoccini::Locator::Css("main table tbody tr"))
        .await
        .expect("rows");
    let mut lines = Vec::new();
    for row in rows {
        lines.push(row.text().await.expect("row text"));
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ada") && l.contains("admin"))
            && lines
                .iter()
                .any(|l| l.starts_with("mia") && l.contains("member")),
        "the users table lists ada (admin) and mia (member): {lines:?}"
    );

    // Create a user.
    admin.fill("#new-username", "newbie").await;
    admin.fill("#new-password", PASSWORD).await;
    admin.choose("#new-role", "editor").await;
    admin.click_button("Create user").await;
    admin.expect_heading("newbie").await;
    admin.expect_text("User created.").await;
    assert_eq!(
        admin
            .find("dl.facts .badge")
            .await
            .text()
            .await
            .ok()
            .as_deref(),
        Some("editor")
    );

    // Change the role.
    admin.choose("#role", "member").await;
    admin.click_button("Change role").await;
    admin.expect_text("Role changed.").await;
    assert_eq!(
        admin
            .find("dl.facts .badge")
            .await
            .text()
            .await
            .ok()
            .as_deref(),
        Some("member")
    );

    // Sign mia out everywhere; her browser finds out on its next click.
    admin.click_link("Users").await;
    admin.expect_heading("Users").await;
    admin.click_link("mia").await;
    admin.expect_heading("mia").await;
    admin.click_button("Sign out everywhere…").await;
    admin.expect_heading("Sign mia out everywhere?").await;
    admin.click_button("Yes, sign out everywhere").await;
    admin.expect_heading("mia").await;
    admin.expect_text("Sessions signed out.").await;
    member.click_link("Account").await;
    member
        .expect_location("/login?next=%2Faccount&notice=revoked")
        .await;
    member
        .expect_text("You were signed out of this session.")
        .await;

    // The dashboard draws the refusal. (Audit events are written off the request path.)
    app.audit("status = 403", 1).await;
    admin.click_link("401/403 dashboard").await;
    admin.expect_heading("401/403 dashboard").await;
    let chart = admin.find("svg.chart").await;
    assert!(
        chart.is_displayed().await.unwrap_or(false),
        "the chart shows"
    );
    assert!(
        admin
            .client
            .find_all(fantoccini::Locator::Css("svg.chart rect.bar-403"))
            .await
            .is_ok_and(|bars| !bars.is_empty()),
        "the chart has a 403 bar"
    );
    admin.expect_text("403 — not allowed").await;
    admin.close().await;
    member.close().await;
}

#[tokio::test]
async fn deep_link_while_signed_out_returns_there_after_sign_in() {
    let Some(turn) = turn().await else { return };
    deep_link_then_sign_in(&turn, Js::On).await;
}

#[tokio::test]
async fn member_opening_reports_sees_the_403_page_and_its_links_work() {
    let Some(turn) = turn().await else { return };
    member_sees_the_403_page(&turn, Js::On).await;
}

#[tokio::test]
async fn back_button_after_sign_out_shows_no_private_content() {
    let Some(turn) = turn().await else { return };
    back_after_sign_out_shows_nothing_private(&turn, Js::On).await;
}

#[tokio::test]
async fn idle_expiry_sends_the_next_click_to_sign_in_and_back() {
    let Some(turn) = turn().await else { return };
    idle_expiry_then_back_where_you_were(&turn, Js::On).await;
}

#[tokio::test]
async fn signing_out_other_sessions_signs_out_the_other_browser() {
    let Some(turn) = turn().await else { return };
    signing_out_other_sessions_reaches_the_other_browser(&turn, Js::On).await;
}

#[tokio::test]
async fn wrong_password_keeps_username_clears_password_and_focuses_it() {
    let Some(turn) = turn().await else { return };
    wrong_password_keeps_username_and_focuses_password(&turn, Js::On).await;
}

#[tokio::test]
async fn admin_creates_a_user_changes_a_role_signs_someone_out_and_sees_the_dashboard() {
    let Some(turn) = turn().await else { return };
    admin_pages(&turn, Js::On).await;
}

/// 8. Every journey, and every page, with JavaScript off.
#[tokio::test]
async fn every_journey_works_without_javascript() {
    let Some(turn) = turn().await else { return };
    deep_link_then_sign_in(&turn, Js::Off).await;
    member_sees_the_403_page(&turn, Js::Off).await;
    back_after_sign_out_shows_nothing_private(&turn, Js::Off).await;
    idle_expiry_then_back_where_you_were(&turn, Js::Off).await;
    signing_out_other_sessions_reaches_the_other_browser(&turn, Js::Off).await;
    wrong_password_keeps_username_and_focuses_password(&turn, Js::Off).await;
    admin_pages(&turn, Js::Off).await;
}

#[tokio::test]
async fn every_page_shows_without_javascript() {
    let Some(turn) = turn().await else { return };
    let site = pages::Site::new().await;
    let browser = turn.browser(&site.app, Js::Off).await;
    let mut signed_in = None;
    for case in PAGES {
        pages::show(&browser, &site, &mut signed_in, case).await;
    }
    browser.close().await;
}
