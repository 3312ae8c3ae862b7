//! `GET /metrics` (Prometheus text format) and the per-request metrics middleware.

use std::time::Instant;

use axum::{
    Json,
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{AppState, Rendered};
use crate::{
    auth::{MaybeUser, Role},
    error::AppError,
    telemetry,
};

/// Counts requests and their latency by route template (never the raw path: unbounded
/// label values would grow the registry without bound), method and status.
pub async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

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
    metrics::gauge!("portcullis_active_sessions").set(active as f64);
    metrics::gauge!("portcullis_db_pool_connections", "state" => "open")
        .set(f64::from(state.pool.size()));
    metrics::gauge!("portcullis_db_pool_connections", "state" => "idle")
        .set(state.pool.num_idle() as f64);
    metrics::gauge!("portcullis_db_pool_max_connections")
        .set(f64::from(state.pool.options().get_max_connections()));
    metrics::gauge!("portcullis_audit_queue_events").set(state.audit.queued() as f64);
    metrics::gauge!("portcullis_audit_dropped_events").set(state.audit.dropped() as f64);
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
