//! Liveness and readiness.

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
    app.create_user_fails_gracefully().await;
}

impl TestApp {
    async fn create_user_fails_gracefully(&self) {
        let response = self
            .bare_client()
            .get(self.url("/account"))
            .header("accept", BROWSER_ACCEPT)
            .header("cookie", "portcullis_session=AAAAAAAAAAAAAAAAAAAAAA")
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get("retry-after").is_some());
        let body = response.text().await.expect("body");
        assert!(body.contains("Temporarily unavailable"), "{body}");
        assert!(
            !body.contains("pool") && !body.contains("sqlx"),
            "internals leak: {body}"
        );
    }
}
