//! Optional e-mail (`--smtp-url`), against a real SMTP server on loopback: the account's
//! address and its verification link. Nothing about e-mail exists without SMTP.

use portcullis::{auth::Role, mail::MailSettings};
use reqwest::StatusCode;

use crate::support::*;

pub const FROM: &str = "Portcullis <login@portcullis.test>";

/// The app with mail going to `smtp`.
pub async fn app_with_mail(smtp: &SmtpServer) -> TestApp {
    let url = smtp.url();
    TestApp::spawn_with(|settings| {
        settings.mail = MailSettings::from_flags(Some(&url), Some(FROM)).expect("mail settings");
    })
    .await
}

/// The link a mail carries to `path` of `app` (links point at `http://localhost:PORT`,
/// the site's own address without `--public-url`).
pub fn mailed_link(app: &TestApp, mail: &Received, path: &str) -> String {
    let prefix = format!("http://localhost:{}{path}?token=", app.addr.port());
    mail.link(&prefix)
        .unwrap_or_else(|| panic!("no {prefix}… link in the mail:\n{}", mail.text()))
}

/// Makes every session of `name` look signed in `minutes` ago (no sleeping).
async fn age_authentication(app: &TestApp, name: &str, minutes: i32) {
    sqlx::query(
        "UPDATE sessions SET authenticated_at = now() - make_interval(mins => $2) \
         WHERE user_id = (SELECT id FROM users WHERE username = $1)",
    )
    .bind(name)
    .bind(minutes)
    .execute(&app.pool)
    .await
    .expect("age the sign-in");
}

async fn page(app: &TestApp, client: &reqwest::Client, path: &str) -> (StatusCode, String) {
    let response = app.get(client, path).await;
    let status = response.status();
    (status, response.text().await.expect("body"))
}

/// The address of `name` and whether it is verified.
pub async fn address_of(app: &TestApp, name: &str) -> (Option<String>, bool) {
    sqlx::query_as("SELECT email, email_verified_at IS NOT NULL FROM users WHERE username = $1")
        .bind(name)
        .fetch_one(&app.pool)
        .await
        .expect("user")
}

/// Adds `address` to the signed-in `browser`'s account and returns the verification mail.
pub async fn add_address(
    app: &TestApp,
    smtp: &SmtpServer,
    browser: &Browser,
    address: &str,
) -> Received {
    let before = smtp.received().len();
    let response = app
        .post_form(browser, "/account/email", &[("email", address)])
        .await;
    assert_eq!(
        (response.status(), location(&response)),
        (StatusCode::SEE_OTHER, "/account/email?done=sent".to_owned()),
        "{}",
        describe(response).await
    );
    let mails = smtp.wait_for(before + 1).await;
    mails[before].clone()
}

#[tokio::test]
async fn without_smtp_nothing_mentions_email() {
    let app = TestApp::spawn().await;
    let (_, login) = page(&app, &app.client(), "/login").await;
    assert!(
        !login.contains("Forgot") && !login.contains("/login/forgot"),
        "{login}"
    );
    let ada = app.user_client("ada", Role::Member).await;
    let (_, account) = page(&app, &ada, "/account").await;
    assert!(
        !account.contains("E-mail") && !account.contains("/account/email"),
        "{account}"
    );
    for path in ["/account/email", "/login/forgot", "/email/verify?token=x"] {
        let (status, _) = page(&app, &ada, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let response = app
        .post_form(&ada, "/account/email", &[("email", "ada@example.com")])
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(address_of(&app, "ada").await, (None, false));
    let admin = app.user_client("root", Role::Admin).await;
    let (_, users) = page(&app, &admin, "/admin").await;
    assert!(!users.contains(r#"name="email""#), "{users}");
    let ada_id = app.user_id("ada").await;
    let link = app
        .post_form(&admin, &format!("/admin/users/{ada_id}/password-link"), &[])
        .await;
    let link = link.text().await.expect("body");
    assert!(
        link.contains("One-time link") && !link.contains("e-mail"),
        "{link}"
    );
}

#[tokio::test]
async fn an_address_is_verified_by_its_mailed_link_once() {
    let smtp = SmtpServer::start();
    let app = app_with_mail(&smtp).await;
    let ada = app.user_client("ada", Role::Member).await;
    let (_, account) = page(&app, &ada, "/account").await;
    assert!(
        account.contains("E-mail address") && account.contains("Add an address"),
        "{account}"
    );

    let mail = add_address(&app, &smtp, &ada, "  Ada@Example.com ").await;
    assert_eq!(mail.to, ["Ada@Example.com"]);
    assert_eq!(mail.from, "login@portcullis.test");
    assert_eq!(
        mail.header("subject").as_deref(),
        Some("Confirm your e-mail address")
    );
    assert!(mail.text().contains("24 hours"), "{}", mail.text());
    assert_eq!(
        address_of(&app, "ada").await,
        (Some("Ada@Example.com".into()), false)
    );
    let (_, account) = page(&app, &ada, "/account").await;
    assert!(account.contains("not verified yet"), "{account}");

    // Opened anywhere (here a browser that is not signed in): the link carries everything.
    let link = mailed_link(&app, &mail, "/email/verify");
    let elsewhere = app.bare_client();
    let opened = elsewhere.get(&link).send().await.expect("GET link");
    assert_eq!(opened.status(), StatusCode::OK);
    let text = opened.text().await.expect("body");
    assert!(
        text.contains("Address confirmed") && text.contains("Ada@Example.com"),
        "{text}"
    );
    assert_eq!(
        address_of(&app, "ada").await,
        (Some("Ada@Example.com".into()), true)
    );
    let (_, account) = page(&app, &ada, "/account").await;
    assert!(account.contains("(verified)"), "{account}");
    // Typing the verified address again changes nothing (and sends nothing).
    let again = app
        .post_form(&ada, "/account/email", &[("email", "ada@example.COM")])
        .await;
    assert_eq!(location(&again), "/account/email?done=unchanged");
    assert_eq!(
        address_of(&app, "ada").await,
        (Some("Ada@Example.com".into()), true)
    );

    // Once only.
    let again = elsewhere.get(&link).send().await.expect("GET link");
    assert_eq!(again.status(), StatusCode::GONE);
    let text = again.text().await.expect("body");
    assert!(text.contains("This link no longer works"), "{text}");
    app.audit("event = 'email_added' AND username = 'ada'", 1)
        .await;
    app.audit("event = 'email_sent' AND target = 'ada'", 1)
        .await;
    let verified = app
        .audit("event = 'email_verified' AND target = 'ada'", 1)
        .await;
    assert_eq!(verified.len(), 1, "{verified:#?}");
}

#[tokio::test]
async fn a_new_address_needs_a_recent_sign_in_and_voids_the_older_link() {
    let smtp = SmtpServer::start();
    let app = app_with_mail(&smtp).await;
    let ada = app.user_client("ada", Role::Member).await;
    let first = add_address(&app, &smtp, &ada, "ada@example.com").await;

    age_authentication(&app, "ada", 11).await;
    let response = app
        .post_form(&ada, "/account/email", &[("email", "ada@elsewhere.test")])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&response).starts_with("/reauth"),
        "{}",
        location(&response)
    );
    assert_eq!(
        address_of(&app, "ada").await,
        (Some("ada@example.com".into()), false),
        "nothing changed before re-authentication"
    );

    age_authentication(&app, "ada", 0).await;
    let second = add_address(&app, &smtp, &ada, "ada@elsewhere.test").await;
    assert_eq!(second.to, ["ada@elsewhere.test"]);
    let old = app
        .bare_client()
        .get(mailed_link(&app, &first, "/email/verify"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        old.status(),
        StatusCode::GONE,
        "the replaced address's link"
    );
    assert_eq!(
        address_of(&app, "ada").await,
        (Some("ada@elsewhere.test".into()), false)
    );
    app.audit("event = 'email_changed' AND username = 'ada'", 1)
        .await;

    // A typo is answered on the page, and nothing is sent.
    let response = app
        .post_form(&ada, "/account/email", &[("email", "ada at example")])
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let text = response.text().await.expect("body");
    assert!(text.contains("not an e-mail address"), "{text}");
}

#[tokio::test]
async fn an_address_verified_by_one_account_is_refused_to_another_and_can_be_removed() {
    let smtp = SmtpServer::start();
    let app = app_with_mail(&smtp).await;
    let ada = app.user_client("ada", Role::Member).await;
    let bob = app.user_client("bob", Role::Member).await;
    // Both may claim it (nobody can squat an address); only the first to verify gets it.
    let to_ada = add_address(&app, &smtp, &ada, "shared@example.com").await;
    let to_bob = add_address(&app, &smtp, &bob, "SHARED@example.com").await;
    let client = app.bare_client();
    let ok = client
        .get(mailed_link(&app, &to_ada, "/email/verify"))
        .send()
        .await
        .expect("GET");
    assert_eq!(ok.status(), StatusCode::OK);
    let taken = client
        .get(mailed_link(&app, &to_bob, "/email/verify"))
        .send()
        .await
        .expect("GET");
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    let text = taken.text().await.expect("body");
    assert!(text.contains("already the verified address"), "{text}");
    assert!(
        !address_of(&app, "bob").await.1,
        "bob's address stays unverified"
    );

    let response = app.post_form(&ada, "/account/email/remove", &[]).await;
    assert_eq!(location(&response), "/account/email?done=removed");
    assert_eq!(address_of(&app, "ada").await, (None, false));
    app.audit("event = 'email_removed' AND username = 'ada'", 1)
        .await;
}

/// `config check` shows the SMTP server without its password, warns about plain SMTP to
/// another host, and refuses an unusable URL or a missing sender, still without the
/// password.
#[tokio::test]
async fn config_check_masks_the_smtp_password_and_warns_about_plain_smtp() {
    let check = |extra: &[&str]| {
        let mut args = vec![
            "config",
            "check",
            "--data-dir",
            "/tmp/portcullis-config-check-none",
        ];
        args.extend_from_slice(extra);
        let output = portcullis(&args).output().expect("run");
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let (ok, text) = check(&[
        "--smtp-url",
        "smtp://mailer:s3cretpw@mail.example.com:25",
        "--mail-from",
        FROM,
    ]);
    assert!(!ok, "a warning is an exit status 1: {text}");
    assert!(
        text.contains("smtp://mailer:****@mail.example.com:25")
            && !text.contains("s3cretpw")
            && text.contains("without required TLS")
            && text.contains("links in mails point at http://localhost"),
        "{text}"
    );
    let (_, text) = check(&[
        "--smtp-url",
        "smtps://mailer:s3cretpw@mail.example.com:465",
        "--mail-from",
        FROM,
        "--public-url",
        "https://login.example.com",
    ]);
    assert!(
        !text.contains("without required TLS") && !text.contains("s3cretpw"),
        "{text}"
    );
    for (extra, says) in [
        (
            &["--smtp-url", "smtp://mailer:s3cretpw@mail.example.com:25"][..],
            "needs --mail-from",
        ),
        (
            &[
                "--smtp-url",
                "smtp://mailer:s3cretpw@mail.example.com:25?tls=sometimes",
                "--mail-from",
                FROM,
            ][..],
            "--smtp-url smtp://mailer:****@",
        ),
    ] {
        let (ok, text) = check(extra);
        assert!(
            !ok && text.contains(says) && !text.contains("s3cretpw"),
            "{extra:?}: {text}"
        );
    }
}

/// The value of the input `id` on a page.
fn input_value(page: &str, id: &str) -> Option<String> {
    let start = page.find(&format!("id=\"{id}\""))?;
    let rest = &page[start..];
    let value = rest.find("value=\"")? + "value=\"".len();
    let end = rest[value..].find('"')? + value;
    Some(rest[value..end].replace("&amp;", "&"))
}

#[tokio::test]
async fn an_invitation_can_be_mailed_to_the_address_typed_when_inviting() {
    let smtp = SmtpServer::start();
    let app = app_with_mail(&smtp).await;
    let admin = app.user_client("root", Role::Admin).await;
    let (_, users) = page(&app, &admin, "/admin").await;
    assert!(users.contains(r#"name="email""#), "{users}");

    let created = app
        .post_form(
            &admin,
            "/admin/users",
            &[
                ("username", "ivy"),
                ("role", "member"),
                ("email", "ivy@example.com"),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::OK);
    let page_text = created.text().await.expect("body");
    assert!(
        page_text.contains("Send the link by e-mail to ivy@example.com"),
        "{page_text}"
    );
    assert_eq!(
        address_of(&app, "ivy").await,
        (Some("ivy@example.com".into()), false)
    );
    let shown = input_value(&page_text, "link").expect("the link is shown");
    let token = hidden_field(&page_text, "token").expect("the mail form's token");
    let ivy = app.user_id("ivy").await;
    let sent = app
        .post_form(
            &admin,
            &format!("/admin/users/{ivy}/link/mail"),
            &[("token", &token)],
        )
        .await;
    assert_eq!(
        location(&sent),
        format!("/admin/users/{ivy}?done=link_mailed")
    );
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail.to, ["ivy@example.com"]);
    assert_eq!(
        mail.header("subject").as_deref(),
        Some("Your new account: choose your password")
    );
    assert_eq!(mailed_link(&app, &mail, "/password/new"), shown);
    app.audit(
        "event = 'password_link_mail_sent' AND username = 'root' AND target = 'ivy' \
         AND reason = 'invite'",
        1,
    )
    .await;
    app.audit(
        "event = 'email_added' AND username = 'root' AND target = 'ivy'",
        1,
    )
    .await;

    // A token that is not a live link of this user is not mailed.
    let refused = app
        .post_form(
            &admin,
            &format!("/admin/users/{ivy}/link/mail"),
            &[("token", "not-a-token")],
        )
        .await;
    assert_eq!(
        location(&refused),
        format!("/admin/users/{ivy}?done=link_not_mailed")
    );
}

#[tokio::test]
async fn a_reset_link_is_offered_by_mail_only_to_a_verified_address() {
    let smtp = SmtpServer::start();
    let app = app_with_mail(&smtp).await;
    let admin = app.user_client("root", Role::Admin).await;
    app.create_user("mia", Role::Member).await;
    app.create_user("eve", Role::Member).await;
    let [mia, eve] = [app.user_id("mia").await, app.user_id("eve").await];
    sqlx::query("UPDATE users SET email = 'mia@example.com' WHERE id = $1")
        .bind(mia)
        .execute(&app.pool)
        .await
        .expect("mia's unverified address");
    let link_page = async |id: i64| {
        let response = app
            .post_form(&admin, &format!("/admin/users/{id}/password-link"), &[])
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("body")
    };
    let unverified = link_page(mia).await;
    assert!(
        !unverified.contains("Send the link by e-mail"),
        "{unverified}"
    );

    sqlx::query("UPDATE users SET email_verified_at = now() WHERE id = $1")
        .bind(mia)
        .execute(&app.pool)
        .await
        .expect("verified");
    let verified = link_page(mia).await;
    assert!(
        verified.contains("Send the link by e-mail to mia@example.com"),
        "{verified}"
    );
    let token = hidden_field(&verified, "token").expect("token");
    // Not to another user's address: the token must be a live link of the user in the path.
    let wrong = app
        .post_form(
            &admin,
            &format!("/admin/users/{eve}/link/mail"),
            &[("token", &token)],
        )
        .await;
    assert_eq!(
        location(&wrong),
        format!("/admin/users/{eve}?done=link_not_mailed")
    );
    let sent = app
        .post_form(
            &admin,
            &format!("/admin/users/{mia}/link/mail"),
            &[("token", &token)],
        )
        .await;
    assert_eq!(
        location(&sent),
        format!("/admin/users/{mia}?done=link_mailed")
    );
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail.to, ["mia@example.com"]);
    assert!(
        mail.text().contains("an administrator sent you a link"),
        "{}",
        mail.text()
    );
    assert_eq!(
        mailed_link(&app, &mail, "/password/new"),
        input_value(&verified, "link").expect("shown link")
    );
    assert_eq!(smtp.received().len(), 1, "nothing went to eve");
}

#[tokio::test]
async fn an_unreachable_smtp_server_fails_the_mail_in_the_audit_trail_not_the_page() {
    // A port nothing listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("smtp://127.0.0.1:{port}");
    let app = TestApp::spawn_with(|settings| {
        settings.mail = MailSettings::from_flags(Some(&url), Some(FROM)).expect("mail settings");
    })
    .await;
    let ada = app.user_client("ada", Role::Member).await;
    let response = app
        .post_form(&ada, "/account/email", &[("email", "ada@example.com")])
        .await;
    assert_eq!(location(&response), "/account/email?done=sent");
    let failed = app
        .audit("event = 'email_failed' AND target = 'ada'", 1)
        .await;
    assert_eq!(failed[0].reason.as_deref(), Some("smtp_unavailable"));
    let (status, text) = page(&app, &ada, "/account/email").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("not verified yet") && !text.contains("127.0.0.1"),
        "{text}"
    );
}
