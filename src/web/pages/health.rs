//! Liveness and readiness, for load balancers and orchestrators. No session, no page chrome.

use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::web::{AppState, http::Rendered};

/// The process is up and serving HTTP.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready to serve pages: not shutting down, and the database answers within two seconds.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::Acquire) {
        return not_ready("draining");
    }
    let ping = sqlx::query_scalar!("SELECT 1 AS \"one!\"").fetch_one(&state.pool);
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => Json(json!({ "status": "ready" })).into_response(),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "not ready: database error");
            not_ready("database unreachable")
        }
        Err(_) => {
            tracing::warn!("not ready: database did not answer in 2 s");
            not_ready("database timeout")
        }
    }
}

fn not_ready(reason: &str) -> Response {
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "not_ready", "reason": reason })),
    )
        .into_response();
    response.extensions_mut().insert(Rendered);
    response
}
