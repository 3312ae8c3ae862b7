//! `SignedForm<T>`: a form posted by a signed-in user, CSRF-checked before the handler runs.

use std::sync::Arc;

use axum::{
    Form,
    extract::{FromRef, FromRequest, Request},
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;

use super::{denial, request::referring_page};
use crate::{
    auth::{Authentication, NotSignedIn, SessionUser},
    web::AppState,
};

pub struct SignedForm<T> {
    pub user: Arc<SessionUser>,
    pub form: T,
    /// The request's head, for audit records and denials.
    pub parts: Parts,
}

impl<S, T> FromRequest<S> for SignedForm<T>
where
    S: Send + Sync,
    AppState: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        // A form whose session is gone is the 401 case (sign in, then back to the page the
        // form was on), not a CSRF failure.
        let user = match parts.extensions.get::<Authentication>() {
            Some(Authentication::SignedIn(user)) => Arc::clone(user),
            Some(Authentication::NotSignedIn(reason)) => {
                return Err(denial::unauthenticated(&parts, *reason));
            }
            None => return Err(denial::unauthenticated(&parts, NotSignedIn::NoSession)),
        };
        let Form(fields): Form<Vec<(String, String)>> =
            Form::from_request(Request::from_parts(parts.clone(), body), state)
                .await
                .map_err(IntoResponse::into_response)?;
        let app = AppState::from_ref(state);
        let token = fields
            .iter()
            .find(|(name, _)| name == "csrf")
            .map(|(_, value)| value.as_str())
            .unwrap_or_default();
        if !app.csrf.verify_session_token(user.token, token) {
            let retry = referring_page(&parts).unwrap_or_else(|| "/".into());
            return Err(denial::csrf_failed(&parts, Some(&user), &retry).await);
        }
        let rest: Vec<&(String, String)> =
            fields.iter().filter(|(name, _)| name != "csrf").collect();
        let encoded = serde_urlencoded::to_string(&rest)
            .map_err(|_| StatusCode::BAD_REQUEST.into_response())?;
        let form = serde_urlencoded::from_str(&encoded).map_err(|err| {
            tracing::info!(error = %err, "form fields rejected");
            StatusCode::UNPROCESSABLE_ENTITY.into_response()
        })?;
        Ok(SignedForm { user, form, parts })
    }
}
