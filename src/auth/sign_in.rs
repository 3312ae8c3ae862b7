//! Signing in with a password, as one domain step the sign-in page (and later a second
//! factor) calls: throttle, verify, start the session, upgrade the hash.
//!
//! Every attempt costs one full hash, whether or not the account exists (unknown names
//! verify against a dummy hash), and every refusal before the hash depends on the input
//! only, so neither timing nor answers tell which names exist.

use std::time::Instant;

use sqlx::PgPool;
use time::OffsetDateTime;
use tower_sessions::Session;

use super::{
    csrf::CsrfKey,
    device,
    password::{
        self, HashError, MAX_PASSWORD_BYTES, MAX_PASSWORD_CHARS, PasswordHasher, Verification,
    },
    second_factor,
    store::{BINDING_KEY, SessionBinding},
    throttle::{self, Blocked, Keys, Release},
};
use crate::{
    accounts::Username,
    config::Settings,
    telemetry::{self, SignInStage},
};

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
    /// The password was right; the second factor is awaited (`second_step`).
    SecondFactorNeeded { username: String, pending: Pending },
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
    /// The account changed (password, status) between the check and the session's save.
    #[error("the account changed during sign-in")]
    ChangedMeanwhile,
}

/// What signing in needs from the application.
pub struct Context<'a> {
    /// The sign-in pool (`Pools::sign_in`).
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
    // In line first: a flood waits here (or is refused as busy) before touching the
    // database or the throttle.
    let mut stage = Stage::start();
    let _admission = hasher.admit().await?;
    stage.done(SignInStage::Admission);
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
    stage.done(SignInStage::Throttle);
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
            // Whether a second factor is on comes with the account: one round trip.
            sqlx::query!(
                r#"
                SELECT id, username, password_hash, disabled_at, last_sign_in_at,
                       last_sign_in_ip, password_changed_at,
                       EXISTS (SELECT 1 FROM totp_credentials t
                               WHERE t.user_id = users.id AND t.enabled_at IS NOT NULL)
                           AS "second_factor_on!"
                FROM users WHERE username_key = $1
                "#,
                username.key
            )
            .fetch_optional(pool)
            .await?
        }
        Err(_) => None,
    };
    stage.done(SignInStage::Lookup);
    // Unknown users verify against a dummy hash: every attempt costs one full hash.
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let verification = hasher.verify(password.clone(), stored).await?;
    stage.done(SignInStage::Verify);
    let (account, needs_rehash) = match (account, verification) {
        (Some(account), Verification::Match { needs_rehash }) if account.disabled_at.is_none() => {
            (account, needs_rehash)
        }
        (None, _) => return failed(Failure::UnknownUser),
        (Some(_), Verification::Mismatch) => return failed(Failure::BadPassword),
        (Some(_), Verification::Match { .. }) => return failed(Failure::Disabled),
    };

    let second_factor_on = account.second_factor_on;
    let how = if second_factor_on {
        Release::StepPassed
    } else {
        Release::SignedIn
    };
    throttle::release(pool, &settings.throttle, reservation, how).await?;
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
    let signed_in = SignedInAs {
        user_id: account.id,
        username: account.username,
        password_changed_at: account.password_changed_at,
        last_sign_in_at: account.last_sign_in_at,
        last_sign_in_ip: account.last_sign_in_ip,
    };
    if second_factor_on {
        // The password was right; nothing is granted until the second factor is: no
        // session, only a signed, short-lived note of the first step (`Pending`).
        return Ok(Outcome::SecondFactorNeeded {
            username: signed_in.username.clone(),
            pending: Pending::issue(key, &signed_in),
        });
    }
    let started = start_session(
        cx,
        session,
        &signed_in,
        &attempt_client(&attempt),
        "password",
    )
    .await;
    stage.done(SignInStage::Finish);
    match started {
        Err(SignInError::ChangedMeanwhile) => Ok(Outcome::Failed(Failure::ChangedMeanwhile)),
        Err(err) => Err(err),
        Ok(()) => Ok(signed_in_outcome(
            key,
            signed_in,
            attempt.device_cookie,
            &account_key,
        )),
    }
}

/// Times the stages of a sign-in for the metrics (`telemetry::sign_in_stage`): each
/// `done` records the time since the previous one.
struct Stage(Instant);

impl Stage {
    fn start() -> Stage {
        Stage(Instant::now())
    }

    fn done(&mut self, stage: SignInStage) {
        let now = Instant::now();
        telemetry::sign_in_stage(stage, now - self.0);
        self.0 = now;
    }
}

/// Who passed the first step, with what starting the session needs.
struct SignedInAs {
    user_id: i64,
    username: String,
    password_changed_at: OffsetDateTime,
    last_sign_in_at: Option<OffsetDateTime>,
    last_sign_in_ip: Option<String>,
}

/// The client a session is started for.
struct Client {
    ip: String,
    user_agent: Option<String>,
}

fn attempt_client(attempt: &Attempt<'_>) -> Client {
    Client {
        ip: attempt.ip.to_owned(),
        user_agent: attempt.user_agent.clone(),
    }
}

fn signed_in_outcome(
    key: &CsrfKey,
    who: SignedInAs,
    device_cookie: Option<&str>,
    account_key: &str,
) -> Outcome {
    Outcome::SignedIn {
        user_id: who.user_id,
        username: who.username,
        device_cookie: device::remember(key, device_cookie, account_key),
    }
}

/// Starts the session: a new id (whatever id the browser had before, perhaps planted by
/// an attacker, is deleted, never promoted), the binding to the user, saved now.
async fn start_session(
    cx: &Context<'_>,
    session: &Session,
    who: &SignedInAs,
    client: &Client,
    method: &str,
) -> Result<(), SignInError> {
    let now = OffsetDateTime::now_utc();
    // An id the browser brought is deleted and replaced (fixation). Without one there is
    // nothing to replace: the record's id is new and random, and cycling would only send a
    // DELETE for it (one statement per sign-in).
    if session.id().is_some() {
        session.cycle_id().await?;
    }
    session.clear().await;
    session
        .insert(
            BINDING_KEY,
            SessionBinding {
                user_id: who.user_id,
                created_at: now,
                absolute_expires_at: now + cx.settings.absolute_timeout,
                ip: Some(client.ip.clone()),
                user_agent: client.user_agent.clone(),
                prev_sign_in_at: who.last_sign_in_at,
                prev_sign_in_ip: who.last_sign_in_ip.clone(),
                password_changed_at: Some(who.password_changed_at),
                authenticated_at: Some(now),
                auth_method: Some(method.to_owned()),
            },
        )
        .await?;
    // Saved here rather than by the session layer after the response, so a sign-in that
    // raced a password change or a disable (the store refuses the row) is a failed sign-in.
    if let Err(err) = session.save().await {
        tracing::warn!(error = %err, user = %who.username, "sign-in refused: the account changed meanwhile");
        session.flush().await?;
        return Err(SignInError::ChangedMeanwhile);
    }
    sqlx::query!(
        "UPDATE users SET last_sign_in_at = now(), last_sign_in_ip = $2 WHERE id = $1",
        who.user_id,
        client.ip
    )
    .execute(cx.pool)
    .await?;
    Ok(())
}

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
    fn issue(key: &CsrfKey, who: &SignedInAs) -> Pending {
        let expires = (OffsetDateTime::now_utc() + PENDING_LIFETIME).unix_timestamp();
        // The password's change time is part of it: a password changed meanwhile voids it.
        let body = format!(
            "{}.{expires}.{}",
            who.user_id,
            who.password_changed_at.unix_timestamp_nanos()
        );
        Pending {
            value: format!("{body}.{}", key.pending_tag(&body)),
        }
    }

    /// The user id, if `value` is a genuine, unexpired note.
    fn open(key: &CsrfKey, value: &str) -> Option<(i64, i128)> {
        let (body, tag) = value.rsplit_once('.')?;
        if !key.verify_pending_tag(body, tag) {
            return None;
        }
        let mut parts = body.split('.');
        let user_id = parts.next()?.parse().ok()?;
        let expires: i64 = parts.next()?.parse().ok()?;
        let changed: i128 = parts.next()?.parse().ok()?;
        (OffsetDateTime::now_utc().unix_timestamp() < expires).then_some((user_id, changed))
    }
}

/// The second step: a code from the authenticator app, or a recovery code.
pub struct SecondStep<'a> {
    /// The note of the first step (`Pending::value`), from the browser.
    pub pending: &'a str,
    pub code: &'a str,
    pub ip: &'a str,
    pub user_agent: Option<String>,
    pub device_cookie: Option<&'a str>,
}

/// What became of a second step.
#[derive(Debug)]
pub enum SecondStepOutcome {
    SignedIn {
        username: String,
        method: &'static str,
        device_cookie: String,
    },
    /// The first step is missing, forged, too old or no longer matches the account:
    /// sign in again.
    Expired,
    Throttled(Blocked),
    /// A wrong or already used code (for the log: which user it was).
    WrongCode {
        username: String,
    },
}

/// Completes a sign-in with its second factor, throttled like passwords.
pub async fn second_step(
    cx: &Context<'_>,
    session: &Session,
    step: SecondStep<'_>,
) -> Result<SecondStepOutcome, SignInError> {
    let Some((user_id, changed)) = Pending::open(cx.key, step.pending) else {
        return Ok(SecondStepOutcome::Expired);
    };
    let account = sqlx::query!(
        r#"
        SELECT username, last_sign_in_at, last_sign_in_ip, password_changed_at
        FROM users WHERE id = $1 AND disabled_at IS NULL
        "#,
        user_id
    )
    .fetch_optional(cx.pool)
    .await?;
    let Some(account) = account.filter(|a| a.password_changed_at.unix_timestamp_nanos() == changed)
    else {
        return Ok(SecondStepOutcome::Expired);
    };
    let account_key = Username::key_of(&account.username);
    let keys = Keys {
        device: device::known(cx.key, step.device_cookie, &account_key),
        account: account_key.clone(),
        ip: step.ip.to_owned(),
    };
    let reservation = match throttle::reserve(cx.pool, &cx.settings.throttle, &keys).await? {
        Ok(reservation) => reservation,
        Err(blocked) => return Ok(SecondStepOutcome::Throttled(blocked)),
    };
    let proof =
        second_factor::verify(cx.pool, user_id, step.code, OffsetDateTime::now_utc()).await?;
    let Some(proof) = proof else {
        return Ok(SecondStepOutcome::WrongCode {
            username: account.username,
        });
    };
    throttle::release(
        cx.pool,
        &cx.settings.throttle,
        reservation,
        Release::SignedIn,
    )
    .await?;
    let who = SignedInAs {
        user_id,
        username: account.username,
        password_changed_at: account.password_changed_at,
        last_sign_in_at: account.last_sign_in_at,
        last_sign_in_ip: account.last_sign_in_ip,
    };
    let client = Client {
        ip: step.ip.to_owned(),
        user_agent: step.user_agent,
    };
    match start_session(cx, session, &who, &client, proof.method()).await {
        Err(SignInError::ChangedMeanwhile) => return Ok(SecondStepOutcome::Expired),
        other => other?,
    }
    Ok(SecondStepOutcome::SignedIn {
        device_cookie: device::remember(cx.key, step.device_cookie, &account_key),
        username: who.username,
        method: proof.method(),
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
    let _admission = cx.hasher.admit().await?;
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
        throttle::release(
            cx.pool,
            &cx.settings.throttle,
            reservation,
            Release::StepPassed,
        )
        .await?;
    }
    Ok(Ok(verified))
}

/// Checks a signed-in user's second-factor code (re-authentication), throttled like
/// sign-in on the same counters. `Err(Blocked)` when they are blocked.
pub async fn verify_current_code(
    cx: &Context<'_>,
    user_id: i64,
    username: &str,
    ip: &str,
    device_cookie: Option<&str>,
    code: &str,
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
    let proof = second_factor::verify(cx.pool, user_id, code, OffsetDateTime::now_utc()).await?;
    if proof.is_some() {
        throttle::release(
            cx.pool,
            &cx.settings.throttle,
            reservation,
            Release::StepPassed,
        )
        .await?;
    }
    Ok(Ok(proof.is_some()))
}
