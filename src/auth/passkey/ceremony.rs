//! Passkey authentication ceremonies (sign-in, second step, re-authentication) whose
//! state the browser keeps, so that asking for a challenge costs no database row: anonymous
//! visitors on the sign-in page must not (LESSONS, "Anonymous visitors must not cost a
//! database row").
//!
//! The state is webauthn-rs's `DiscoverableAuthentication` (the challenge and the policy),
//! in a cookie: `purpose.user.expires.state.tag`, the tag an HMAC under the server key, so
//! the browser can neither forge nor alter it, nor use one purpose's (or one account's)
//! challenge for another.
//!
//! It is both **short-lived and single-use**. Short-lived: it expires with the ceremony
//! (`CEREMONY_LIFETIME`, five minutes). Single-use: the first answer to arrive spends it
//! (a row keyed by its SHA-256 in `passkey_challenges_spent`, written only when an answer
//! is checked, never when a challenge is handed out), so a captured cookie and assertion
//! cannot be replayed even within those minutes. webauthn-rs warns against state in the
//! browser because of replays; spending each challenge once closes that hole. Spent rows
//! outlive the cookie by nothing and are swept with the other expired rows.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::OffsetDateTime;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, PublicKeyCredential, RequestChallengeResponse,
};
use webauthn_rs_proto::AllowCredentials;

use super::{CEREMONY_LIFETIME, PasskeyError, Passkeys, stored_passkey};
use crate::auth::csrf::CsrfKey;

/// What a ceremony is for: a challenge answers only the purpose it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A passkey alone, no username typed.
    SignIn,
    /// After a right password (`sign_in::Pending`), for that account.
    SecondStep,
    /// A signed-in user confirming it's them.
    Reauth,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::SignIn => "sign-in",
            Purpose::SecondStep => "second-step",
            Purpose::Reauth => "reauth",
        }
    }
}

/// A challenge handed out: the options for `navigator.credentials.get` and the cookie
/// that carries its state.
pub struct Challenge {
    pub options: RequestChallengeResponse,
    pub cookie: String,
}

/// A passkey that answered a challenge.
#[derive(Debug, Clone)]
pub struct Verified {
    pub user_id: i64,
    pub passkey_id: i64,
    pub name: String,
}

/// Why an answer was refused (for logs and the audit trail; the person is told less).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No challenge cookie, or forged, altered, for another purpose or account, or expired.
    Expired,
    /// The challenge was answered before.
    Replayed,
    /// The answer is not a WebAuthn assertion.
    Malformed,
    /// No passkey with this credential id (removed, or never registered here).
    UnknownCredential,
    /// Another account's passkey (second step, re-authentication).
    WrongAccount,
    /// The account is disabled.
    Disabled,
    /// webauthn-rs refused it: signature, origin, relying party, no user verification, a
    /// signature counter that went back.
    Invalid,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Expired => "passkey_challenge_expired",
            Refusal::Replayed => "passkey_replayed",
            Refusal::Malformed => "passkey_malformed",
            Refusal::UnknownCredential => "unknown_passkey",
            Refusal::WrongAccount => "passkey_of_another_account",
            Refusal::Disabled => "disabled",
            Refusal::Invalid => "bad_passkey",
        }
    }
}

impl Passkeys {
    /// A challenge for `purpose`. With `user_id`, only that user's passkeys are offered
    /// (`None` when they have none); without, any passkey of this site (discoverable).
    pub async fn challenge(
        &self,
        pool: &PgPool,
        key: &CsrfKey,
        purpose: Purpose,
        user_id: Option<i64>,
    ) -> Result<Option<Challenge>, PasskeyError> {
        let allowed = match user_id {
            Some(user_id) => {
                let ids = sqlx::query_scalar!(
                    "SELECT credential_id FROM passkeys WHERE user_id = $1 ORDER BY id",
                    user_id
                )
                .fetch_all(pool)
                .await?;
                if ids.is_empty() {
                    return Ok(None);
                }
                ids
            }
            None => Vec::new(),
        };
        let (mut options, state) = self.webauthn().start_discoverable_authentication()?;
        // webauthn-rs marks it for conditional mediation (autofill); ours is a button.
        options.mediation = None;
        options.public_key.allow_credentials = allowed
            .into_iter()
            .map(|id| AllowCredentials {
                type_: "public-key".to_owned(),
                id: id.into(),
                transports: None,
            })
            .collect();
        let expires = (OffsetDateTime::now_utc() + CEREMONY_LIFETIME).unix_timestamp();
        let state = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&state)?);
        let body = format!(
            "{}.{}.{expires}.{state}",
            purpose.as_str(),
            user_id.unwrap_or(0)
        );
        let cookie = format!("{body}.{}", key.ceremony_tag(&body));
        Ok(Some(Challenge { options, cookie }))
    }

    /// Checks the browser's answer (`credential`, JSON) to the challenge in `cookie`:
    /// genuine and unexpired, for this purpose (and account), answered once, by a passkey
    /// registered here whose signature verifies with user verification. Updates the
    /// passkey's counter and last use.
    pub async fn verify(
        &self,
        pool: &PgPool,
        key: &CsrfKey,
        purpose: Purpose,
        user_id: Option<i64>,
        cookie: &str,
        credential: &str,
    ) -> sqlx::Result<Result<Verified, Refusal>> {
        let Some(opened) = open(key, purpose, user_id, cookie) else {
            return Ok(Err(Refusal::Expired));
        };
        let Ok(answer) = serde_json::from_str::<PublicKeyCredential>(credential) else {
            return Ok(Err(Refusal::Malformed));
        };
        let spent = sqlx::query!(
            r#"
            INSERT INTO passkey_challenges_spent (challenge_hash, expires_at)
            VALUES ($1, $2) ON CONFLICT DO NOTHING
            "#,
            &opened.hash[..],
            opened.expires_at
        )
        .execute(pool)
        .await?
        .rows_affected();
        if spent == 0 {
            return Ok(Err(Refusal::Replayed));
        }
        let row = sqlx::query!(
            r#"
            SELECT p.id, p.user_id, p.name, p.credential, u.passkey_user_handle,
                   u.disabled_at IS NOT NULL AS "disabled!"
            FROM passkeys p JOIN users u ON u.id = p.user_id
            WHERE p.credential_id = $1
            "#,
            answer.raw_id.as_slice()
        )
        .fetch_optional(pool)
        .await?;
        let Some(row) = row else {
            return Ok(Err(Refusal::UnknownCredential));
        };
        if user_id.is_some_and(|expected| expected != row.user_id) {
            return Ok(Err(Refusal::WrongAccount));
        }
        if row.disabled {
            return Ok(Err(Refusal::Disabled));
        }
        // The authenticator names the account it made the credential for; a discoverable
        // sign-in must, and it must be this passkey's account.
        match answer.get_user_unique_id() {
            Some(handle) if row.passkey_user_handle.as_deref() != Some(handle) => {
                return Ok(Err(Refusal::WrongAccount));
            }
            None if purpose == Purpose::SignIn => return Ok(Err(Refusal::Malformed)),
            _ => {}
        }
        let Some(mut passkey) = stored_passkey(row.credential) else {
            tracing::error!(passkey = row.id, "a stored passkey cannot be read");
            return Ok(Err(Refusal::UnknownCredential));
        };
        let result = self.webauthn().finish_discoverable_authentication(
            &answer,
            opened.state,
            &[DiscoverableKey::from(&passkey)],
        );
        let result = match result {
            Ok(result) => result,
            Err(err) => {
                tracing::info!(error = %err, passkey = row.id, "passkey assertion refused");
                return Ok(Err(Refusal::Invalid));
            }
        };
        let updated = passkey
            .update_credential(&result)
            .unwrap_or(false)
            .then(|| serde_json::to_value(&passkey).ok())
            .flatten();
        sqlx::query!(
            r#"
            UPDATE passkeys SET last_used_at = now(), credential = coalesce($2, credential)
            WHERE id = $1
            "#,
            row.id,
            updated
        )
        .execute(pool)
        .await?;
        Ok(Ok(Verified {
            user_id: row.user_id,
            passkey_id: row.id,
            name: row.name,
        }))
    }
}

struct Opened {
    state: DiscoverableAuthentication,
    expires_at: OffsetDateTime,
    /// What spending it records: the SHA-256 of the whole value.
    hash: [u8; 32],
}

/// The ceremony in `cookie`, if it is genuine, unexpired and for this purpose and user.
fn open(key: &CsrfKey, purpose: Purpose, user_id: Option<i64>, cookie: &str) -> Option<Opened> {
    let (body, tag) = cookie.rsplit_once('.')?;
    if !key.verify_ceremony_tag(body, tag) {
        return None;
    }
    let mut parts = body.split('.');
    let made_for = parts.next()?;
    let user: i64 = parts.next()?.parse().ok()?;
    let expires: i64 = parts.next()?.parse().ok()?;
    let state = parts.next()?;
    if made_for != purpose.as_str() || user != user_id.unwrap_or(0) || parts.next().is_some() {
        return None;
    }
    let expires_at = OffsetDateTime::from_unix_timestamp(expires).ok()?;
    if expires_at <= OffsetDateTime::now_utc() {
        return None;
    }
    let state = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(state).ok()?).ok()?;
    Some(Opened {
        state,
        expires_at,
        hash: Sha256::digest(cookie.as_bytes()).into(),
    })
}

/// Forgets spent challenges whose cookies have expired.
pub async fn sweep(pool: &PgPool) -> sqlx::Result<u64> {
    Ok(
        sqlx::query!("DELETE FROM passkey_challenges_spent WHERE expires_at < now()")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RelyingParty;

    async fn challenge(purpose: Purpose, user: Option<i64>) -> (CsrfKey, String) {
        let key = CsrfKey::from_bytes([9; 32]);
        let passkeys = Passkeys::new(&RelyingParty::local(3000)).expect("relying party");
        // Without a user no query runs, so a pool that never connects will do.
        let pool = PgPool::connect_lazy("postgres://nowhere.invalid/none").expect("lazy pool");
        let issued = passkeys
            .challenge(&pool, &key, purpose, user)
            .await
            .expect("challenge")
            .expect("issued");
        assert!(issued.options.public_key.allow_credentials.is_empty());
        assert!(issued.options.mediation.is_none(), "a button, not autofill");
        (key, issued.cookie)
    }

    #[tokio::test]
    async fn a_ceremony_opens_only_for_its_purpose_with_its_key_unaltered() {
        let (key, cookie) = challenge(Purpose::SignIn, None).await;
        assert!(open(&key, Purpose::SignIn, None, &cookie).is_some());
        assert!(open(&key, Purpose::Reauth, None, &cookie).is_none());
        assert!(open(&key, Purpose::SignIn, Some(7), &cookie).is_none());
        assert!(
            open(
                &CsrfKey::from_bytes([8; 32]),
                Purpose::SignIn,
                None,
                &cookie
            )
            .is_none()
        );
        let reauth = cookie.replacen("sign-in", "reauth", 1);
        assert!(open(&key, Purpose::Reauth, None, &reauth).is_none(), "tag");
        for garbage in ["", ".", "a.b.c.d.e", "sign-in.0.1.x.y"] {
            assert!(
                open(&key, Purpose::SignIn, None, garbage).is_none(),
                "{garbage}"
            );
        }
    }

    #[test]
    fn an_expired_ceremony_does_not_open() {
        let key = CsrfKey::from_bytes([9; 32]);
        let past = (OffsetDateTime::now_utc() - time::Duration::seconds(1)).unix_timestamp();
        let body = format!("sign-in.0.{past}.e30");
        let cookie = format!("{body}.{}", key.ceremony_tag(&body));
        assert!(open(&key, Purpose::SignIn, None, &cookie).is_none());
    }
}
