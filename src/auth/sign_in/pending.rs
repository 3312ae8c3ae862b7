//! The note of a first step (a right password) that the second step completes.

use time::OffsetDateTime;

use super::SignedInAs;
use crate::auth::csrf::CsrfKey;

/// A sign-in whose password was right and whose second factor is awaited, as a signed
/// value the browser keeps for a few minutes (no server state: anonymous requests stay
/// free, and nothing is granted by it: every page is still the 401 case).
#[derive(Debug)]
pub struct Pending {
    pub value: String,
}

/// How long the second step may take.
pub const PENDING_LIFETIME: time::Duration = time::Duration::minutes(5);

impl Pending {
    pub(super) fn issue(key: &CsrfKey, who: &SignedInAs, remember: bool) -> Pending {
        let expires = (OffsetDateTime::now_utc() + PENDING_LIFETIME).unix_timestamp();
        // The password's change time is part of it: a password changed meanwhile voids it.
        // So is "keep me signed in", asked for with the password.
        let body = format!(
            "{}.{expires}.{}.{}",
            who.user_id,
            who.password_changed_at.unix_timestamp_nanos(),
            u8::from(remember)
        );
        Pending {
            value: format!("{body}.{}", key.pending_tag(&body)),
        }
    }

    /// The user id, password change time and "keep me signed in", if `value` is a genuine,
    /// unexpired note.
    pub(super) fn open(key: &CsrfKey, value: &str) -> Option<(i64, i128, bool)> {
        let (body, tag) = value.rsplit_once('.')?;
        if !key.verify_pending_tag(body, tag) {
            return None;
        }
        let mut parts = body.split('.');
        let user_id = parts.next()?.parse().ok()?;
        let expires: i64 = parts.next()?.parse().ok()?;
        let changed: i128 = parts.next()?.parse().ok()?;
        let remember = parts.next()? == "1";
        (OffsetDateTime::now_utc().unix_timestamp() < expires)
            .then_some((user_id, changed, remember))
    }
}

/// The account a genuine, unexpired note of a first step is for (what the second step
/// page offers depends on its factors). Whether it still matches the account is checked
/// when the second step is sent.
pub fn pending_user(key: &CsrfKey, value: &str) -> Option<i64> {
    Pending::open(key, value).map(|(user_id, _, _)| user_id)
}
