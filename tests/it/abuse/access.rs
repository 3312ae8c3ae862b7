//! Access requests: the server, not the form, decides which role a request is for, and
//! making someone an administrator takes a second, deliberate click.

use portcullis::auth::Role;
use reqwest::StatusCode;

use crate::support::*;

async fn requested_roles(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT role FROM access_requests ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .expect("roles")
}

/// A crafted form asking for `admin` from the editors' page records a request for
/// `editor`, the role that page needs; a path under `/admin` is a request for `admin`;
/// a page the member may already open, or no page at all, records nothing.
#[tokio::test]
async fn an_access_request_is_for_the_role_the_page_needs_not_the_one_posted() {
    let app = TestApp::spawn().await;
    let member = app.user_client("mara", Role::Member).await;
    let page = app
        .get(&member, "/reports")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains(">Request access<"), "{page}");
    let csrf = hidden_field(&page, "csrf").expect("csrf");
    let response = app
        .post_form_with_csrf(
            &member,
            "/access-requests",
            &[("role", "admin"), ("path", "/reports"), ("message", "")],
            &csrf,
        )
        .await;
    assert_eq!(location(&response), "/reports");
    assert_eq!(requested_roles(&app).await, ["editor"], "the page's role");

    for path in [
        "/",
        "/account/password",
        "/nowhere",
        "https://evil.example/admin",
    ] {
        let response = app
            .post_form_with_csrf(
                &member,
                "/access-requests",
                &[("role", "admin"), ("path", path)],
                &csrf,
            )
            .await;
        assert_ne!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{path}"
        );
    }
    assert_eq!(
        requested_roles(&app).await,
        ["editor"],
        "nothing to ask for on pages a member may open or that need no role"
    );

    let response = app
        .post_form_with_csrf(
            &member,
            "/access-requests",
            &[("role", "editor"), ("path", "/admin/users/1")],
            &csrf,
        )
        .await;
    assert_eq!(location(&response), "/admin/users/1");
    assert_eq!(requested_roles(&app).await, ["editor", "admin"]);
}

/// Granting `admin` shows what it means and waits for a confirmation; until then nothing
/// changes. Other roles are granted at once.
#[tokio::test]
async fn granting_the_admin_role_asks_for_confirmation() {
    let app = TestApp::spawn().await;
    let member = app.user_client("mara", Role::Member).await;
    let boss = app.user_client("boss", Role::Admin).await;
    app.post_form(
        &member,
        "/access-requests",
        &[("role", "admin"), ("path", "/admin")],
    )
    .await;
    let (id, role): (i64, String) =
        sqlx::query_as("SELECT id, role FROM access_requests WHERE status = 'pending'")
            .fetch_one(&app.pool)
            .await
            .expect("the request");
    assert_eq!(role, "admin");
    let grant = format!("/admin/requests/{id}/grant");

    let response = app.post_form(&boss, &grant, &[]).await;
    assert_eq!(response.status(), StatusCode::OK, "a confirmation page");
    let page = response.text().await.expect("body");
    assert!(
        page.contains("mara")
            && page.contains("administrator")
            && page.contains(r#"name="confirm" value="yes""#)
            && page.contains(&format!(r#"action="{grant}""#)),
        "{page}"
    );
    let role: String = sqlx::query_scalar("SELECT role FROM users WHERE username = 'mara'")
        .fetch_one(&app.pool)
        .await
        .expect("role");
    assert_eq!(role, "member", "nothing granted before the confirmation");

    let response = app.post_form(&boss, &grant, &[("confirm", "yes")]).await;
    assert_eq!(location(&response), "/admin/requests?done=granted");
    let role: String = sqlx::query_scalar("SELECT role FROM users WHERE username = 'mara'")
        .fetch_one(&app.pool)
        .await
        .expect("role");
    assert_eq!(role, "admin");

    // The editor role needs no second click.
    let other = app.user_client("mo", Role::Member).await;
    app.post_form(
        &other,
        "/access-requests",
        &[("role", "editor"), ("path", "/reports")],
    )
    .await;
    let id: i64 = sqlx::query_scalar("SELECT id FROM access_requests WHERE status = 'pending'")
        .fetch_one(&app.pool)
        .await
        .expect("the request");
    let response = app
        .post_form(&boss, &format!("/admin/requests/{id}/grant"), &[])
        .await;
    assert_eq!(location(&response), "/admin/requests?done=granted");
}
