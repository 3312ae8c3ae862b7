//! The 401/403 contract, for every protected page × every role × browser and API clients.

use portcullis::{accounts, accounts::admin, audit::Actor};
use portcullis::{auth::Role, web::PROTECTED_PAGES};
use reqwest::StatusCode;

use crate::support::*;

/// The contract as the product states it. The app's own table must agree, and each row is
/// checked against real requests below.
const EXPECTED: [(&str, Role); 4] = [
    ("/account", Role::Member),
    ("/reports", Role::Editor),
    ("/admin", Role::Admin),
    ("/api/me", Role::Member),
];

#[test]
fn the_apps_page_table_matches_the_contract() {
    let table: Vec<(&str, Role)> = PROTECTED_PAGES.iter().map(|p| (p.path, p.role)).collect();
    assert_eq!(table, EXPECTED.to_vec());
}

#[tokio::test]
async fn anonymous_browsers_are_sent_to_sign_in_with_next_and_notice() {
    let app = TestApp::spawn().await;
    let client = app.client();
    for (path, _) in EXPECTED.iter().filter(|(p, _)| !p.starts_with("/api/")) {
        let response = app.get(&client, path).await;
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
        assert_login_redirect(response, "required", Some(path)).await;
    }
    // The query string survives the round trip.
    let response = app.get(&client, "/reports?period=week&x=%2F").await;
    assert_login_redirect(response, "required", Some("/reports?period=week&x=%2F")).await;
}

#[tokio::test]
async fn anonymous_api_clients_get_a_real_401_never_a_redirect() {
    let app = TestApp::spawn().await;
    let client = app.client();
    for (path, _) in EXPECTED {
        assert_api_401(app.get_json(&client, path).await, "no_session").await;
    }
    // /api/* is API even when the client asks for HTML.
    assert_api_401(app.get(&client, "/api/me").await, "no_session").await;
    // A non-GET without HTML in Accept is an API request too: signing out answers 204,
    // never a redirect to a login page.
    let response = client
        .post(app.url("/logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=x")
        .send()
        .await
        .expect("POST");
    assert_eq!(
        response.status(),
        StatusCode::NO_CONTENT,
        "{}",
        describe(response).await
    );
}

#[tokio::test]
async fn every_page_for_every_role_is_200_or_the_403_page() {
    let app = TestApp::spawn().await;
    for role in Role::ALL {
        let name = format!("user-{role}");
        let client = app.user_client(&name, role).await;
        for (path, required) in EXPECTED {
            let allowed = role >= required;
            // Browser.
            let response = app.get(&client, path).await;
            let status = response.status();
            let body = response.text().await.expect("body");
            if allowed {
                assert_eq!(status, StatusCode::OK, "{role} on {path}: {body}");
                assert!(body.contains(&name), "{path} should show who is signed in");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role} on {path}: {body}");
                assert!(
                    body.contains(&format!("signed in as <strong>{name}</strong>")),
                    "{body}"
                );
                assert!(
                    body.contains(&format!("<strong>{role}</strong> role")),
                    "{body}"
                );
                assert!(
                    body.contains(&format!("needs the <strong>{required}</strong> role")),
                    "{body}"
                );
                assert!(body.contains("Signing in again will not help"), "{body}");
                assert!(body.contains("Ask an administrator"), "{body}");
            }
            // API client.
            let response = app.get_json(&client, path).await;
            let status = response.status();
            let cache = response.headers().get("cache-control").cloned();
            if allowed {
                assert_eq!(status, StatusCode::OK, "{role} on {path} (API)");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role} on {path} (API)");
                assert_eq!(
                    cache.as_ref().and_then(|v| v.to_str().ok()),
                    Some("no-store")
                );
                let json: serde_json::Value = response.json().await.expect("json");
                assert_eq!(json["reason"], "insufficient_role");
                assert_eq!(json["required_role"], required.as_str());
                assert_eq!(json["role"], role.as_str());
            }
        }
    }
}

#[tokio::test]
async fn the_home_page_says_who_you_are_and_what_you_may_open() {
    let app = TestApp::spawn().await;
    let anonymous = app
        .get(&app.client(), "/")
        .await
        .text()
        .await
        .expect("body");
    assert!(anonymous.contains("You are not signed in"));
    assert_eq!(anonymous.matches("Sign in first").count(), EXPECTED.len());

    let client = app.user_client("eddie", Role::Editor).await;
    let page = app.get(&client, "/").await.text().await.expect("body");
    assert!(
        page.contains("signed in as <strong>eddie</strong> with the <strong>editor</strong> role"),
        "{page}"
    );
    assert_eq!(page.matches("You may open it").count(), 3, "{page}");
    assert!(page.contains("No — needs the admin role"), "{page}");
}

#[tokio::test]
async fn api_me_describes_the_session() {
    let app = TestApp::spawn().await;
    let client = app.user_client("Ann", Role::Member).await;
    let json: serde_json::Value = app
        .get_json(&client, "/api/me")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(json["username"], "Ann");
    assert_eq!(json["role"], "member");
    assert!(json["session"]["idle_expires_at"].is_string());
}

#[tokio::test]
async fn a_role_change_takes_effect_on_the_next_request() {
    let app = TestApp::spawn().await;
    let client = app.user_client("mia", Role::Member).await;
    assert_eq!(
        app.get(&client, "/reports").await.status(),
        StatusCode::FORBIDDEN
    );
    let user = accounts::find(&app.pool, "mia").await.expect("user");
    admin::set_role(&app.pool, &Actor::cli(), user.id, Role::Editor)
        .await
        .expect("set role");
    assert_eq!(app.get(&client, "/reports").await.status(), StatusCode::OK);
    admin::set_role(&app.pool, &Actor::cli(), user.id, Role::Member)
        .await
        .expect("set role");
    assert_eq!(
        app.get(&client, "/reports").await.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn disabling_a_user_signs_them_out_on_the_next_request() {
    let app = TestApp::spawn().await;
    let client = app.user_client("dan", Role::Member).await;
    let api = app.client();
    app.login(&api, "dan").await;
    let user = accounts::find(&app.pool, "dan").await.expect("user");
    admin::disable(&app.pool, &Actor::cli(), user.id)
        .await
        .expect("disable");
    assert_login_redirect(
        app.get(&client, "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;
    assert_api_401(app.get_json(&api, "/api/me").await, "session_revoked").await;
    // Re-enabling does not bring the old sessions back.
    admin::enable(&app.pool, &Actor::cli(), user.id)
        .await
        .expect("enable");
    assert_login_redirect(
        app.get(&client, "/account").await,
        "revoked",
        Some("/account"),
    )
    .await;
    // The account signs in again normally.
    app.login(&app.client(), "dan").await;
}

#[tokio::test]
async fn a_deleted_user_is_not_signed_in() {
    let app = TestApp::spawn().await;
    let client = app.user_client("gone", Role::Admin).await;
    sqlx::query("DELETE FROM users WHERE username = 'gone'")
        .execute(&app.pool)
        .await
        .expect("delete");
    assert_login_redirect(app.get(&client, "/admin").await, "required", Some("/admin")).await;
    assert_api_401(app.get_json(&client, "/api/me").await, "invalid_session").await;
}
