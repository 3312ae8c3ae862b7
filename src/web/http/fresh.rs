//! `FreshForm<T>`: a [`SignedForm`] for sensitive changes, which also needs the sender to
//! have proved who they are recently (`--reauth-window`). Otherwise it is the third answer,
//! neither 401 nor 403: a browser is sent to `/reauth` (its form kept, passwords aside, and
//! offered again once confirmed); a program gets `401` with RFC 9470's
//! `error="insufficient_user_authentication"` and `max_age`.

use std::sync::Arc;

use axum::{
    Json,
    extract::{FromRef, FromRequest, FromRequestParts, Request},
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use serde::de::DeserializeOwned;
use serde_json::json;
use tower_sessions::Session;

use super::{
    denial::{self, Denial, WWW_AUTHENTICATE},
    form::{SignedForm, signed_fields},
    frame::kind_of,
    input::{self, Refusal, Source},
    negotiate::RequestKind,
    request::referring_page,
};
use crate::{
    auth::{
        Authentication, SessionUser,
        reauth::{self, PendingForm},
    },
    error::AppError,
    web::AppState,
};

pub struct FreshForm<T> {
    pub user: Arc<SessionUser>,
    pub form: T,
    pub parts: Parts,
}

impl<S, T> FromRequest<S> for FreshForm<T>
where
    S: Send + Sync,
    AppState: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let stale = match request.extensions().get::<Authentication>() {
            Some(Authentication::SignedIn(user)) if !user.recently_authenticated => {
                Some(Arc::clone(user))
            }
            _ => None,
        };
        let Some(user) = stale else {
            // Recent, or not signed in at all (SignedForm answers that: the 401 case).
            let SignedForm { user, form, parts } = SignedForm::from_request(request, state).await?;
            return Ok(FreshForm { user, form, parts });
        };
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let app = AppState::from_ref(state);
        // Checked like any signed form's, and read as `T` would be (one-line fields), before
        // they are kept in the session record for after `/reauth`.
        let (parts, fields) = signed_fields(Request::from_parts(parts, body), &user, &app).await?;
        if let Err(bad) = input::from_pairs::<T>(fields.clone()) {
            return Err(Refusal::new(bad, Source::Form, &parts, &app.site).into_response());
        }
        Err(reauth_required(&parts, &user, &session, &app, fields).await)
    }
}

/// The third answer: re-authenticate, then carry on (`fields`: the form, kept for after).
pub async fn reauth_required(
    parts: &Parts,
    user: &SessionUser,
    session: &Session,
    state: &AppState,
    fields: Vec<(String, String)>,
) -> Response {
    denial::deny_user(
        parts,
        Denial::new(
            StatusCode::UNAUTHORIZED,
            "reauth_required",
            "re-authentication required",
        ),
        &user.username,
        None,
    )
    .await;
    let max_age = state.settings.reauth_window.whole_seconds();
    let mut response = match kind_of(parts) {
        RequestKind::Browser => {
            let back = referring_page(parts).unwrap_or_else(|| "/account".into());
            let pending = PendingForm {
                action: parts.uri.path().to_owned(),
                fields: fields
                    .into_iter()
                    .filter(|(name, _)| !reauth::is_secret_field(name))
                    .collect(),
                back: back.clone(),
            };
            if let Err(err) = reauth::keep_pending(session, pending).await {
                return AppError::from(err).into_response();
            }
            let next = serde_urlencoded::to_string([("next", back.as_str())]).unwrap_or_default();
            Redirect::to(&format!("/reauth?{next}")).into_response()
        }
        RequestKind::Api => {
            let mut response = (
                StatusCode::UNAUTHORIZED,
                Json(json!({
                    "error": "insufficient_user_authentication",
                    "reason": "reauth_required",
                    "message": "This change needs a recent sign-in. Confirm your password at /reauth, then send it again.",
                    "max_age": max_age,
                    "reauth_url": "/reauth",
                })),
            )
                .into_response();
            let challenge = format!(
                r#"{WWW_AUTHENTICATE}, error="insufficient_user_authentication", max_age={max_age}"#
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            response
        }
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.extensions_mut().insert(super::Rendered);
    response
}
