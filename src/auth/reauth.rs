//! Re-authentication: the third answer beside 401 and 403. "Signed in, but not recently
//! enough for this" (RFC 9470's `insufficient_user_authentication`): sensitive changes
//! need the session's holder to have proved who they are within `--reauth-window`.
//!
//! Confirming marks the session as just authenticated and gives it a new id (a session
//! fixated before the confirmation is worth nothing after it). The absolute lifetime is
//! not extended: re-authenticating is not signing in again.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::Session;

use super::store::{BINDING_KEY, SessionBinding};

/// Where a sensitive form waits while its sender re-authenticates (in the session's data,
/// so it survives the round trip through the confirmation page).
pub const PENDING_KEY: &str = "portcullis.pending_form";

/// A sensitive form that was sent without a recent authentication. Password fields are
/// never kept (they would sit in the session's data): the person types them again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingForm {
    /// Where the form posts.
    pub action: String,
    /// Its fields, CSRF token and passwords left out.
    pub fields: Vec<(String, String)>,
    /// The page the form was on.
    pub back: String,
}

/// Whether a form field holds a secret that must not be stored or sent back in a page.
pub fn is_secret_field(name: &str) -> bool {
    name == "csrf" || name.contains("password") || name == "code" || name == "credential"
}

/// Marks the session as re-authenticated now and cycles its id. The new id exists once
/// this returns (the record is saved).
pub async fn confirm(session: &Session) -> Result<(), tower_sessions::session::Error> {
    let binding: Option<SessionBinding> = session.get(BINDING_KEY).await?;
    let Some(mut binding) = binding else {
        return Ok(());
    };
    binding.authenticated_at = Some(OffsetDateTime::now_utc());
    session.insert(BINDING_KEY, binding).await?;
    session.cycle_id().await?;
    session.save().await
}

/// Keeps a form for after the re-authentication (replacing any other waiting one).
pub async fn keep_pending(
    session: &Session,
    form: PendingForm,
) -> Result<(), tower_sessions::session::Error> {
    session.insert(PENDING_KEY, form).await
}

/// Takes the waiting form, if any.
pub async fn take_pending(
    session: &Session,
) -> Result<Option<PendingForm>, tower_sessions::session::Error> {
    session.remove(PENDING_KEY).await
}

/// Looks at the waiting form without taking it.
pub async fn pending(
    session: &Session,
) -> Result<Option<PendingForm>, tower_sessions::session::Error> {
    session.get(PENDING_KEY).await
}

/// What a sensitive action is, in words, from where its form posts (for the confirmation
/// page and the page that continues it).
pub fn describe(action: &str) -> &'static str {
    let parts: Vec<&str> = action.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["admin", "users"] => "create a user",
        ["admin", "users", _, "role"] => "change a user's role",
        ["admin", "users", _, "disable"] => "disable an account",
        ["admin", "users", _, "enable"] => "enable an account",
        ["admin", "users", _, "password"] => "reset a user's password",
        ["admin", "users", _, "delete"] => "delete an account",
        ["admin", "users", _, "second-factor", "reset"] => "reset a user's two-step verification",
        ["account", "two-factor", "enable"] => "turn on two-step verification",
        ["account", "two-factor", "recovery-codes"] => "get new recovery codes",
        ["account", "two-factor", "disable"] => "turn off two-step verification",
        ["account", "passkeys", "options"] => "add a passkey",
        ["account", "passkeys", _, "remove"] => "remove a passkey",
        ["admin", "users", _, "sessions", "revoke-all"] => "sign a user out everywhere",
        ["admin", "users", _, "sessions", _, "revoke"] => "sign out one of a user's sessions",
        ["admin", "requests", _, "grant"] => "grant an access request",
        ["admin", "requests", _, "decline"] => "decline an access request",
        ["admin", "throttles", "clear"] => "lift a sign-in block",
        ["account", "sessions", "revoke-others"] => "sign out your other sessions",
        ["account", "sessions", _, "revoke"] => "sign out one of your sessions",
        _ => "make this change",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_named_in_words() {
        assert_eq!(describe("/admin/users/7/role"), "change a user's role");
        assert_eq!(
            describe("/account/sessions/revoke-others"),
            "sign out your other sessions"
        );
        assert_eq!(describe("/somewhere/else"), "make this change");
    }

    #[test]
    fn secrets_are_never_kept() {
        for name in [
            "csrf",
            "password",
            "new_password",
            "current_password",
            "code",
        ] {
            assert!(is_secret_field(name), "{name}");
        }
        assert!(!is_secret_field("role"));
    }
}
