//! A person's optional e-mail address, verified by a mailed link (only with `--smtp-url`).
//!
//! Adding or changing the address stores it unverified and issues a verification link
//! ([`VERIFY_LIFETIME`], single use, only its SHA-256 stored); opening the link marks the
//! address verified, signed in or not (the link carries everything). Only a verified
//! address receives password-reset mail. Each change commits with its audit event.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::audit::{self, Actor, AuditEvent, RequestMeta};

/// How long a verification link works.
pub const VERIFY_LIFETIME: time::Duration = time::Duration::hours(24);
/// The path a verification link opens (its query carries the token).
pub const VERIFY_PATH: &str = "/email/verify";
/// RFC 5321's limit on a forward path, and the column's.
const MAX_ADDRESS: usize = 254;
/// Longest token text looked up; a real one is 43 characters.
const MAX_TOKEN: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressProblem {
    #[error("Enter an e-mail address.")]
    Empty,
    #[error("That is not an e-mail address (it looks like name@example.com).")]
    Invalid,
    #[error("Use at most 254 characters.")]
    TooLong,
}

/// A typed address, trimmed and checked (lettre's parser: `local@domain`, no display name).
pub fn parse_address(raw: &str) -> Result<lettre::Address, AddressProblem> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(AddressProblem::Empty);
    }
    if text.chars().count() > MAX_ADDRESS {
        return Err(AddressProblem::TooLong);
    }
    text.parse().map_err(|_| AddressProblem::Invalid)
}

/// The address on an account, and whether it is verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressState {
    pub address: Option<String>,
    pub verified_at: Option<OffsetDateTime>,
}

pub async fn of_user(pool: &PgPool, user_id: i64) -> sqlx::Result<AddressState> {
    let row = sqlx::query!(
        "SELECT email, email_verified_at FROM users WHERE id = $1",
        user_id
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map_or_else(AddressState::default, |row| AddressState {
        address: row.email,
        verified_at: row.email_verified_at,
    }))
}

/// Where a one-time password link for `user_id` may be mailed: the account's verified
/// address, or for an invitation whatever address it has (an administrator typed it when
/// inviting; the invitation link itself is what proves the mailbox). `None`: nowhere.
pub async fn link_address(
    pool: &PgPool,
    user_id: i64,
    purpose: crate::accounts::links::Purpose,
) -> sqlx::Result<Option<String>> {
    let state = of_user(pool, user_id).await?;
    let usable = state.verified_at.is_some() || purpose == crate::accounts::links::Purpose::Invite;
    Ok(state.address.filter(|_| usable))
}

/// Stores an address an administrator typed when inviting someone, unverified (recorded as
/// `email_added`, by the administrator).
pub async fn set_unverified(
    pool: &PgPool,
    actor: &Actor,
    user_id: i64,
    address: &lettre::Address,
) -> sqlx::Result<()> {
    let text: &str = address.as_ref();
    let mut tx = pool.begin().await?;
    let username = sqlx::query_scalar!(
        r#"
        UPDATE users SET email = $2, email_verified_at = NULL, updated_at = now()
        WHERE id = $1 RETURNING username
        "#,
        user_id,
        text
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(username) = username else {
        return Ok(());
    };
    let event = actor
        .event("email_added", &username)
        .detail(json!({ "address": text, "verified": false }));
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await
}

/// A verification link just issued. The token exists only here: it goes into one mail.
pub struct Verification {
    pub username: String,
    pub address: lettre::Address,
    pub expires_at: OffsetDateTime,
    token: String,
}

impl Verification {
    /// `base` (the site's address, `Settings::link_base`) + [`VERIFY_PATH`]`?token=…`.
    pub fn url(&self, base: &url::Url) -> url::Url {
        let mut url = base.join(VERIFY_PATH).unwrap_or_else(|_| base.clone());
        url.query_pairs_mut().append_pair("token", &self.token);
        url
    }
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// What asking for an address did.
pub enum AddressChange {
    /// Stored unverified; its link is to be mailed.
    Pending(Verification),
    /// It is the account's address already, verified: nothing changed (typing it again
    /// must not undo the verification).
    AlreadyVerified,
    /// No such user (deleted meanwhile).
    NoUser,
}

/// Sets the user's address (unverified) and issues its verification link, forgetting the
/// user's older links (a link for a replaced address must not verify anything). Recorded
/// as `email_added` or `email_changed`.
pub async fn set_address(
    pool: &PgPool,
    actor: &Actor,
    user_id: i64,
    address: &lettre::Address,
) -> sqlx::Result<AddressChange> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let lifetime = VERIFY_LIFETIME.whole_seconds() as f64;
    let text: &str = address.as_ref();
    let mut tx = pool.begin().await?;
    let Some(user) = sqlx::query!(
        "SELECT username, email, email_verified_at FROM users WHERE id = $1 FOR UPDATE",
        user_id
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(AddressChange::NoUser);
    };
    let same = user
        .email
        .as_deref()
        .is_some_and(|current| current.eq_ignore_ascii_case(text));
    if same && user.email_verified_at.is_some() {
        return Ok(AddressChange::AlreadyVerified);
    }
    sqlx::query!(
        "UPDATE users SET email = $2, email_verified_at = NULL, updated_at = now() WHERE id = $1",
        user_id,
        text
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "DELETE FROM email_verifications WHERE user_id = $1",
        user_id
    )
    .execute(&mut *tx)
    .await?;
    let expires_at = sqlx::query_scalar!(
        r#"
        INSERT INTO email_verifications (token_hash, user_id, address, expires_at)
        VALUES ($1, $2, $3, now() + make_interval(secs => $4))
        RETURNING expires_at
        "#,
        hash(&token),
        user_id,
        text,
        lifetime
    )
    .fetch_one(&mut *tx)
    .await?;
    let (event, previous) = match &user.email {
        Some(previous) => ("email_changed", Some(previous.as_str())),
        None => ("email_added", None),
    };
    let event = actor
        .event(event, &user.username)
        .detail(json!({ "address": text, "previous": previous }));
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(AddressChange::Pending(Verification {
        username: user.username,
        address: address.clone(),
        expires_at,
        token,
    }))
}

/// Removes the user's address (and its pending links), recorded as `email_removed`. False
/// if there was none.
pub async fn remove(pool: &PgPool, actor: &Actor, user_id: i64) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let removed = sqlx::query!(
        r#"
        UPDATE users u SET email = NULL, email_verified_at = NULL, updated_at = now()
        FROM (SELECT id, email FROM users WHERE id = $1 FOR UPDATE) old
        WHERE u.id = old.id AND old.email IS NOT NULL
        RETURNING u.username, old.email AS "address!"
        "#,
        user_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(removed) = removed else {
        return Ok(false);
    };
    sqlx::query!(
        "DELETE FROM email_verifications WHERE user_id = $1",
        user_id
    )
    .execute(&mut *tx)
    .await?;
    let event = actor
        .event("email_removed", &removed.username)
        .detail(json!({ "address": removed.address }));
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(true)
}

/// What opening a verification link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The address is verified now.
    Done { username: String, address: String },
    /// Another account verified this address first; nothing changed.
    Taken { address: String },
    /// Used, expired, replaced by a newer one, or never issued: nothing changed.
    Stale,
}

/// Spends a verification link: one statement takes it (`used_at IS NULL AND expires_at >
/// now()`, so of two simultaneous openings exactly one gets it), and the same transaction
/// marks the address verified if it is still the account's. Recorded as `email_verified`.
pub async fn verify(pool: &PgPool, token: &str, meta: RequestMeta) -> sqlx::Result<Verified> {
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Ok(Verified::Stale);
    }
    let mut tx = pool.begin().await?;
    let Some(link) = sqlx::query!(
        r#"
        UPDATE email_verifications SET used_at = now()
        WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
        RETURNING user_id, address
        "#,
        hash(token)
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(Verified::Stale);
    };
    let marked = sqlx::query_scalar!(
        r#"
        UPDATE users SET email_verified_at = now(), updated_at = now()
        WHERE id = $1 AND email = $2 AND email_verified_at IS NULL
        RETURNING username
        "#,
        link.user_id,
        link.address
    )
    .fetch_optional(&mut *tx)
    .await;
    let username = match marked {
        Ok(Some(username)) => username,
        // The address was replaced or removed since (set_address deletes its links, so
        // only a race gets here): nothing to verify.
        Ok(None) => return Ok(Verified::Stale),
        // users_verified_email_key: another account holds this address verified.
        Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
            return Ok(Verified::Taken {
                address: link.address,
            });
        }
        Err(err) => return Err(err),
    };
    let event = AuditEvent::new("email_verified", meta)
        .username(&username)
        .target(&username)
        .detail(json!({ "address": link.address }));
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(Verified::Done {
        username,
        address: link.address,
    })
}

/// Forgets verification links that can no longer be used (the sweeper, with the others).
pub async fn sweep(pool: &PgPool) -> sqlx::Result<u64> {
    Ok(
        sqlx::query!("DELETE FROM email_verifications WHERE expires_at < now() - interval '1 day'")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// The verification mail's text.
pub fn verification_text(verification: &Verification, link: &url::Url, site: &str) -> String {
    format!(
        "Hello {name},\n\n\
         please confirm that {address} is your e-mail address for {site} by opening this \
         link:\n\n{link}\n\n\
         The link works once, until {expires} (24 hours). Once confirmed, this address can \
         receive a link to choose a new password if you forget yours.\n\n\
         If you did not add this address, ignore this mail: nothing changes until the link \
         is opened.\n",
        name = verification.username,
        address = verification.address,
        expires = crate::display::display_time(verification.expires_at),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_and_checked() {
        assert_eq!(
            parse_address("  ada@example.com ").map(|a| a.to_string()),
            Ok("ada@example.com".to_owned())
        );
        assert_eq!(parse_address(" "), Err(AddressProblem::Empty));
        for bad in [
            "ada",
            "ada@",
            "@example.com",
            "Ada <ada@example.com>",
            "a b@c.d",
        ] {
            assert_eq!(parse_address(bad), Err(AddressProblem::Invalid), "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(parse_address(&long), Err(AddressProblem::TooLong));
    }
}
