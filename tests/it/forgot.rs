//! "Forgot your password?" against a real SMTP server on loopback: the mailed reset link
//! works; the answer never tells whether an account matched; requests are throttled per
//! typed name, per account and per client address, exactly, under simultaneous requests.

use portcullis::auth::Role;
use reqwest::{StatusCode, header::ACCEPT};

use crate::{
    mail::{app_with_mail, mailed_link},
    support::*,
};

const NEW_PASSWORD: &str = "orbit lantern cactus melody 42";
const ANSWER: &str = "If an account with a verified e-mail address matches";

/// Gives `name` a verified address (the verification itself has its tests in `mail::`).
async fn verified(app: &TestApp, name: &str, address: &str) {
    sqlx::query("UPDATE users SET email = $2, email_verified_at = now() WHERE username = $1")
        .bind(name)
        .bind(address)
        .execute(&app.pool)
        .await
        .expect("verified address");
}

/// Sends the form as a browser does (its page first, for the CSRF cookie and token);
/// returns status, headers that matter and body.
async fn ask(app: &TestApp, client: &Browser, typed: &str) -> (StatusCode, String) {
    ask_from(app, client, typed, "127.0.0.1").await
}

/// As [`ask`], from the client address `ip` (through a trusted proxy on loopback).
async fn ask_from(app: &TestApp, client: &Browser, typed: &str, ip: &str) -> (StatusCode, String) {
    let form = app.get(client, "/login/forgot").await;
    assert_eq!(form.status(), StatusCode::OK);
    let csrf = hidden_field(&form.text().await.expect("body"), "csrf").expect("csrf field");
    let response = client
        .post(app.url("/login/forgot"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .header("x-forwarded-for", ip)
        .form(&[("account", typed), ("csrf", &csrf)])
        .send()
        .await
        .expect("POST /login/forgot");
    let status = response.status();
    let cache = header(&response, "cache-control");
    let body = response.text().await.expect("body");
    (status, format!("cache-control: {cache}\n{body}"))
}

/// Mails to `address` among those received.
fn to(mails: &[Received], address: &str) -> usize {
    mails
        .iter()
        .filter(|m| m.to.iter().any(|t| t == address))
        .count()
}

#[tokio::test]
async fn a_verified_account_gets_a_reset_link_that_works() {
    let smtp = SmtpServer::start();
    let app = app_with_mail(&smtp).await;
    app.create_user("ada", Role::Member).await;
    verified(&app, "ada", "ada@example.com").await;
    let browser = app.client();
    let login = app
        .get(&browser, "/login")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        login.contains(r#"href="/login/forgot""#) && login.contains("Forgot your password?"),
        "{login}"
    );

    let (status, page) = ask(&app, &browser, "ada").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(ANSWER), "{page}");
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail.to, ["ada@example.com"]);
    assert_eq!(
        mail.header("subject").as_deref(),
        Some("Choose a new password")
    );
    let link = mailed_link(&app, &mail, "/password/new");

    // The link, opened in the same browser: choose a password, then sign in with it.
    let opened = browser.get(&link).send().await.expect("GET link");
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    let form_url = format!("http://localhost:{}{}", app.addr.port(), location(&opened));
    let form = browser
        .get(&form_url)
        .header(ACCEPT, BROWSER_ACCEPT)
        .send()
        .await
        .expect("GET form");
    assert_eq!(form.status(), StatusCode::OK);
    let csrf = hidden_field(&form.text().await.expect("body"), "csrf").expect("csrf");
    let chosen = browser
        .post(&form_url)
        .header(ACCEPT, BROWSER_ACCEPT)
        .form(&[
            ("csrf", csrf.as_str()),
            ("password", NEW_PASSWORD),
            ("confirm_password", NEW_PASSWORD),
        ])
        .send()
        .await
        .expect("POST form");
    assert!(
        chosen.status().is_redirection() || chosen.status().is_success(),
        "{}",
        describe(chosen).await
    );
    let old = app.post_login(&app.client(), "ada", PASSWORD, "").await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED, "the old password");
    let new = app.post_login(&app.client(), "ada", NEW_PASSWORD, "").await;
    assert_eq!(
        new.status(),
        StatusCode::SEE_OTHER,
        "{}",
        describe(new).await
    );

    // Named by its address (any case) works as well.
    let (_, page) = ask(&app, &app.client(), "ADA@example.com").await;
    assert!(page.contains(ANSWER), "{page}");
    assert_eq!(to(&smtp.wait_for(2).await, "ada@example.com"), 2);
    app.audit(
        "event = 'password_reset_mail_requested' AND target = 'ada' AND reason IS NULL",
        2,
    )
    .await;
    app.audit("event = 'password_reset_mail_sent' AND target = 'ada'", 2)
        .await;
}

#[tokio::test]
async fn the_answer_is_the_same_whether_or_not_an_account_matches() {
    let smtp = SmtpServer::start();
    let app = app_with_mail(&smtp).await;
    for name in ["ada", "bob", "dave"] {
        app.create_user(name, Role::Member).await;
    }
    verified(&app, "ada", "ada@example.com").await;
    verified(&app, "dave", "dave@example.com").await;
    sqlx::query("UPDATE users SET email = 'bob@example.com' WHERE username = 'bob'")
        .execute(&app.pool)
        .await
        .expect("bob's unverified address");
    portcullis::accounts::admin::disable(
        &app.pool,
        &portcullis::audit::Actor::cli(),
        app.user_id("dave").await,
    )
    .await
    .expect("disable dave");

    let (status, real) = ask(&app, &app.client(), "ada").await;
    assert_eq!(status, StatusCode::OK);
    // Unknown names and addresses, an unverified address, a disabled account.
    for typed in [
        "nobody",
        "nobody@example.com",
        "bob",
        "bob@example.com",
        "dave",
    ] {
        let (status, page) = ask(&app, &app.client(), typed).await;
        assert_eq!(status, StatusCode::OK, "{typed}");
        assert_eq!(
            page, real,
            "the answer for {typed:?} differs from a real account's"
        );
    }
    // ada's mail arrives; requests made before it sent nothing (lookups that find no one
    // take one query, ada's takes several and a mail).
    let (_, page) = ask(&app, &app.client(), "ada@example.com").await;
    assert_eq!(page, real);
    let mails = smtp.wait_for(2).await;
    assert_eq!(to(&mails, "ada@example.com"), 2, "{mails:#?}");
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let others = app
        .count(
            "SELECT count(*) FROM audit_events WHERE event LIKE 'password_reset%' \
             AND target <> 'ada'",
        )
        .await;
    assert_eq!(others, 0, "nothing recorded about anyone else");
}

#[tokio::test]
async fn simultaneous_requests_get_exactly_the_budget_and_the_same_page() {
    let smtp = SmtpServer::start();
    let app = app_with_mail(&smtp).await;
    app.create_user("ada", Role::Member).await;
    app.create_user("carl", Role::Member).await;
    verified(&app, "ada", "ada@example.com").await;
    verified(&app, "carl", "carl@example.com").await;
    let (_, expected) = ask(&app, &app.client(), "nobody").await;

    // Ten at once for one name: three mails (the name's budget), ten identical answers.
    let clients: Vec<Browser> = (0..10).map(|_| app.client()).collect();
    let answers = futures_util::future::join_all(clients.iter().map(|c| ask(&app, c, "ada"))).await;
    for (status, page) in answers {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page, expected);
    }
    assert_eq!(to(&smtp.wait_for(3).await, "ada@example.com"), 3);
    // Nothing more is coming for ada: carl's mail, asked for after, arrives alone.
    ask(&app, &app.client(), "carl").await;
    let mails = smtp.wait_for(4).await;
    assert_eq!(
        (
            to(&mails, "ada@example.com"),
            to(&mails, "carl@example.com")
        ),
        (3, 1)
    );

    // Per account, however named: carl by name twice and by address twice makes four
    // requests within each name's budget, three within the account's.
    for typed in ["carl", "carl@example.com", "CARL@example.com"] {
        ask(&app, &app.client(), typed).await;
    }
    app.audit(
        "event = 'password_reset_mail_requested' AND target = 'carl' AND reason = 'throttled'",
        1,
    )
    .await;
    let mails = smtp.wait_for(6).await;
    assert_eq!(to(&mails, "carl@example.com"), 3, "{mails:#?}");
}

#[tokio::test]
async fn one_client_address_gets_its_budget_across_names() {
    let smtp = SmtpServer::start();
    let url = smtp.url();
    let app = TestApp::spawn_with(|settings| {
        settings.mail =
            portcullis::mail::MailSettings::from_flags(Some(&url), Some(crate::mail::FROM))
                .expect("mail settings");
        settings.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    })
    .await;
    app.create_user("ada", Role::Member).await;
    app.create_user("carl", Role::Member).await;
    verified(&app, "ada", "ada@example.com").await;
    verified(&app, "carl", "carl@example.com").await;
    let client = app.client();
    let (_, expected) = ask_from(&app, &client, "nobody-0", "203.0.113.7").await;
    for n in 1..portcullis::accounts::recovery::IP_BUDGET {
        ask_from(&app, &client, &format!("nobody-{n}"), "203.0.113.7").await;
    }
    // Over the address's budget: the same page, and no mail for a real account.
    let (status, page) = ask_from(&app, &client, "ada", "203.0.113.7").await;
    assert_eq!((status, page), (StatusCode::OK, expected));
    // Another address is not held back: carl's mail arrives, and it is the only one.
    ask_from(&app, &client, "carl", "198.51.100.2").await;
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0].to, ["carl@example.com"]);
}
