//! Strong authentication in the browser: turning on two-step verification with codes
//! computed from the key the page shows, signing in with a code and with a recovery code,
//! re-authenticating in the middle of an admin change, and passkeys with Chromium's
//! virtual authenticator.

use portcullis::auth::Role;
use serde_json::json;
use totp_rs::{Builder, Secret};

use super::app;
use crate::{
    browser::harness::{Browser, Js, Turn},
    support::PASSWORD,
};

/// The code an authenticator app shows for `key`, `offset` steps from now.
fn code(key: &str, offset: i64) -> String {
    let secret = Secret::try_from_base32(key.trim()).expect("base32 key");
    let totp = Builder::new().with_secret(secret).build().expect("totp");
    let now = time::OffsetDateTime::now_utc().unix_timestamp() + offset * 30;
    totp.generate(u64::try_from(now).expect("time")).to_string()
}

/// 15. A member turns on two-step verification, then signs in with a code from the app,
///     and once more with a recovery code, which the account page announces.
pub(super) async fn two_step_verification(turn: &Turn, js: Js) {
    let app = app().await;
    app.create_user("tess", Role::Member).await;
    let browser = turn.browser(&app, js).await;
    browser.visit("/login").await;
    browser.sign_in("tess", PASSWORD).await;
    browser.expect_location("/account").await;
    browser
        .expect_text("Only your password protects this account.")
        .await;
    browser.click_link("Turn it on").await;
    browser.expect_heading("Two-step verification").await;
    let key = browser.find("#totp-key").await.text().await.expect("key");
    browser.fill("#code", &code(&key, 0)).await;
    browser.click_button("Turn on").await;
    browser.expect_heading("Your recovery codes").await;
    let recovery = browser
        .find("ul.codes code")
        .await
        .text()
        .await
        .expect("code");
    browser.click_link("Done").await;
    browser
        .expect_text("Signing in asks for a code from your authenticator app.")
        .await;

    browser.sign_out().await;
    browser.sign_in("tess", PASSWORD).await;
    browser.expect_path("/login/second-factor").await;
    browser.expect_heading("Two-step verification").await;
    assert_eq!(
        browser.focused_id().await,
        "code",
        "focus on the code field"
    );
    browser.fill("#code", &code(&key, 1)).await;
    browser.click_button("Verify").await;
    browser.expect_location("/account").await;

    browser.sign_out().await;
    browser.sign_in("tess", PASSWORD).await;
    browser.expect_path("/login/second-factor").await;
    browser.fill("#code", &recovery).await;
    browser.click_button("Verify").await;
    browser.expect_location("/account").await;
    browser
        .expect_text("A recovery code was used to sign in")
        .await;
    browser.expect_text("9 recovery codes left").await;
    browser.close().await;
}

/// 16. An administrator whose sign-in is older than the re-authentication window changes
///     a role: the site asks them to confirm it's them, then offers the same change again
///     and they land back on the user's page with it done.
pub(super) async fn reauthenticate_mid_change(turn: &Turn, js: Js) {
    let app = app().await;
    app.create_user("root", Role::Admin).await;
    app.create_user("nina", Role::Member).await;
    let nina = app.user_id("nina").await;
    let browser = turn.browser(&app, js).await;
    browser.visit("/login").await;
    browser.sign_in("root", PASSWORD).await;
    browser.visit(&format!("/admin/users/{nina}")).await;
    sqlx::query("UPDATE sessions SET authenticated_at = now() - interval '20 minutes'")
        .execute(&app.pool)
        .await
        .expect("age the sign-in");
    browser.choose("#role", "editor").await;
    browser.click_button("Change role").await;
    browser.expect_path("/reauth").await;
    browser.expect_heading("Confirm it’s you").await;
    browser
        .expect_text("To change a user's role, confirm your password.")
        .await;
    browser.expect_text("Nothing has been changed yet.").await;
    browser.fill("#password", PASSWORD).await;
    browser.click_button("Confirm").await;
    browser.expect_heading("Thanks, that’s confirmed").await;
    browser.click_button("Continue").await;
    browser
        .expect_location(&format!("/admin/users/{nina}?done=role_changed"))
        .await;
    browser.expect_text("Role changed.").await;
    browser.close().await;
}

/// Chromium's virtual authenticator (DevTools' WebAuthn domain): a platform passkey with
/// user verification, as a phone's or laptop's screen lock would be.
async fn virtual_authenticator(browser: &Browser) {
    browser
        .cdp("WebAuthn.enable", json!({ "enableUI": false }))
        .await;
    browser
        .cdp(
            "WebAuthn.addVirtualAuthenticator",
            json!({ "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserVerified": true,
                "automaticPresenceSimulation": true,
            } }),
        )
        .await;
}

/// 17. A member adds a passkey on the account pages, signs out, signs in with the passkey
///     alone (no username typed), then removes it, confirming it's them with the passkey.
///     Passkeys belong to `http://localhost:PORT` (an IP address cannot hold them), so the
///     journey opens the site there. Without JavaScript the passkey buttons stay hidden
///     and the pages say that passkeys need it.
pub(super) async fn passkeys(turn: &Turn, js: Js) {
    let app = app().await;
    app.create_user("pam", Role::Member).await;
    let browser = turn.browser(&app, js).await;
    let port = app.addr.port();
    let local = |path: &str| format!("http://localhost:{port}{path}");
    if js == Js::Off {
        browser.open(&local("/login")).await;
        browser.expect_heading("Sign in").await;
        assert_eq!(
            browser.count(".passkey-option:not([hidden])").await,
            0,
            "no passkey button without JavaScript"
        );
        browser.sign_in("pam", PASSWORD).await;
        browser.expect_location("/account").await;
        browser.click_link("Add a passkey").await;
        browser.expect_heading("Passkeys").await;
        browser.expect_text("needs JavaScript").await;
        assert_eq!(browser.count(".passkey-option:not([hidden])").await, 0);
        browser.close().await;
        return;
    }
    virtual_authenticator(&browser).await;
    browser.open(&local("/login")).await;
    browser.sign_in("pam", PASSWORD).await;
    browser.expect_location("/account").await;
    browser.expect_text("None yet.").await;
    browser.click_link("Add a passkey").await;
    browser.expect_heading("Passkeys").await;
    browser.fill("#passkey-name", "Virtual key").await;
    browser.click_button("Add a passkey").await;
    browser
        .expect_location("/account/passkeys?done=added")
        .await;
    browser.expect_text("Passkey added.").await;
    browser.expect_text("Virtual key").await;

    browser.sign_out().await;
    browser.expect_heading("Sign in").await;
    browser.click_button("Sign in with a passkey").await;
    browser.expect_location("/account").await;
    browser.expect_text("1 passkey.").await;

    // Later: the sign-in is older than the re-authentication window.
    sqlx::query("UPDATE sessions SET authenticated_at = now() - interval '20 minutes'")
        .execute(&app.pool)
        .await
        .expect("age the sign-in");
    browser.click_link("Manage passkeys").await;
    browser.click_button("Remove").await;
    browser.expect_path("/reauth").await;
    browser.expect_heading("Confirm it’s you").await;
    browser
        .expect_text("To remove a passkey, confirm with your passkey.")
        .await;
    browser.click_button("Confirm with your passkey").await;
    browser.expect_heading("Thanks, that’s confirmed").await;
    browser.click_button("Continue").await;
    browser
        .expect_location("/account/passkeys?done=removed")
        .await;
    browser.expect_text("You have no passkeys yet.").await;
    browser.close().await;
}
