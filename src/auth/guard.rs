//! Role guards: "who are you" (401) and "what may you do" (403) are separate answers.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};

use super::{Authentication, NotSignedIn, Role};
use crate::web::{AppState, denial};

/// Route middleware admitting only signed-in users whose role satisfies `required`; mount
/// it with `middleware::from_fn_with_state((Role::Editor, state), require_role)`.
///
/// Not signed in: the 401 case (303 to sign-in for browsers, 401 for API clients).
/// Signed in with too low a role: the 403 page; never a redirect to sign-in, which loops.
pub async fn require_role(
    State((required, state)): State<(Role, AppState)>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    match parts.extensions.get::<Authentication>() {
        Some(Authentication::SignedIn(user)) if user.role.satisfies(required) => {
            next.run(Request::from_parts(parts, body)).await
        }
        Some(Authentication::SignedIn(user)) => {
            denial::forbidden(&parts, user, required, &state).await
        }
        Some(Authentication::NotSignedIn(reason)) => denial::unauthenticated(&parts, *reason),
        // Deny by default: a guarded route mounted without `authenticate` is a bug, and it
        // must fail closed.
        None => denial::unauthenticated(&parts, NotSignedIn::NoSession),
    }
}
