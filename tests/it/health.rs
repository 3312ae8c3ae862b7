//! Liveness and readiness, and what a page that needs the database does without it.

use portcullis::auth::Role;
use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn healthz_and_readyz_answer_without_a_session() {
    let app = TestApp::spawn().await;
    let client = app.bare_client();
    let response = client.get(app.url("/healthz")).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("set-cookie").is_none());
    let response = client.get(app.url("/readyz")).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    let json: serde_json::Value = response.json().await.expect("json");
    assert_eq!(json["status"], "ready");
}

#[tokio::test]
async fn readyz_is_503_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    // An administrator who signed in while the database was there.
    let admin = app.user_client("root", Role::Admin).await;
    let csrf = app.session_csrf(&admin).await;
    app.pool.close().await;
    let client = app.bare_client();
    let response = client.get(app.url("/readyz")).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("GET")
            .status(),
        StatusCode::OK
    );
    // Pages that need the database say so with a 503 page, not a 500.
    app.create_user_fails_gracefully(&admin, &csrf).await;
}

/// The database drops the connection in the middle of the insert (as on a restart or
/// failover): the creation the administrator asked for reached the database and failed
/// there. Same graceful page; once the database behaves, the same form works.
#[tokio::test]
async fn a_user_creation_cut_off_by_the_database_is_a_503_page_and_can_be_sent_again() {
    let app = TestApp::spawn().await;
    let admin = app.user_client("root", Role::Admin).await;
    let csrf = app.session_csrf(&admin).await;
    for statement in [
        "CREATE FUNCTION drop_the_connection() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$",
        "CREATE TRIGGER drop_the_connection BEFORE INSERT ON users \
         FOR EACH ROW EXECUTE FUNCTION drop_the_connection()",
    ] {
        sqlx::query(statement)
            .execute(&app.pool)
            .await
            .expect(statement);
    }
    app.create_user_fails_gracefully(&admin, &csrf).await;

    sqlx::query("DROP TRIGGER drop_the_connection ON users")
        .execute(&app.pool)
        .await
        .expect("drop trigger");
    let response = app
        .post_form_with_csrf(&admin, "/admin/users", &NEWCOMER, &csrf)
        .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        describe(response).await
    );
    let page = response.text().await.expect("body");
    assert!(page.contains("Invitation link for newcomer"), "{page}");
}

/// The "create user" form of the administration page.
const NEWCOMER: [(&str, &str); 2] = [("username", "newcomer"), ("role", "member")];

impl TestApp {
    /// `admin` sends the "create user" form while the database cannot serve it: a 503
    /// page saying to try again later, nothing of the internals, and no user created.
    async fn create_user_fails_gracefully(&self, admin: &Browser, csrf: &str) {
        let response = self
            .post_form_with_csrf(admin, "/admin/users", &NEWCOMER, csrf)
            .await;
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            describe(response).await
        );
        assert!(response.headers().get("retry-after").is_some());
        let body = response.text().await.expect("body");
        assert!(body.contains("Temporarily unavailable"), "{body}");
        assert!(
            !body.contains("pool") && !body.contains("sqlx") && !body.contains("terminat"),
            "internals leak: {body}"
        );
        // A pool of its own: the app's may be the one that is closed.
        let pool = pool_for(&self.db_name).await;
        let created: i64 =
            sqlx::query_scalar("SELECT count(*) FROM users WHERE username_key = 'newcomer'")
                .fetch_one(&pool)
                .await
                .expect("count");
        pool.close().await;
        assert_eq!(
            created, 0,
            "a user was created although the page said it failed"
        );
    }
}
