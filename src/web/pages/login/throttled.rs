//! 429: the sign-in page's answer when the throttle refuses an attempt.

use askama::Template;
use axum::{
    http::{StatusCode, header, request::Parts},
    response::Response,
};
use time::OffsetDateTime;

use crate::{
    audit::AuditEvent,
    auth::{Authentication, throttle},
    display::display_time,
    telemetry::metric,
    web::{
        AppState,
        http::{
            Chrome,
            denial::{self, Denial},
            render_status,
        },
    },
};

#[derive(Template)]
#[template(path = "throttled.html")]
struct ThrottledPage {
    chrome: Chrome,
    minutes: i64,
    until: String,
}

/// 429: too many failed attempts for this name or from this address. Says when to try
/// again; says nothing about whether the account exists.
pub async fn throttled(
    state: &AppState,
    parts: &Parts,
    typed_username: &str,
    blocked: throttle::Blocked,
) -> Response {
    let now = OffsetDateTime::now_utc();
    let retry_after = blocked.retry_after(now);
    metrics::counter!(metric::THROTTLED, "scope" => blocked.scope.as_str()).increment(1);
    let signed_in = matches!(
        parts.extensions.get::<Authentication>(),
        Some(Authentication::SignedIn(_))
    );
    if signed_in {
        // A signed-in person's current-password or code checks: an event about them.
        tracing::warn!(status = 429, reason = blocked.reason(), username = %typed_username, "sign-in throttled");
        denial::record(parts, |meta| {
            AuditEvent::new("throttled", meta)
                .status(429)
                .reason(blocked.reason())
                .username(typed_username)
        })
        .await;
    } else {
        // Refused before any password check, for whoever asks: counted like every other
        // anonymous refusal, so a bot hammering a blocked name costs no row per attempt.
        denial::deny(
            parts,
            Denial::new(
                StatusCode::TOO_MANY_REQUESTS,
                blocked.reason(),
                "sign-in throttled",
            ),
        );
    }
    let mut response = render_status(
        StatusCode::TOO_MANY_REQUESTS,
        &ThrottledPage {
            chrome: Chrome::new(&state.site, "Too many attempts", None),
            minutes: (retry_after + 59) / 60,
            until: display_time(blocked.until),
        },
    );
    if let Ok(value) = axum::http::HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}
