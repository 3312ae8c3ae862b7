//! Signing in with a password, as one domain step the sign-in page (and later a second
//! factor) calls: throttle, verify, start the session, upgrade the hash.
//!
//! Every attempt costs one full hash, whether or not the account exists (unknown names
//! verify against a dummy hash), and every refusal before the hash depends on the input
//! only, so neither timing nor answers tell which names exist.

use sqlx::PgPool;
use time::OffsetDateTime;
use tower_sessions::Session;

use super::{
    csrf::CsrfKey,
    device,
    password::{
        self, HashError, MAX_PASSWORD_BYTES, MAX_PASSWORD_CHARS, PasswordHasher, Verification,
    },
    store::{BINDING_KEY, SessionBinding},
    throttle::{self, Blocked, Keys},
};
use crate::{accounts::Username, config::Settings};

/// One sign-in attempt, as typed.
pub struct Attempt<'a> {
    pub username: &'a str,
    pub password: &'a str,
    /// The client's address (the per-address throttle's key).
    pub ip: &'a str,
    pub user_agent: Option<String>,
    /// The browser's device cookie, if it sent one (`auth::device`).
    pub device_cookie: Option<&'a str>,
}

impl Attempt<'_> {
    /// The account name the throttle counts: the normalized key of a valid name, else the
    /// typed text lowercased (so invalid names are throttled too).
    pub fn throttle_key(&self) -> String {
        Username::parse(self.username).map_or_else(
            |_| {
                self.username
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(64)
                    .collect::<String>()
                    .to_lowercase()
            },
            |u| u.key,
        )
    }
}

/// What became of an attempt.
#[derive(Debug)]
pub enum Outcome {
    /// Signed in: the session is saved under a new id. `device_cookie` is the device
    /// cookie's new value, which marks this browser as a known device for the account.
    SignedIn {
        user_id: i64,
        username: String,
        device_cookie: String,
    },
    /// Refused before any password check: too many failures for the name or the address.
    Throttled(Blocked),
    /// Refused: the reason is for logs and the audit trail only; the person is told the
    /// same "invalid username or password" whatever it is.
    Failed(Failure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    UnknownUser,
    BadPassword,
    Disabled,
    /// Longer than any password we accept (refused before hashing).
    TooLong,
    /// The account changed (password, status) between the check and the session's save.
    ChangedMeanwhile,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::UnknownUser => "unknown_user",
            Failure::BadPassword => "bad_password",
            Failure::Disabled => "disabled",
            Failure::TooLong => "too_long",
            Failure::ChangedMeanwhile => "changed_meanwhile",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Session(#[from] tower_sessions::session::Error),
}

/// What signing in needs from the application.
pub struct Context<'a> {
    pub pool: &'a PgPool,
    pub hasher: &'a PasswordHasher,
    pub key: &'a CsrfKey,
    pub settings: &'a Settings,
}

/// Signs in: reserves the attempt with the throttle, verifies the password, and on
/// success starts a new session in `session` (a new id: whatever id the browser had
/// before, perhaps planted by an attacker, is deleted, never promoted).
pub async fn sign_in(
    cx: &Context<'_>,
    session: &Session,
    attempt: Attempt<'_>,
) -> Result<Outcome, SignInError> {
    let Context {
        pool,
        hasher,
        key,
        settings,
    } = *cx;
    let account_key = attempt.throttle_key();
    let keys = Keys {
        device: device::known(key, attempt.device_cookie, &account_key),
        account: account_key.clone(),
        ip: attempt.ip.to_owned(),
    };
    let reservation = match throttle::reserve(pool, &settings.throttle, &keys).await? {
        Ok(reservation) => reservation,
        Err(blocked) => return Ok(Outcome::Throttled(blocked)),
    };
    // A failure keeps the reservation: it was counted when it was made.
    let failed = |failure| Ok(Outcome::Failed(failure));
    // Over-long passwords are refused before hashing; this depends on the input only.
    let password = password::normalize(attempt.password);
    if attempt.password.len() > MAX_PASSWORD_BYTES || password.chars().count() > MAX_PASSWORD_CHARS
    {
        return failed(Failure::TooLong);
    }
    let account = match Username::parse(attempt.username) {
        Ok(username) => {
            sqlx::query!(
                r#"
                SELECT id, username, password_hash, disabled_at, last_sign_in_at,
                       last_sign_in_ip, password_changed_at
                FROM users WHERE username_key = $1
                "#,
                username.key
            )
            .fetch_optional(pool)
            .await?
        }
        Err(_) => None,
    };
    // Unknown users verify against a dummy hash: every attempt costs one full hash.
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let verification = hasher.verify(password.clone(), stored).await?;
    let (account, needs_rehash) = match (account, verification) {
        (Some(account), Verification::Match { needs_rehash }) if account.disabled_at.is_none() => {
            (account, needs_rehash)
        }
        (None, _) => return failed(Failure::UnknownUser),
        (Some(_), Verification::Mismatch) => return failed(Failure::BadPassword),
        (Some(_), Verification::Match { .. }) => return failed(Failure::Disabled),
    };

    let now = OffsetDateTime::now_utc();
    session.cycle_id().await?;
    session.clear().await;
    session
        .insert(
            BINDING_KEY,
            SessionBinding {
                user_id: account.id,
                created_at: now,
                absolute_expires_at: now + settings.absolute_timeout,
                ip: Some(attempt.ip.to_owned()),
                user_agent: attempt.user_agent,
                prev_sign_in_at: account.last_sign_in_at,
                prev_sign_in_ip: account.last_sign_in_ip,
                password_changed_at: Some(account.password_changed_at),
                authenticated_at: Some(now),
            },
        )
        .await?;
    // Saved here rather than by the session layer after the response, so a sign-in that
    // raced a password change or a disable (the store refuses the row) is a failed sign-in.
    if let Err(err) = session.save().await {
        tracing::warn!(error = %err, user = %account.username, "sign-in refused: the account changed meanwhile");
        session.flush().await?;
        return Ok(Outcome::Failed(Failure::ChangedMeanwhile));
    }
    sqlx::query!(
        "UPDATE users SET last_sign_in_at = now(), last_sign_in_ip = $2 WHERE id = $1",
        account.id,
        attempt.ip
    )
    .execute(pool)
    .await?;
    throttle::release(pool, &settings.throttle, reservation).await?;
    if needs_rehash {
        // Rehashing is not a password change: it must not revoke any session. It replaces
        // only the hash it verified, so it cannot undo a password change made meanwhile.
        let hash = hasher.hash(password).await?;
        let upgraded =
            crate::accounts::upgrade_password_hash(pool, account.id, &account.password_hash, &hash)
                .await?;
        if upgraded {
            tracing::info!(user = %account.username, "password hash upgraded to current parameters");
        }
    }
    Ok(Outcome::SignedIn {
        user_id: account.id,
        username: account.username,
        device_cookie: device::remember(key, attempt.device_cookie, &account_key),
    })
}

/// Checks the signed-in user's current password (before a sensitive change), throttled
/// like sign-in on the same counters. `Err(Blocked)` when they are blocked.
pub async fn verify_current_password(
    cx: &Context<'_>,
    user_id: i64,
    username: &str,
    ip: &str,
    device_cookie: Option<&str>,
    typed: &str,
) -> Result<Result<bool, Blocked>, SignInError> {
    let account_key = Username::key_of(username);
    let keys = Keys {
        device: device::known(cx.key, device_cookie, &account_key),
        account: account_key,
        ip: ip.to_owned(),
    };
    let reservation = match throttle::reserve(cx.pool, &cx.settings.throttle, &keys).await? {
        Ok(reservation) => reservation,
        Err(blocked) => return Ok(Err(blocked)),
    };
    let stored = sqlx::query_scalar!("SELECT password_hash FROM users WHERE id = $1", user_id)
        .fetch_one(cx.pool)
        .await?;
    let verified = typed.len() <= MAX_PASSWORD_BYTES
        && matches!(
            cx.hasher
                .verify(password::normalize(typed), Some(stored))
                .await?,
            Verification::Match { .. }
        );
    if verified {
        throttle::release(cx.pool, &cx.settings.throttle, reservation).await?;
    }
    Ok(Ok(verified))
}
