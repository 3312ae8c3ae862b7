//! Every page in each state a person meets, in one list: the accessibility check, the
//! no-JavaScript check and the screenshots all walk it. Adding a page is one line in
//! [`PAGES`].

use portcullis::auth::{Role, users};

use super::harness::Browser;
use crate::support::{PASSWORD, TestApp};

/// What the pages show as the operator's support contact (`--support-contact`).
pub const SUPPORT_CONTACT: &str = "it-help@example.com";

/// How a person gets to a page state.
#[derive(Debug, Clone, Copy)]
pub enum Reach {
    /// Open this address (following redirects, as a browser does).
    Visit(&'static str),
    /// Send the sign-in form with a wrong password.
    WrongPassword,
    /// Send the sign-in form after its cookie was lost: the "cookies refused" page.
    StaleSignInForm,
    /// Fail to sign in as this name until sign-in is throttled.
    Throttled(&'static str),
    /// From the administration's user list, open this user's page.
    AdminUser(&'static str),
    /// On this user's administration page, press the button with this text.
    AdminUserButton(&'static str, &'static str),
}

pub struct PageCase {
    /// Screenshot file name, and the page's name in failure messages.
    pub name: &'static str,
    /// Who is signed in (`None`: nobody).
    pub who: Option<Role>,
    pub reach: Reach,
    /// The `h1` the page must show, so a check never runs on the wrong page.
    pub heading: &'static str,
}

const fn page(
    name: &'static str,
    who: Option<Role>,
    reach: Reach,
    heading: &'static str,
) -> PageCase {
    PageCase {
        name,
        who,
        reach,
        heading,
    }
}

use Reach::*;
const ADMIN: Option<Role> = Some(Role::Admin);
const EDITOR: Option<Role> = Some(Role::Editor);
const MEMBER: Option<Role> = Some(Role::Member);
const NOBODY: Option<Role> = None;

#[rustfmt::skip]
pub const PAGES: &[PageCase] = &[
    page("home-signed-out", NOBODY, Visit("/"), "Welcome to Portcullis"),
    page("home", EDITOR, Visit("/"), "Welcome to Portcullis"),
    page("login", NOBODY, Visit("/login"), "Sign in"),
    page("login-required", NOBODY, Visit("/reports"), "Sign in"),
    page("login-expired", NOBODY, Visit("/login?next=%2Faccount&notice=expired"), "Sign in"),
    page("login-revoked", NOBODY, Visit("/login?notice=revoked"), "Sign in"),
    page("login-signed-out", NOBODY, Visit("/login?notice=signed_out"), "Sign in"),
    page("login-wrong-password", NOBODY, WrongPassword, "Sign in"),
    page("account", MEMBER, Visit("/account"), "Your account"),
    page("reports", EDITOR, Visit("/reports"), "Reports"),
    page("forbidden", MEMBER, Visit("/reports"), "You do not have access to this page"),
    page("admin-users", ADMIN, Visit("/admin"), "Users"),
    page("admin-user", ADMIN, AdminUser("mia"), "mia"),
    page("admin-confirm", ADMIN, AdminUserButton("bob", "Disable account…"), "Disable bob?"),
    page("admin-denials", ADMIN, Visit("/admin/denials"), "401/403 dashboard"),
    page("admin-audit", ADMIN, Visit("/admin/audit"), "Audit log"),
    page("admin-throttles", ADMIN, Visit("/admin/throttles"), "Sign-in throttles"),
    page("admin-requests", ADMIN, Visit("/admin/requests"), "Access requests"),
    page("help", NOBODY, Visit("/help/access"), "Signing in and access: what happened and what to do"),
    page("not-found", NOBODY, Visit("/no-such-page"), "Page not found"),
    page("cookies-refused", NOBODY, StaleSignInForm, "Signing in needs cookies, and they are not coming back"),
    page("throttled", NOBODY, Throttled("mallory"), "Too many sign-in attempts"),
];

/// The person signed in for each role.
pub fn username(role: Role) -> &'static str {
    match role {
        Role::Admin => "ada",
        Role::Editor => "eddie",
        Role::Member => "mia",
    }
}

/// The app with a support contact, a few accounts and a few refusals, so pages (the
/// denials dashboard too) look as in real use.
pub async fn app() -> TestApp {
    let app = TestApp::spawn_with(|settings| {
        settings.support_contact = Some(SUPPORT_CONTACT.to_owned());
    })
    .await;
    for role in [Role::Admin, Role::Editor, Role::Member] {
        app.create_user(username(role), role).await;
    }
    app.create_user("bob", Role::Editor).await;
    app.create_user("dave", Role::Member).await;
    let dave = users::find(&app.pool, "dave").await.expect("dave exists");
    users::disable(&app.pool, dave.id)
        .await
        .expect("disable dave");
    // Refusals for the dashboard: a member on editors' and admins' pages (403), someone
    // not signed in (401), a wrong password (401).
    let mia = app.client();
    app.login(&mia, username(Role::Member)).await;
    for path in ["/reports", "/admin", "/reports"] {
        app.get(&mia, path).await;
    }
    app.get(&app.client(), "/account").await;
    app.post_login(&app.client(), "mia", "not the password", "")
        .await;
    app.audit("status = 403", 3).await;
    app
}

/// Walks `browser` to `case`'s page, signing in or out first as needed. `signed_in`
/// tracks who is signed in between calls.
pub async fn show(browser: &Browser, signed_in: &mut Option<Role>, case: &PageCase) {
    if *signed_in != case.who {
        browser
            .client
            .delete_all_cookies()
            .await
            .expect("delete cookies");
        *signed_in = None;
        if let Some(role) = case.who {
            browser.visit("/login").await;
            browser.sign_in(username(role), PASSWORD).await;
            browser.expect_path("/account").await;
            *signed_in = Some(role);
        }
    }
    match case.reach {
        Visit(path) => browser.visit(path).await,
        WrongPassword => {
            browser.visit("/login").await;
            browser
                .sign_in(username(Role::Member), "not the password")
                .await;
        }
        StaleSignInForm => {
            browser.visit("/login").await;
            browser
                .client
                .delete_all_cookies()
                .await
                .expect("delete cookies");
            browser.sign_in(username(Role::Member), PASSWORD).await;
        }
        Throttled(name) => {
            browser.visit("/login").await;
            for _ in 0..10 {
                if browser.heading().await == case.heading {
                    break;
                }
                browser.sign_in(name, "not the password").await;
            }
        }
        AdminUser(name) => {
            browser.visit("/admin").await;
            browser.click_link(name).await;
        }
        AdminUserButton(name, button) => {
            browser.visit("/admin").await;
            browser.click_link(name).await;
            browser.expect_heading(name).await;
            browser.click_button(button).await;
        }
    }
    // The page must be the one named, before anything looks at it.
    browser.expect_heading(case.heading).await;
}
