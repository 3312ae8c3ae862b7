//! The journeys people take, asserted on what they see: page text, the address bar and
//! keyboard focus. Each journey is its own test with JavaScript on, and all of them run
//! again with JavaScript off (`every_journey_works_without_javascript`): the app has no
//! script at all, so nothing may depend on one.

use portcullis::{auth::Role, web::setup};

use super::{
    harness::{Browser, Js, Turn, turn},
    pages::{self, PAGES, SUPPORT_CONTACT},
};
use crate::support::{PASSWORD, TestApp};

const FORBIDDEN: &str = "You do not have access to this page";
const HELP: &str = "Signing in and access: what happened and what to do";

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

/// 3. After signing out, the back button shows no private content: the sign-in page made
///    the browser forget the site's pages (`FORGET_PAGES`; `no-store` alone no longer keeps
///    Chromium from restoring them), so it asks again and is sent to sign in.
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

/// 8. First run: the one-time setup link creates the first administrator. A too-short
///    password is refused next to the field (tied to it for screen readers, focus on it);
///    then the sign-in page says the account was created and leads to the
///    administration, and the link is dead.
async fn first_run_creates_the_admin(turn: &Turn, js: Js) {
    let app = app().await;
    let token = setup::issue_token(&app.pool)
        .await
        .expect("issue a setup token")
        .expect("no user yet");
    let link = format!("/setup?token={token}");
    let browser = turn.browser(&app, js).await;

    browser.visit(&link).await;
    browser.expect_heading("Set up Portcullis").await;
    browser.expect_text("No one can sign in yet.").await;
    assert_eq!(
        browser.value("#username").await,
        "admin",
        "a suggested name"
    );
    browser.fill("#username", "root").await;
    browser.fill("#password", "too short").await;
    browser.fill("#confirm_password", "too short").await;
    browser.click_button("Create the administrator").await;
    browser.expect_location("/setup").await;
    browser.expect_heading("Set up Portcullis").await;
    browser
        .expect_text("The administrator was not created. Check the fields marked below.")
        .await;
    let error = browser.find("#password-error").await.text().await;
    assert!(
        error
            .as_deref()
            .is_ok_and(|e| e.contains("Use at least 15 characters")),
        "the error next to the password field: {error:?}"
    );
    let described_by = browser.attr("#password", "aria-describedby").await;
    assert!(
        described_by
            .as_deref()
            .is_some_and(|ids| ids.split(' ').any(|id| id == "password-error")),
        "the password field points at its error: {described_by:?}"
    );
    assert_eq!(
        browser.attr("#password", "aria-invalid").await.as_deref(),
        Some("true")
    );
    assert_eq!(browser.value("#username").await, "root", "username kept");
    assert_eq!(
        browser.focused_id().await,
        "password",
        "focus on the field to fix"
    );

    browser.fill("#password", PASSWORD).await;
    browser.fill("#confirm_password", PASSWORD).await;
    browser.click_button("Create the administrator").await;
    browser
        .expect_location("/login?next=%2Fadmin&notice=setup_done")
        .await;
    browser.expect_heading("Sign in").await;
    browser
        .expect_text("The administrator account was created. Sign in with it.")
        .await;
    browser.expect_text("The setup link no longer works.").await;
    assert_eq!(browser.focused_id().await, "username", "focus on arrival");
    browser.sign_in("root", PASSWORD).await;
    browser.expect_location("/admin").await;
    browser.expect_heading("Users").await;
    browser.expect_text("Signed in as root").await;

    browser.visit(&link).await;
    browser.expect_heading("Page not found").await;
    browser.close().await;
}

/// Signs `member` in, opens Reports (403) and asks for the editor role with `message`;
/// the 403 page then says the request waits, and offers no second request.
async fn ask_for_the_editor_role(member: &Browser, username: &str, message: &str) {
    member.visit("/login").await;
    member.sign_in(username, PASSWORD).await;
    member.expect_location("/account").await;
    member.click_link("Reports").await;
    member.expect_location("/reports").await;
    member.expect_heading(FORBIDDEN).await;
    member.fill("#access-message", message).await;
    member.click_button("Request access").await;
    member.expect_location("/reports").await;
    member.expect_heading(FORBIDDEN).await;
    member.expect_text("You asked for the editor role on").await;
    member
        .expect_text("An administrator has not answered yet.")
        .await;
    assert_eq!(
        member.count("form[action='/access-requests']").await,
        0,
        "no second request while one waits"
    );
}

/// Signs `admin` in as ada and opens the access requests from the administration's
/// navigation, which counts the `pending` ones.
async fn open_access_requests(admin: &Browser, pending: usize) {
    admin.visit("/login").await;
    admin.sign_in("ada", PASSWORD).await;
    admin.expect_location("/account").await;
    admin.click_link("Admin").await;
    admin.expect_heading("Users").await;
    let requests = "nav.subnav a[href='/admin/requests']";
    let count = admin.find(&format!("{requests} .count")).await.text().await;
    assert!(
        count
            .as_deref()
            .is_ok_and(|c| c.starts_with(&pending.to_string())),
        "the navigation counts {pending} pending request(s): {count:?}"
    );
    admin.click(requests).await;
    admin.expect_location("/admin/requests").await;
    admin.expect_heading("Access requests").await;
}

/// 9. Request access, granted: a member asks from the 403 page; an administrator sees
///    the request and its message (counted in the administration's navigation) and
///    grants it; the member's reload opens the page.
async fn request_access_granted(turn: &Turn, js: Js) {
    let app = app().await;
    app.create_user("ada", Role::Admin).await;
    app.create_user("mara", Role::Member).await;
    let member = turn.browser(&app, js).await;
    let admin = turn.browser(&app, js).await;
    let message = "I check the monthly reports before they go out.";

    ask_for_the_editor_role(&member, "mara", message).await;

    open_access_requests(&admin, 1).await;
    admin
        .expect_text("mara (member) asks for the editor role to open /reports")
        .await;
    admin.expect_text(message).await;
    admin.click_button("Grant editor").await;
    admin.expect_location("/admin/requests?done=granted").await;
    admin
        .expect_text("Access granted. It applies from the person's next request.")
        .await;
    admin.expect_text("No pending requests.").await;
    assert_eq!(
        admin.count("nav.subnav .count").await,
        0,
        "nothing left to count"
    );

    member.reload().await;
    member.expect_location("/reports").await;
    member.expect_heading("Reports").await;
    assert_eq!(
        member
            .find("header .badge")
            .await
            .text()
            .await
            .ok()
            .as_deref(),
        Some("editor"),
        "the header shows the new role"
    );
    member.click_link("Account").await;
    member.expect_heading("Your account").await;
    member.expect_text("Your access requests").await;
    member.expect_text("granted on").await;
    admin.close().await;
    member.close().await;
}

/// 10. Request access, declined: the administrator must give a reason; the member reads
///     it on the 403 page, which offers to ask again, and on their account page.
async fn request_access_declined(turn: &Turn, js: Js) {
    let app = app().await;
    app.create_user("ada", Role::Admin).await;
    app.create_user("dora", Role::Member).await;
    let member = turn.browser(&app, js).await;
    let admin = turn.browser(&app, js).await;
    let reason = "Reports are for the finance team; ask your manager first.";

    ask_for_the_editor_role(&member, "dora", "To check my team's figures.").await;

    open_access_requests(&admin, 1).await;
    admin
        .expect_text("dora (member) asks for the editor role to open /reports")
        .await;
    admin.click_button("Decline").await;
    admin
        .expect_text("Say why you decline: the person will read it.")
        .await;
    admin
        .expect_text("dora (member) asks for the editor role")
        .await;
    // The problem is tied to the request's reason field, which has the focus.
    let note = "form[action$='/decline'] input[name=note]";
    assert_eq!(
        admin.attr(note, "aria-invalid").await.as_deref(),
        Some("true")
    );
    assert!(admin.focused_id().await.starts_with("note-"));
    admin.fill(note, reason).await;
    admin.click_button("Decline").await;
    admin.expect_location("/admin/requests?done=declined").await;
    admin
        .expect_text("Request declined. The person sees your note.")
        .await;
    admin.expect_text("No pending requests.").await;
    admin.expect_text(reason).await;

    member.reload().await;
    member.expect_location("/reports").await;
    member.expect_heading(FORBIDDEN).await;
    member
        .expect_text("Your request for the editor role was declined on")
        .await;
    member.expect_text("by ada.").await;
    member.expect_text(&format!("Reason: {reason}")).await;
    assert_eq!(
        member
            .count("form[action='/access-requests'] button[type=submit]")
            .await,
        1,
        "the person may ask again"
    );
    member.click_link("Your account").await;
    member.expect_location("/account").await;
    member.expect_text("Your access requests").await;
    member.expect_text("declined on").await;
    member.expect_text(reason).await;
    admin.close().await;
    member.close().await;
}

/// 11. A form sent after the session idled out ("Sign out all other sessions"): the
///     sign-in page says the form was not sent, and signing in leads back to the page
///     the form was on.
async fn stale_form_returns_to_its_page(turn: &Turn, js: Js) {
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
async fn demo_banner_on_every_page(turn: &Turn, js: Js) {
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
async fn help_from_401_and_403(turn: &Turn, js: Js) {
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

#[tokio::test]
async fn first_run_setup_link_creates_the_admin_then_sign_in_leads_to_admin() {
    let Some(turn) = turn().await else { return };
    first_run_creates_the_admin(&turn, Js::On).await;
}

#[tokio::test]
async fn member_requests_access_from_the_403_page_and_the_admin_grants_it() {
    let Some(turn) = turn().await else { return };
    request_access_granted(&turn, Js::On).await;
}

#[tokio::test]
async fn a_declined_request_shows_its_reason_on_the_403_and_account_pages() {
    let Some(turn) = turn().await else { return };
    request_access_declined(&turn, Js::On).await;
}

#[tokio::test]
async fn a_form_sent_after_idle_expiry_returns_to_its_page_after_sign_in() {
    let Some(turn) = turn().await else { return };
    stale_form_returns_to_its_page(&turn, Js::On).await;
}

#[tokio::test]
async fn demo_mode_shows_its_banner_on_every_page() {
    let Some(turn) = turn().await else { return };
    demo_banner_on_every_page(&turn, Js::On).await;
}

#[tokio::test]
async fn help_is_reachable_from_the_401_notice_and_the_403_page() {
    let Some(turn) = turn().await else { return };
    help_from_401_and_403(&turn, Js::On).await;
}

/// 14. Every journey, and every page, with JavaScript off.
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
    first_run_creates_the_admin(&turn, Js::Off).await;
    request_access_granted(&turn, Js::Off).await;
    request_access_declined(&turn, Js::Off).await;
    stale_form_returns_to_its_page(&turn, Js::Off).await;
    demo_banner_on_every_page(&turn, Js::Off).await;
    help_from_401_and_403(&turn, Js::Off).await;
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
