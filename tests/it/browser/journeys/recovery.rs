//! Forgetting a password, with mail on: ask from the sign-in page, read the mail, choose a
//! new password from its link, sign in with it.

use portcullis::auth::Role;

use crate::{
    browser::harness::{Js, Turn},
    mail::{app_with_mail, mailed_link},
    support::SmtpServer,
};

const NEW_PASSWORD: &str = "velvet harbor compass tundra 17";

/// 21. "Forgot your password?" from the sign-in page to signing in with the new password.
pub(super) async fn forgot_password_then_sign_in(turn: &Turn, js: Js) {
    let smtp = SmtpServer::start();
    let app = app_with_mail(&smtp).await;
    app.create_user("mia", Role::Member).await;
    sqlx::query(
        "UPDATE users SET email = 'mia@example.com', email_verified_at = now() \
         WHERE username = 'mia'",
    )
    .execute(&app.pool)
    .await
    .expect("mia's verified address");
    let browser = turn.browser(&app, js).await;

    browser.visit("/login").await;
    browser.click_link("Forgot your password?").await;
    browser.expect_location("/login/forgot").await;
    browser.expect_heading("Forgot your password?").await;
    assert_eq!(browser.focused_id().await, "account", "focus on arrival");
    browser.fill("#account", "mia").await;
    browser.click("main form button[type=submit]").await;
    browser
        .expect_text("If an account with a verified e-mail address matches")
        .await;

    // The mail, as mia reads it; its link opens the page where she chooses a password.
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail.to, ["mia@example.com"]);
    browser
        .open(&mailed_link(&app, &mail, "/password/new"))
        .await;
    browser.expect_heading("Choose your password").await;
    browser.fill("#password", NEW_PASSWORD).await;
    browser.fill("#confirm_password", NEW_PASSWORD).await;
    browser.click("main form button[type=submit]").await;
    browser.expect_heading("Sign in").await;
    browser.sign_in("mia", NEW_PASSWORD).await;
    browser.expect_path("/account").await;
    browser.expect_heading("Your account").await;
    browser.close().await;
}
