//! `GET /metrics` (Prometheus text format). Request counts and latencies are recorded by
//! the request frame (`web::frame`).

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::{
    auth::Role,
    error::AppError,
    telemetry::{self, metric},
    web::{
        AppState,
        http::{MaybeUser, Rendered},
    },
};

fn bearer_matches(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(token) = token else { return false };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.trim().as_bytes().ct_eq(token.as_bytes())))
}

fn refused(status: StatusCode, message: &str) -> Response {
    let mut response = (
        status,
        Json(json!({ "error": "metrics", "message": message })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="portcullis-metrics""#),
        );
    }
    response.extensions_mut().insert(Rendered);
    response
}

/// Metrics for a signed-in administrator or a scraper holding `--metrics-token`.
pub async fn show(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let allowed = bearer_matches(&headers, state.settings.metrics_token.as_deref())
        || user.as_ref().is_some_and(|u| u.role == Role::Admin);
    if !allowed {
        return Ok(match user {
            Some(_) => refused(StatusCode::FORBIDDEN, "Metrics are for administrators."),
            None => refused(
                StatusCode::UNAUTHORIZED,
                "Send the metrics bearer token or sign in as an administrator.",
            ),
        });
    }
    let Some(handle) = telemetry::handle() else {
        return Ok(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "Metrics are not available in this process.",
        ));
    };
    let active =
        sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM sessions WHERE ended_at > now()"#)
            .fetch_one(&state.pool)
            .await?;
    metrics::gauge!(metric::ACTIVE_SESSIONS).set(active as f64);
    metrics::gauge!(metric::DB_POOL_CONNECTIONS, "state" => "open")
        .set(f64::from(state.pool.size()));
    metrics::gauge!(metric::DB_POOL_CONNECTIONS, "state" => "idle")
        .set(state.pool.num_idle() as f64);
    metrics::gauge!(metric::DB_POOL_MAX).set(f64::from(state.pool.options().get_max_connections()));
    metrics::gauge!(metric::AUDIT_QUEUE).set(state.audit.queued() as f64);
    metrics::counter!(metric::AUDIT_WAITS).absolute(state.audit.waited());
    metrics::counter!(metric::AUDIT_LOST).absolute(state.audit.lost());
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
