//! `SignedForm<T>`: a form posted by a signed-in user, CSRF-checked before the handler runs,
//! its fields read by the same rules as [`TextForm`](super::input::TextForm).

use std::sync::Arc;

use axum::{
    extract::{FromRef, FromRequest, Request},
    http::request::Parts,
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;

use super::{
    denial,
    input::{self, Refusal, Source},
    request::referring_page,
};
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
        // A form whose session is gone is the 401 case (sign in, then back to the page the
        // form was on), not a CSRF failure.
        let user = match request.extensions().get::<Authentication>() {
            Some(Authentication::SignedIn(user)) => Arc::clone(user),
            Some(Authentication::NotSignedIn(reason)) => {
                let reason = *reason;
                let (parts, _) = request.into_parts();
                return Err(denial::unauthenticated(&parts, reason));
            }
            None => {
                let (parts, _) = request.into_parts();
                return Err(denial::unauthenticated(&parts, NotSignedIn::NoSession));
            }
        };
        let app = AppState::from_ref(state);
        let (parts, fields) = signed_fields(request, &user, &app).await?;
        let form = input::from_pairs(fields)
            .map_err(|bad| Refusal::new(bad, Source::Form, &parts, &app.site).into_response())?;
        Ok(SignedForm { user, form, parts })
    }
}

/// The fields of a form `user` signed, checked: the body read (415, 413), the CSRF token
/// verified before anything else in the form is looked at (403), then every other field
/// by the input rules (400). The token is not among the fields returned.
pub async fn signed_fields(
    request: Request,
    user: &SessionUser,
    app: &AppState,
) -> Result<(Parts, Vec<(String, String)>), Response> {
    let (parts, body) = input::form_body(request)
        .await
        .map_err(IntoResponse::into_response)?;
    let mut pairs = input::decode_pairs(&body);
    let token = pairs
        .iter()
        .find(|(name, _)| name == b"csrf")
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
        .unwrap_or_default();
    if !app.csrf.verify_session_token(user.token, token) {
        let retry = referring_page(&parts).unwrap_or_else(|| "/".into());
        return Err(denial::csrf_failed(&parts, Some(user), &retry).await);
    }
    pairs.retain(|(name, _)| name != b"csrf");
    match input::check_pairs(pairs) {
        Ok(fields) => Ok((parts, fields)),
        Err(bad) => Err(Refusal::new(bad, Source::Form, &parts, &app.site).into_response()),
    }
}
