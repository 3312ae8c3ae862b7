//! Every page in each state a person meets, in one list: the accessibility check, the
//! no-JavaScript check and the screenshots all walk it. Adding a page is one line in
//! [`PAGES`].

use portcullis::{accounts::setup, auth::Role, mail::MailSettings};
use portcullis::{
    accounts::{self, admin},
    audit::Actor,
};
use reqwest::StatusCode;

use super::harness::Browser;
use crate::support::{PASSWORD, SmtpServer, TestApp, location};

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
    /// On the administration page, send "Sign out everyone" with this confirmation typed.
    SignOutEveryone(&'static str),
    /// Open a fresh setup link of the app on its first run (no user yet); with a
    /// password, send the setup form with it.
    Setup(Option<&'static str>),
    /// Sign in with this name's password: its second step (two-step verification on).
    SecondStep(&'static str),
    /// Open a fresh password link of this person (as `localhost`, the address links name);
    /// with a password, send the "choose your password" form with it.
    PasswordLink(&'static str, Option<&'static str>),
    /// Open this address as the signed-in person with a passkey registered (added for the
    /// visit and removed after it, so signing in as them stays one step).
    WithPasskey(&'static str),
}

pub struct PageCase {
    /// Screenshot file name, and the page's name in failure messages.
    pub name: &'static str,
    /// Who is signed in (`None`: nobody): one of [`PEOPLE`].
    pub who: Option<&'static str>,
    pub reach: Reach,
    /// The `h1` the page must show, so a check never runs on the wrong page.
    pub heading: &'static str,
}

const fn page(
    name: &'static str,
    who: Option<&'static str>,
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

/// The accounts of the app the pages are taken from.
const PEOPLE: [(&str, Role); 10] = [
    ("ada", Role::Admin),
    ("eddie", Role::Editor),
    ("mia", Role::Member),
    ("bob", Role::Editor),
    // Disabled.
    ("dave", Role::Member),
    // Asked for the editor role; waits for an answer.
    ("mara", Role::Member),
    // Asked for the editor role and was declined; asks for the admin role now.
    ("dora", Role::Member),
    // Has two-step verification on.
    ("tom", Role::Member),
    // Has a passkey as the second factor.
    ("pat", Role::Member),
    // Signed in on a phone and a laptop too; reads times in Paris time.
    ("lena", Role::Member),
];

use Reach::*;
const ADMIN: Option<&str> = Some("ada");
const EDITOR: Option<&str> = Some("eddie");
const MEMBER: Option<&str> = Some("mia");
const ASKING_MEMBER: Option<&str> = Some("mara");
const MEMBER_WITH_DEVICES: Option<&str> = Some("lena");
const DECLINED_MEMBER: Option<&str> = Some("dora");
const NOBODY: Option<&str> = None;

const FORBIDDEN: &str = "You do not have access to this page";
const COOKIES: &str = "Signing in needs cookies, and they are not coming back";
const SETUP: &str = "Set up Portcullis";

#[rustfmt::skip]
pub const PAGES: &[PageCase] = &[
    page("home-signed-out", NOBODY, Visit("/"), "Welcome to Portcullis"),
    page("home", EDITOR, Visit("/"), "Welcome to Portcullis"),
    page("login", NOBODY, Visit("/login"), "Sign in"),
    page("login-required", NOBODY, Visit("/reports"), "Sign in"),
    page("login-expired", NOBODY, Visit("/login?next=%2Faccount&notice=expired"), "Sign in"),
    page("login-form-expired", NOBODY, Visit("/login?next=%2Faccount&notice=form_expired"), "Sign in"),
    page("login-revoked", NOBODY, Visit("/login?notice=revoked"), "Sign in"),
    page("login-signed-out", NOBODY, Visit("/login?notice=signed_out"), "Sign in"),
    page("login-setup-done", NOBODY, Visit("/login?next=%2Fadmin&notice=setup_done"), "Sign in"),
    page("login-wrong-password", NOBODY, WrongPassword, "Sign in"),
    page("account", MEMBER, Visit("/account"), "Your account"),
    page("reports", EDITOR, Visit("/reports"), "Reports"),
    page("forbidden", MEMBER, Visit("/reports"), FORBIDDEN),
    page("forbidden-request-pending", ASKING_MEMBER, Visit("/reports"), FORBIDDEN),
    page("forbidden-request-declined", DECLINED_MEMBER, Visit("/reports"), FORBIDDEN),
    page("account-requests", DECLINED_MEMBER, Visit("/account"), "Your account"),
    page("account-devices", MEMBER_WITH_DEVICES, Visit("/account"), "Your account"),
    page("time-zone", MEMBER_WITH_DEVICES, Visit("/account/time-zone"), "Time zone"),
    page("login-session-limit", NOBODY, Visit("/login?notice=session_limit"), "Sign in"),
    page("admin-users", ADMIN, Visit("/admin"), "Users"),
    page("admin-user", ADMIN, AdminUser("mia"), "mia"),
    page("admin-confirm", ADMIN, AdminUserButton("bob", "Disable account…"), "Disable bob?"),
    page("admin-sign-out-everyone-error", ADMIN, SignOutEveryone("sign out"), "Sign out everyone"),
    page("admin-denials", ADMIN, Visit("/admin/denials"), "401/403 dashboard"),
    page("admin-audit", ADMIN, Visit("/admin/audit"), "Audit log"),
    page("admin-throttles", ADMIN, Visit("/admin/throttles"), "Sign-in throttles"),
    page("admin-requests", ADMIN, Visit("/admin/requests"), "Access requests"),
    page("help", NOBODY, Visit("/help/access"), "Signing in and access: what happened and what to do"),
    page("not-found", NOBODY, Visit("/no-such-page"), "Page not found"),
    page("cookies-refused", NOBODY, StaleSignInForm, COOKIES),
    page("cookies-not-returned", NOBODY, Visit("/login/complete?next=%2Faccount"), COOKIES),
    page("setup", NOBODY, Setup(None), SETUP),
    page("setup-errors", NOBODY, Setup(Some("too short")), SETUP),
    page("throttled", NOBODY, Throttled("mallory"), "Too many sign-in attempts"),
    page("two-factor-enrol", MEMBER, Visit("/account/two-factor"), "Two-step verification"),
    page("second-step", NOBODY, SecondStep("tom"), "Two-step verification"),
    page("login-second-step-expired", NOBODY, Visit("/login?notice=second_step_expired"), "Sign in"),
    page("reauth", ADMIN, Visit("/reauth?next=%2Fadmin"), "Confirm it’s you"),
    page("passkeys", MEMBER, Visit("/account/passkeys"), "Passkeys"),
    page("passkeys-listed", MEMBER, WithPasskey("/account/passkeys"), "Passkeys"),
    page("reauth-passkey", MEMBER, WithPasskey("/reauth?next=%2Faccount%2Fpasskeys"), "Confirm it’s you"),
    page("second-step-passkey", NOBODY, SecondStep("pat"), "Two-step verification"),
    page("account-email", MEMBER, Visit("/account/email"), "E-mail address"),
    page("forgot", NOBODY, Visit("/login/forgot"), "Forgot your password?"),
    page("email-link-stale", NOBODY, Visit("/email/verify?token=no-such-token"), "This link no longer works"),
    page("admin-user-invited", ADMIN, AdminUser(INVITED), INVITED),
    page("admin-invitation-link", ADMIN, AdminUserButton(INVITED, "New invitation link"), "Invitation link for ivy"),
    page("admin-password-link", ADMIN, AdminUserButton("bob", "Make a password link"), "Password link for bob"),
    page("password-new", NOBODY, PasswordLink(INVITED, None), "Choose your password"),
    page("password-new-errors", NOBODY, PasswordLink("eddie", Some("too short")), "Choose your password"),
    page("password-link-used", NOBODY, Visit(USED_LINK), "This link has already been used"),
    page("password-link-unknown", NOBODY, Visit("/password/new?token=cut-short"), "This link does not work"),
    page("login-password-set", NOBODY, Visit("/login?notice=password_set"), "Sign in"),
];

/// Invited by an administrator, has not chosen a password yet.
const INVITED: &str = "ivy";
/// A link mia already used (its token, as the one-time link's address).
const USED_LINK: &str = "/password/new?token=used-by-mia-already-0123456789abcdefghijklmn";

/// The person whose sign-in form is sent with a wrong password, or without its cookie.
const SIGNING_IN: &str = "mia";

/// What mara wrote when asking for the editor role.
const MARA_ASKS: &str = "I check the monthly reports before they go out.";
/// Why dora's request for the editor role was declined.
const DORA_DECLINED: &str = "Reports are for the finance team; ask your manager first.";

/// Where the pages come from: the app in use, and the same app on its first run (no user
/// yet) for the setup page.
pub struct Site {
    pub app: TestApp,
    first_run: TestApp,
}

impl Site {
    pub async fn new() -> Site {
        Site {
            app: app().await,
            first_run: TestApp::spawn_with(|settings| {
                settings.support_contact = Some(SUPPORT_CONTACT.to_owned());
            })
            .await,
        }
    }
}

/// The app with a support contact, a few accounts, a few refusals and access requests, so
/// pages (the denials dashboard and the requests too) look as in real use.
pub async fn app() -> TestApp {
    // Mail on (to a loopback SMTP server that keeps what it gets), so the pages show their
    // e-mail parts: "Forgot your password?", the account's address.
    let smtp = SmtpServer::start();
    let app = TestApp::spawn_with(|settings| {
        settings.support_contact = Some(SUPPORT_CONTACT.to_owned());
        settings.mail = MailSettings::from_flags(Some(&smtp.url()), Some(crate::mail::FROM))
            .expect("mail settings");
        // The sign-in page with its "Keep me signed in" box.
        settings.remember = Some(time::Duration::days(30));
    })
    .await;
    for (name, role) in PEOPLE {
        app.create_user(name, role).await;
    }
    let dave = accounts::find(&app.pool, "dave")
        .await
        .expect("dave exists");
    admin::disable(&app.pool, &Actor::cli(), dave.id)
        .await
        .expect("disable dave");
    // Refusals for the dashboard: a member on editors' and admins' pages (403), someone
    // not signed in (401), a wrong password (401).
    let mia = app.client();
    app.login(&mia, "mia").await;
    for path in ["/reports", "/admin", "/reports"] {
        app.get(&mia, path).await;
    }
    app.get(&app.client(), "/account").await;
    app.post_login(&app.client(), "mia", "not the password", "")
        .await;
    app.audit("status = 403", 3).await;
    request_access(&app).await;
    // tom's authenticator app holds the RFC 6238 test key.
    sqlx::query(
        "INSERT INTO totp_credentials (user_id, secret, enabled_at) \
         SELECT id, '12345678901234567890'::bytea, now() FROM users WHERE username = 'tom'",
    )
    .execute(&app.pool)
    .await
    .expect("tom's second factor");
    add_passkey(&app, "pat").await;
    sqlx::query(
        "UPDATE users SET email = 'mia@example.com', email_verified_at = now() \
         WHERE username = 'mia'",
    )
    .execute(&app.pool)
    .await
    .expect("mia's address");
    admin::invite(
        &app.pool,
        &Actor::cli(),
        INVITED,
        Role::Member,
        time::Duration::hours(24),
    )
    .await
    .expect("invite ivy");
    // A link that was used: stored as the links are (the SHA-256 of its token).
    sqlx::query(
        "INSERT INTO password_links (token_hash, user_id, purpose, issued_by, expires_at, used_at) \
         SELECT sha256(convert_to($1, 'UTF8')), id, 'reset', 'ada', now() + interval '1 day', now() \
         FROM users WHERE username = 'mia'",
    )
    .bind(USED_LINK.rsplit('=').next().unwrap_or_default())
    .execute(&app.pool)
    .await
    .expect("mia's used link");
    other_devices(&app, "lena").await;
    app
}

/// `name` signed in on an iPhone and a Windows laptop too, with Paris time chosen.
async fn other_devices(app: &TestApp, name: &str) {
    for agent in [
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1_1 like Mac OS X) AppleWebKit/605.1.15 \
         (KHTML, like Gecko) Version/18.1.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    ] {
        let device = app.client();
        let csrf = app.login_csrf(&device).await;
        let response = device
            .post(app.url("/login"))
            .header(reqwest::header::ACCEPT, crate::support::BROWSER_ACCEPT)
            .header(reqwest::header::USER_AGENT, agent)
            .form(&[("username", name), ("password", PASSWORD), ("csrf", &csrf)])
            .send()
            .await
            .expect("POST /login");
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "{name} on {agent}"
        );
    }
    // The phone was used a while ago: the page says so in words.
    sqlx::query(
        "UPDATE sessions SET last_seen_at = now() - interval '3 hours', \
                created_at = now() - interval '5 hours' \
         WHERE user_agent LIKE '%iPhone%'",
    )
    .execute(&app.pool)
    .await
    .expect("age the phone's session");
    sqlx::query("UPDATE users SET time_zone = 'Europe/Paris' WHERE username = $1")
        .bind(name)
        .execute(&app.pool)
        .await
        .expect("Paris time");
}

/// A passkey row for `name` (listed and counted as a second factor; no ceremony runs on
/// these pages, so its key material does not matter).
async fn add_passkey(app: &TestApp, name: &str) {
    sqlx::query(
        "INSERT INTO passkeys (user_id, credential_id, name, credential) \
         SELECT id, convert_to(username, 'UTF8'), 'Work laptop', '{}'::jsonb \
         FROM users WHERE username = $1 ON CONFLICT (credential_id) DO NOTHING",
    )
    .bind(name)
    .execute(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{name}'s passkey: {e}"));
}

/// Access requests, made and answered as people do (the forms, over HTTP): mara's waits;
/// dora's for the editor role was declined, and she has asked for the admin role since.
async fn request_access(app: &TestApp) {
    let ask = async |client: &crate::support::Browser, role: &str, path: &str, message: &str| {
        let response = app
            .post_form(
                client,
                "/access-requests",
                &[("role", role), ("path", path), ("message", message)],
            )
            .await;
        assert_eq!(
            (response.status(), location(&response)),
            (StatusCode::SEE_OTHER, path.to_owned()),
            "asking for the {role} role"
        );
    };
    let [mara, dora, ada] = [app.client(), app.client(), app.client()];
    for (client, name) in [(&mara, "mara"), (&dora, "dora"), (&ada, "ada")] {
        app.login(client, name).await;
    }
    ask(&mara, "editor", "/reports", MARA_ASKS).await;
    ask(&dora, "editor", "/reports", "").await;
    let id: i64 = sqlx::query_scalar(
        "SELECT r.id FROM access_requests r JOIN users u ON u.id = r.user_id \
         WHERE u.username = 'dora' AND r.role = 'editor'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("dora's request");
    let response = app
        .post_form(
            &ada,
            &format!("/admin/requests/{id}/decline"),
            &[("note", DORA_DECLINED)],
        )
        .await;
    assert_eq!(
        location(&response),
        "/admin/requests?done=declined",
        "ada declines dora's request"
    );
    ask(&dora, "admin", "/admin", "To add the new starters myself.").await;
}

/// Walks `browser` to `case`'s page, signing in or out first as needed. `signed_in`
/// tracks who is signed in between calls.
pub async fn show(
    browser: &Browser,
    site: &Site,
    signed_in: &mut Option<&'static str>,
    case: &PageCase,
) {
    if *signed_in != case.who {
        browser.forget_cookies().await;
        *signed_in = None;
        if let Some(name) = case.who {
            browser.visit("/login").await;
            browser.sign_in(name, PASSWORD).await;
            browser.expect_path("/account").await;
            *signed_in = Some(name);
        }
    }
    match case.reach {
        Visit(path) => browser.visit(path).await,
        WrongPassword => {
            browser.visit("/login").await;
            browser.sign_in(SIGNING_IN, "not the password").await;
        }
        StaleSignInForm => {
            browser.visit("/login").await;
            browser
                .client
                .delete_all_cookies()
                .await
                .expect("delete cookies");
            browser.sign_in(SIGNING_IN, PASSWORD).await;
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
        SecondStep(name) => {
            browser.visit("/login").await;
            browser.sign_in(name, PASSWORD).await;
        }
        WithPasskey(path) => {
            let name = case.who.expect("a signed-in person");
            add_passkey(&site.app, name).await;
            browser.visit(path).await;
            browser.expect_heading(case.heading).await;
            sqlx::query(
                "DELETE FROM passkeys WHERE user_id = (SELECT id FROM users WHERE username = $1)",
            )
            .bind(name)
            .execute(&site.app.pool)
            .await
            .expect("remove the passkey again");
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
        PasswordLink(name, password) => {
            let user = accounts::find(&site.app.pool, name)
                .await
                .expect("the person");
            let issued = admin::reset_link(
                &site.app.pool,
                &Actor::cli(),
                user.id,
                time::Duration::hours(24),
            )
            .await
            .expect("issue a link");
            browser
                .open(issued.url(&site.app.settings.site_url).as_str())
                .await;
            if let Some(password) = password {
                browser.expect_heading(case.heading).await;
                browser.fill("#password", password).await;
                browser.fill("#confirm_password", password).await;
                browser.click_button("Set my password").await;
            }
        }
        SignOutEveryone(typed) => {
            browser.visit("/admin").await;
            browser.fill("#everyone-confirmation", typed).await;
            browser.click_button("Sign out everyone").await;
        }
        Setup(password) => {
            let token = setup::issue_token(&site.first_run.pool)
                .await
                .expect("issue a setup token")
                .expect("the first-run app has no user");
            // As `localhost`, not 127.0.0.1: cookies ignore the port, and the two apps'
            // cookies (same names) must not meet.
            let port = site.first_run.addr.port();
            browser
                .open(&format!("http://localhost:{port}/setup?token={token}"))
                .await;
            if let Some(password) = password {
                browser.expect_heading(case.heading).await;
                browser.fill("#password", password).await;
                browser.fill("#confirm_password", password).await;
                browser.click_button("Create the administrator").await;
            }
        }
    }
    // The page must be the one named, before anything looks at it.
    browser.expect_heading(case.heading).await;
}
