//! The administration (users, roles, signing someone out, the dashboard), the first run
//! through the setup link, and access requests from both sides.

use portcullis::{accounts::setup, auth::Role};

use super::{FORBIDDEN, app};
use crate::{
    browser::harness::{Browser, Js, Turn},
    support::PASSWORD,
};

/// 7. The administration pages: create a user (their one-time link, copied and used in
///    their own browser to choose a password and sign in), change a role, sign someone out
///    everywhere (their browser notices on its next click), and the 401/403 dashboard
///    shows its chart with the refusal just made.
pub(super) async fn admin_pages(turn: &Turn, js: Js) {
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

    // Create a user: no password typed for them; the next page shows their one-time link,
    // once, as a read-only field (and with JavaScript, a copy button).
    admin.fill("#new-username", "newbie").await;
    admin.choose("#new-role", "editor").await;
    admin.click_button("Create user").await;
    admin.expect_heading("Invitation link for newbie").await;
    let link = admin.value("#link").await;
    assert!(link.contains("/password/new?token="), "{link}");
    assert_eq!(
        admin.attr("#link", "readonly").await.as_deref(),
        Some("true")
    );
    let copy = "button[data-copy]";
    if js == Js::On {
        copy_the_link(&admin, &link).await;
    } else {
        assert_eq!(
            admin.attr(copy, "hidden").await.as_deref(),
            Some("true"),
            "no copy button that cannot work"
        );
    }

    // The newcomer opens it in their own browser, chooses a password (the policy applies),
    // and signs in with it.
    let newbie = turn.browser(&app, js).await;
    newbie.open(&link).await;
    newbie.expect_location("/password/new").await;
    newbie.expect_heading("Choose your password").await;
    newbie
        .expect_text("Welcome! Your account newbie is ready")
        .await;
    newbie.fill("#password", "too short").await;
    newbie.fill("#confirm_password", "too short").await;
    newbie.click_button("Set my password").await;
    newbie.expect_heading("Choose your password").await;
    newbie
        .expect_text("Your password was not set. Check the fields marked below.")
        .await;
    assert_eq!(
        newbie.focused_id().await,
        "password",
        "focus on the field to fix"
    );
    newbie.fill("#password", PASSWORD).await;
    newbie.fill("#confirm_password", PASSWORD).await;
    newbie.click_button("Set my password").await;
    newbie.expect_location("/login?notice=password_set").await;
    newbie
        .expect_text("Your password is set. Sign in with it.")
        .await;
    newbie.sign_in("newbie", PASSWORD).await;
    newbie.expect_location("/account").await;
    newbie.expect_text("newbie").await;
    // The link is spent.
    newbie.open(&link).await;
    newbie
        .expect_heading("This link has already been used")
        .await;
    newbie.close().await;

    admin.click_link("Back to newbie").await;
    admin.expect_heading("newbie").await;
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
pub(super) async fn first_run_creates_the_admin(turn: &Turn, js: Js) {
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
pub(super) async fn request_access_granted(turn: &Turn, js: Js) {
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
pub(super) async fn request_access_declined(turn: &Turn, js: Js) {
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

/// Presses "Copy link" and checks the clipboard holds the link (the page may read the
/// clipboard once the test grants it).
async fn copy_the_link(admin: &Browser, link: &str) {
    let origin = admin.url("");
    let origin = origin.trim_end_matches('/');
    admin
        .cdp(
            "Browser.grantPermissions",
            serde_json::json!({
                "origin": origin,
                "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"],
            }),
        )
        .await;
    // A button that stays on the page: a plain click.
    let button = admin.find("button[data-copy]").await;
    assert!(
        button.is_displayed().await.unwrap_or(false),
        "the copy button shows"
    );
    button.click().await.expect("click Copy link");
    admin
        .expect_text("Copied. Paste it into a message to the person.")
        .await;
    let copied = admin
        .client
        .execute_async(
            "navigator.clipboard.readText().then(arguments[0], () => arguments[0](''))",
            vec![],
        )
        .await
        .expect("read the clipboard");
    assert_eq!(copied.as_str(), Some(link), "the clipboard holds the link");
}
