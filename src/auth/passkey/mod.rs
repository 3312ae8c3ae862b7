//! Passkeys (WebAuthn, through webauthn-rs): registered on the account pages, used to sign
//! in on their own (a discoverable credential, no username typed), as the second factor
//! after a password, and to re-authenticate.
//!
//! - Every ceremony requires user verification (a PIN or biometric on the authenticator):
//!   a passkey is possession *and* knowledge or inherence, so it counts as two factors on
//!   its own (`--require-mfa` counts it like an authenticator app).
//! - The relying party id and origin come from one configured address (`--public-url`, or
//!   `http://localhost:PORT`), see `config::RelyingParty`; what webauthn-rs refuses is a
//!   start-up error.
//! - Registration state lives in the signed-in session's data (`REGISTRATION_KEY`) for a
//!   few minutes. Authentication state is kept by the browser in a signed, single-use
//!   cookie (`ceremony`): a passkey sign-in page costs anonymous visitors no row.
//! - Credentials are stored as webauthn-rs's `Passkey` JSON, with the credential id in a
//!   unique column (one credential, one account) and the signature counter updated at each
//!   use (a counter that goes back is refused by webauthn-rs: a cloned authenticator).

pub mod ceremony;
pub mod sign_in;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use tower_sessions::Session;
use webauthn_rs::{
    Webauthn, WebauthnBuilder,
    prelude::{
        CreationChallengeResponse, CredentialID, Passkey, PasskeyRegistration,
        RegisterPublicKeyCredential, Uuid,
    },
};
use webauthn_rs_proto::ResidentKeyRequirement;

use crate::{
    audit::{self, Actor},
    config::RelyingParty,
};

/// How long the browser has for a ceremony (WebAuthn's own `timeout` is the same): long
/// enough to find a security key or type a PIN, short enough that a stolen challenge is
/// soon worthless.
pub const CEREMONY_LIFETIME: time::Duration = time::Duration::minutes(5);
/// Longest passkey name kept.
pub const MAX_NAME_CHARS: usize = 64;
/// Where a registration waits for the browser's answer (in the session's data).
pub const REGISTRATION_KEY: &str = "portcullis.passkey_registration";

/// The relying party, ready for ceremonies. One per application.
pub struct Passkeys {
    webauthn: Webauthn,
    pub relying_party: RelyingParty,
}

impl std::fmt::Debug for Passkeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passkeys")
            .field("relying_party", &self.relying_party)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Session(#[from] tower_sessions::session::Error),
    #[error("webauthn: {0}")]
    WebAuthn(#[from] webauthn_rs::prelude::WebauthnError),
    #[error("passkey state: {0}")]
    Encoding(#[from] serde_json::Error),
}

impl Passkeys {
    /// Checks the relying party with webauthn-rs; an `Err` says what is wrong (start-up).
    pub fn new(relying_party: &RelyingParty) -> Result<Passkeys, String> {
        let refused = |e: webauthn_rs::prelude::WebauthnError| {
            format!(
                "passkeys: relying party id {:?} with origin {} refused by webauthn-rs: {e}",
                relying_party.id,
                relying_party.origin.as_str()
            )
        };
        let timeout = std::time::Duration::try_from(CEREMONY_LIFETIME)
            .unwrap_or(std::time::Duration::from_secs(300));
        let webauthn = WebauthnBuilder::new(&relying_party.id, &relying_party.origin)
            .map_err(refused)?
            .rp_name("Portcullis")
            .timeout(timeout)
            .build()
            .map_err(refused)?;
        Ok(Passkeys {
            webauthn,
            relying_party: relying_party.clone(),
        })
    }

    pub(crate) fn webauthn(&self) -> &Webauthn {
        &self.webauthn
    }

    /// Starts registering a passkey for the signed-in user: the options for the browser;
    /// the state waits in `session` for [`Passkeys::finish_registration`].
    pub async fn start_registration(
        &self,
        pool: &PgPool,
        session: &Session,
        user_id: i64,
        username: &str,
    ) -> Result<CreationChallengeResponse, PasskeyError> {
        let handle = user_handle(pool, user_id).await?;
        let existing: Vec<CredentialID> = sqlx::query_scalar!(
            "SELECT credential_id FROM passkeys WHERE user_id = $1",
            user_id
        )
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(CredentialID::from)
        .collect();
        let (mut options, state) =
            self.webauthn
                .start_passkey_registration(handle, username, username, Some(existing))?;
        // A discoverable credential, so it can sign in without a username. webauthn-rs asks
        // for none by default (security keys have little room for them) and does not check
        // the answer either way: only the request changes.
        if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
            selection.resident_key = Some(ResidentKeyRequirement::Required);
            selection.require_resident_key = true;
        }
        let pending = PendingRegistration {
            state,
            expires_at: OffsetDateTime::now_utc() + CEREMONY_LIFETIME,
        };
        session.insert(REGISTRATION_KEY, pending).await?;
        Ok(options)
    }

    /// Completes the registration waiting in `session` with the browser's answer
    /// (`credential`, JSON) and stores the passkey as `name`, with its audit event.
    pub async fn finish_registration(
        &self,
        pool: &PgPool,
        session: &Session,
        actor: &Actor,
        user_id: i64,
        name: &str,
        credential: &str,
    ) -> Result<Result<PasskeySummary, RegistrationRefused>, PasskeyError> {
        // Taken whatever the outcome: a registration challenge is answered once.
        let pending: Option<PendingRegistration> = session.remove(REGISTRATION_KEY).await?;
        let Some(pending) = pending.filter(|p| p.expires_at > OffsetDateTime::now_utc()) else {
            return Ok(Err(RegistrationRefused::NoCeremony));
        };
        let Ok(answer) = serde_json::from_str::<RegisterPublicKeyCredential>(credential) else {
            return Ok(Err(RegistrationRefused::Malformed));
        };
        let passkey = match self
            .webauthn
            .finish_passkey_registration(&answer, &pending.state)
        {
            Ok(passkey) => passkey,
            Err(err) => {
                tracing::info!(error = %err, "passkey registration refused");
                return Ok(Err(RegistrationRefused::Invalid));
            }
        };
        let name = passkey_name(name);
        let stored = serde_json::to_value(&passkey)?;
        let mut tx = pool.begin().await?;
        let row = sqlx::query!(
            r#"
            INSERT INTO passkeys (user_id, credential_id, name, credential)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (credential_id) DO NOTHING
            RETURNING id, created_at
            "#,
            user_id,
            passkey.cred_id().as_slice(),
            name,
            stored
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Err(RegistrationRefused::AlreadyRegistered));
        };
        let event = actor
            .event("passkey_registered", &actor.username)
            .detail(json!({ "passkey": row.id, "name": name }));
        audit::write_in(&mut *tx, &event).await?;
        tx.commit().await?;
        Ok(Ok(PasskeySummary {
            id: row.id,
            name,
            created_at: row.created_at,
            last_used_at: None,
        }))
    }
}

/// A registration waiting for the browser (in the session's data, never in a cookie).
#[derive(Debug, Serialize, Deserialize)]
struct PendingRegistration {
    state: PasskeyRegistration,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// Why a registration was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationRefused {
    /// No registration waiting in this session (or it is older than the lifetime).
    NoCeremony,
    /// The answer is not a WebAuthn credential at all.
    Malformed,
    /// webauthn-rs refused it: wrong challenge or origin, no user verification, ...
    Invalid,
    /// This authenticator's credential is registered already (to this or another account).
    AlreadyRegistered,
}

impl RegistrationRefused {
    /// For logs and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationRefused::NoCeremony => "no_ceremony",
            RegistrationRefused::Malformed => "malformed",
            RegistrationRefused::Invalid => "invalid",
            RegistrationRefused::AlreadyRegistered => "already_registered",
        }
    }
}

/// A passkey as its owner's page lists it.
#[derive(Debug, Clone)]
pub struct PasskeySummary {
    pub id: i64,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

/// What the person typed as the passkey's name: trimmed, no control characters, at most
/// [`MAX_NAME_CHARS`]; "Passkey" when empty.
pub fn passkey_name(typed: &str) -> String {
    let name: String = typed
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let name = name.trim().to_owned();
    if name.is_empty() {
        "Passkey".to_owned()
    } else {
        name
    }
}

/// The user's WebAuthn user handle, made (random) at the first registration.
async fn user_handle(pool: &PgPool, user_id: i64) -> sqlx::Result<Uuid> {
    let fresh = Uuid::new_v4();
    let stored = sqlx::query_scalar!(
        r#"
        UPDATE users SET passkey_user_handle = coalesce(passkey_user_handle, $2)
        WHERE id = $1 RETURNING passkey_user_handle AS "handle!"
        "#,
        user_id,
        fresh.as_bytes().as_slice()
    )
    .fetch_one(pool)
    .await?;
    Ok(Uuid::from_slice(&stored).unwrap_or(fresh))
}

/// The user's passkeys, newest first.
pub async fn list(pool: &PgPool, user_id: i64) -> sqlx::Result<Vec<PasskeySummary>> {
    sqlx::query_as!(
        PasskeySummary,
        r#"
        SELECT id, name, created_at, last_used_at FROM passkeys
        WHERE user_id = $1 ORDER BY created_at DESC, id DESC
        "#,
        user_id
    )
    .fetch_all(pool)
    .await
}

/// Removes one of the user's passkeys, with its audit event. False if it is not theirs.
pub async fn remove(
    pool: &PgPool,
    actor: &Actor,
    user_id: i64,
    passkey_id: i64,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let name = sqlx::query_scalar!(
        "DELETE FROM passkeys WHERE id = $1 AND user_id = $2 RETURNING name",
        passkey_id,
        user_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(name) = name else {
        return Ok(false);
    };
    let event = actor
        .event("passkey_removed", &actor.username)
        .detail(json!({ "passkey": passkey_id, "name": name }));
    audit::write_in(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(true)
}

/// Removes every passkey of a user (an administrator's reset of two-step verification),
/// recorded about `target`. Returns how many there were.
pub async fn remove_all(
    tx: &mut PgConnection,
    actor: &Actor,
    user_id: i64,
    target: &str,
) -> sqlx::Result<u64> {
    let removed = sqlx::query!("DELETE FROM passkeys WHERE user_id = $1", user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if removed > 0 {
        let event = actor
            .event("passkey_removed", target)
            .reason("reset")
            .detail(json!({ "count": removed }));
        audit::write_in(&mut *tx, &event).await?;
    }
    Ok(removed)
}

/// A stored passkey, ready for webauthn-rs.
pub(crate) fn stored_passkey(credential: serde_json::Value) -> Option<Passkey> {
    serde_json::from_value(credential).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_clipped_and_never_empty() {
        assert_eq!(passkey_name("  Laptop \n"), "Laptop");
        assert_eq!(passkey_name(""), "Passkey");
        assert_eq!(passkey_name(" \u{7} "), "Passkey");
        assert_eq!(
            passkey_name(&"x".repeat(100)).chars().count(),
            MAX_NAME_CHARS
        );
    }

    #[test]
    fn ip_addresses_and_foreign_origins_cannot_be_relying_parties() {
        let local = RelyingParty::local(3000);
        assert!(Passkeys::new(&local).is_ok());
        let mismatch = RelyingParty {
            id: "example.com".into(),
            origin: url::Url::parse("https://login.other.example").expect("url"),
        };
        let err = Passkeys::new(&mismatch).expect_err("refused");
        assert!(err.contains("example.com"), "{err}");
    }
}
