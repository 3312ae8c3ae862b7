//! One-time links that let a person choose their own password: an invitation (a new
//! account that has no password yet) or a reset. Administrators never choose passwords for
//! others (ASVS 5.0 6.4.1, 6.4.6); they hand out a link, and the person behind it chooses.
//!
//! A link is `/password/new?token=…`: 32 random bytes, URL-safe, of which only the SHA-256
//! is stored (like the first-run setup link, `setup`, and session cookies), so a copy of the
//! database cannot be turned into links. A link
//! - works once: [`consume`] spends it in one `UPDATE … WHERE used_at IS NULL … RETURNING`,
//!   so two simultaneous uses give exactly one success;
//! - expires (`--link-lifetime`, 24 hours by default);
//! - is the only one of its user: issuing a new link voids the older ones;
//! - is audited: issued (by whom), voided, used.
//!
//! Its rows stay after use, so a used, replaced or expired link gets a page that says which
//! (rather than a bare "not found"); they are deleted with the user, or a month after the
//! link stopped working ([`sweep`]).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use super::{UserError, UserRow, Username, insert_row, revoke_sessions, set_password_hash};
use crate::{
    audit::{self, Actor, AuditEvent, RequestMeta},
    auth::{Role, throttle},
};

/// How long a link works unless `--link-lifetime` says otherwise.
pub const DEFAULT_LIFETIME: time::Duration = time::Duration::hours(24);

/// The path a link opens (its query carries the token).
pub const PATH: &str = "/password/new";

/// Longest token text looked up; a real one is 43 characters.
const MAX_TOKEN_CHARS: usize = 100;

/// A fresh random token: 32 bytes from the OS, URL-safe base64 (43 characters).
pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of a token: its SHA-256. A token has 256 bits of entropy, so looking its
/// hash up through an index leaks nothing an attacker can use (unlike a password).
pub(crate) fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A new account, created without a password.
    Invite,
    /// A new password for an existing account.
    Reset,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Invite => "invite",
            Purpose::Reset => "reset",
        }
    }

    fn parse(text: &str) -> Purpose {
        if text == "invite" {
            Purpose::Invite
        } else {
            Purpose::Reset
        }
    }
}

/// A link just issued. The token exists only here: show it once, never log it.
#[derive(Clone)]
pub struct Issued {
    pub user_id: i64,
    pub username: String,
    pub purpose: Purpose,
    pub expires_at: OffsetDateTime,
    /// Older links of the user this one replaced.
    pub voided: u64,
    token: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("username", &self.username)
            .field("purpose", &self.purpose)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// The link to hand to the person: `base` (the site's address) + `/password/new?token=…`.
    pub fn url(&self, base: &url::Url) -> url::Url {
        let mut url = base.join(PATH).unwrap_or_else(|_| base.clone());
        url.query_pairs_mut().append_pair("token", &self.token);
        url
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("no such user")]
    NotFound,
    /// The name of a new user (see `UserError`).
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Issues a link for `user` inside the caller's transaction (which holds the user's row
/// lock or just created it): voids the user's older links, stores the new one's hash and
/// records both in the audit trail.
pub(crate) async fn issue_in(
    conn: &mut PgConnection,
    actor: &Actor,
    user: &UserRow,
    purpose: Purpose,
    lifetime: time::Duration,
) -> sqlx::Result<Issued> {
    let voided = sqlx::query!(
        r#"
        UPDATE password_links SET voided_at = now()
        WHERE user_id = $1 AND used_at IS NULL AND voided_at IS NULL
        "#,
        user.id
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if voided > 0 {
        let event = actor
            .event("password_link_voided", &user.username)
            .detail(json!({ "count": voided, "replaced_by": purpose.as_str() }));
        audit::write_in(&mut *conn, &event).await?;
    }
    let token = new_token();
    let expires_at = sqlx::query_scalar!(
        r#"
        INSERT INTO password_links (token_hash, user_id, purpose, issued_by, expires_at)
        VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
        RETURNING expires_at
        "#,
        hash_token(&token),
        user.id,
        purpose.as_str(),
        actor.username,
        lifetime.as_seconds_f64(),
    )
    .fetch_one(&mut *conn)
    .await?;
    let event = actor
        .event("password_link_issued", &user.username)
        .reason(purpose.as_str())
        .detail(json!({ "expires_at": expires_at.unix_timestamp() }));
    audit::write_in(&mut *conn, &event).await?;
    Ok(Issued {
        user_id: user.id,
        username: user.username.clone(),
        purpose,
        expires_at,
        voided,
        token,
    })
}

/// Creates an account without a password (nobody can sign in to it until its person has
/// chosen one) and issues its invitation link, in the caller's transaction.
pub(crate) async fn issue_invite(
    conn: &mut PgConnection,
    actor: &Actor,
    raw_username: &str,
    role: Role,
    lifetime: time::Duration,
) -> Result<Issued, UserError> {
    let username = Username::parse(raw_username)?;
    let user = insert_row(&mut *conn, username, None, role).await?;
    let event = actor
        .event("user_created", &user.username)
        .detail(json!({ "role": role, "invited": true }));
    audit::write_in(&mut *conn, &event).await?;
    Ok(issue_in(conn, actor, &user, Purpose::Invite, lifetime).await?)
}

/// Issues a password-reset link for the user `user_id`, voiding their older links, in a
/// transaction of its own that locks the user's row (two issues at once: the later wins).
///
/// For every door that hands out a reset link: an administrator (`admin::reset_link`),
/// the command line, or a person who forgot their password (`actor` is then the system,
/// e.g. `Actor::new("system", meta)`, and the link goes wherever that flow sends it).
/// A user who never used their invitation gets a new invitation instead (their account
/// has no password to reset). `lifetime`: usually `Settings::link_lifetime`.
/// `Err(LinkError::NotFound)` if there is no such user.
pub async fn issue_reset(
    pool: &PgPool,
    actor: &Actor,
    user_id: i64,
    lifetime: time::Duration,
) -> Result<Issued, LinkError> {
    let mut tx = pool.begin().await?;
    sqlx::query!("SELECT id FROM users WHERE id = $1 FOR UPDATE", user_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(LinkError::NotFound)?;
    let user = super::by_id(&mut *tx, user_id)
        .await?
        .ok_or(LinkError::NotFound)?;
    let purpose = if user.invited {
        Purpose::Invite
    } else {
        Purpose::Reset
    };
    let issued = issue_in(&mut tx, actor, &user, purpose, lifetime).await?;
    tx.commit().await?;
    Ok(issued)
}

/// What a token is worth now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// It works: the person may choose a password for this account.
    Live {
        username: String,
        purpose: Purpose,
        expires_at: OffsetDateTime,
    },
    /// It was used (a password was chosen with it).
    Used,
    /// A newer link for the same account replaced it.
    Voided,
    /// Its time ran out.
    Expired,
    /// No such link (mistyped, cut short, or its account deleted).
    Unknown,
}

/// What `token` is worth, without spending it (the page shows the form only for a live
/// link, and says what happened to any other).
pub async fn check(pool: &PgPool, token: &str) -> sqlx::Result<LinkState> {
    if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
        return Ok(LinkState::Unknown);
    }
    let row = sqlx::query!(
        r#"
        SELECT u.username, l.purpose, l.expires_at, l.used_at, l.voided_at,
               l.expires_at <= now() AS "expired!"
        FROM password_links l JOIN users u ON u.id = l.user_id
        WHERE l.token_hash = $1
        "#,
        hash_token(token)
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(LinkState::Unknown);
    };
    Ok(if row.used_at.is_some() {
        LinkState::Used
    } else if row.voided_at.is_some() {
        LinkState::Voided
    } else if row.expired {
        LinkState::Expired
    } else {
        LinkState::Live {
            username: row.username,
            purpose: Purpose::parse(&row.purpose),
            expires_at: row.expires_at,
        }
    })
}

/// A link spent: the account's password is set.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub user_id: i64,
    pub username: String,
    pub purpose: Purpose,
    pub sessions_revoked: u64,
}

/// Spends `token` and sets the account's password to `hash` (checked against the policy and
/// hashed by the caller, before: a refused password leaves the link usable), in one
/// transaction that also signs the account out everywhere, lifts sign-in blocks on its name
/// and records the event. `Err(state)` when the link does not work (any more): spent by a
/// simultaneous use, expired, replaced, unknown.
pub async fn consume(
    pool: &PgPool,
    token: &str,
    hash: &str,
    meta: RequestMeta,
) -> sqlx::Result<Result<Consumed, LinkState>> {
    if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
        return Ok(Err(LinkState::Unknown));
    }
    let mut tx = pool.begin().await?;
    // The one statement that decides: a second use waits on the row lock of the first and
    // then finds `used_at` set.
    let spent = sqlx::query!(
        r#"
        UPDATE password_links l SET used_at = now()
        FROM users u
        WHERE u.id = l.user_id AND l.token_hash = $1
          AND l.used_at IS NULL AND l.voided_at IS NULL AND l.expires_at > now()
        RETURNING l.user_id, l.purpose, u.username
        "#,
        hash_token(token)
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(spent) = spent else {
        drop(tx);
        return Ok(Err(check(pool, token).await?));
    };
    set_password_hash(&mut *tx, spent.user_id, hash).await?;
    let ended = revoke_sessions(&mut *tx, spent.user_id, None, "password_reset").await?;
    let unblocked = throttle::clear_account(&mut *tx, &Username::key_of(&spent.username)).await?;
    let event = AuditEvent::new("password_link_used", meta)
        .username(&spent.username)
        .target(&spent.username)
        .reason(&spent.purpose)
        .detail(json!({ "sessions_revoked": ended, "blocks_cleared": unblocked }));
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(Ok(Consumed {
        user_id: spent.user_id,
        username: spent.username,
        purpose: Purpose::parse(&spent.purpose),
        sessions_revoked: ended,
    }))
}

/// How long a link's row is kept after it stopped working (used, replaced or expired), so
/// that opening it says which; after that it is swept and counts as unknown.
pub const KEEP_AFTER_END: time::Duration = time::Duration::days(30);

/// Deletes the rows of links that stopped working more than [`KEEP_AFTER_END`] ago (the
/// periodic sweeper): the table stays as small as the links of the last month.
pub async fn sweep(pool: &PgPool) -> sqlx::Result<u64> {
    let result = sqlx::query!(
        r#"
        DELETE FROM password_links
        WHERE least(used_at, voided_at, expires_at) < now() - make_interval(secs => $1)
        "#,
        KEEP_AFTER_END.as_seconds_f64()
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_random_url_safe_bytes() {
        let a = new_token();
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(a, new_token());
        assert_eq!(hash_token(&a).len(), 32);
    }
}
