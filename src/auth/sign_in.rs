//! Signing in with a password, as one domain step the sign-in page (and later a second
//! factor) calls: throttle, verify, start the session, upgrade the hash.
//!
//! Every attempt costs one full hash, whether or not the account exists (unknown names
//! verify against a dummy hash), and every refusal before the hash depends on the input
//! only, so neither timing nor answers tell which names exist.

use sqlx::PgPool;
use time::OffsetDateTime;
use tower_sessions::{Expiry, Session};

use super::{
    csrf::CsrfKey,
    device,
    passkey::{
        Passkeys,
        ceremony::{Purpose, Refusal},
    },
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
    /// "Keep me signed in" was ticked (honoured only with `--remember-days`).
    pub remember: bool,
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
    #[error(transparent)]
    Passkey(#[from] super::passkey::PasskeyError),
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
    pub passkeys: &'a Passkeys,
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
        ..
    } = *cx;
    // In line first: a flood waits here (or is refused as busy) before touching the
    // database or the throttle.
    let mut stage = telemetry::SignInTimer::start();
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
                       (EXISTS (SELECT 1 FROM totp_credentials t
                                WHERE t.user_id = users.id AND t.enabled_at IS NOT NULL)
                        OR EXISTS (SELECT 1 FROM passkeys p WHERE p.user_id = users.id))
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
    // Unknown users, and invited ones who have not chosen a password yet, verify against a
    // dummy hash: every attempt costs one full hash and fails like a wrong password.
    let stored = account.as_ref().and_then(|a| a.password_hash.clone());
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
    if let (true, Some(old)) = (needs_rehash, account.password_hash.as_deref()) {
        // Rehashing is not a password change: it must not revoke any session. It replaces
        // only the hash it verified, so it cannot undo a password change made meanwhile.
        let hash = hasher.hash(password).await?;
        let upgraded = crate::accounts::upgrade_password_hash(pool, account.id, old, &hash).await?;
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
            pending: Pending::issue(key, &signed_in, attempt.remember),
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

/// Who passed the first step, with what starting the session needs.
pub(in crate::auth) struct SignedInAs {
    pub user_id: i64,
    pub username: String,
    pub password_changed_at: OffsetDateTime,
    pub last_sign_in_at: Option<OffsetDateTime>,
    pub last_sign_in_ip: Option<String>,
}

/// The client a session is started for.
pub(in crate::auth) struct Client {
    pub ip: String,
    pub user_agent: Option<String>,
    /// "Keep me signed in" was asked for.
    pub remember: bool,
}

fn attempt_client(attempt: &Attempt<'_>) -> Client {
    Client {
        ip: attempt.ip.to_owned(),
        user_agent: attempt.user_agent.clone(),
        remember: attempt.remember,
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
pub(in crate::auth) async fn start_session(
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
    let remember_until = cx
        .settings
        .remember
        .filter(|_| client.remember)
        .map(|days| now + days);
    if let Some(until) = remember_until {
        // A cookie that outlives the browser. (The store keeps an administrator to the
        // usual limits whatever the cookie says; the server decides, not the cookie.)
        session.set_expiry(Some(Expiry::AtDateTime(until)));
    }
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
                remember_until,
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
    fn issue(key: &CsrfKey, who: &SignedInAs, remember: bool) -> Pending {
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
    fn open(key: &CsrfKey, value: &str) -> Option<(i64, i128, bool)> {
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

/// How the second step is answered.
pub enum Answer<'a> {
    /// A code from the authenticator app, or a recovery code.
    Code(&'a str),
    /// A passkey's answer (`credential`, JSON) to the challenge in `ceremony` (its cookie).
    Passkey {
        ceremony: &'a str,
        credential: &'a str,
    },
}

/// The second step: a code from the authenticator app, a recovery code, or a passkey.
pub struct SecondStep<'a> {
    /// The note of the first step (`Pending::value`), from the browser.
    pub pending: &'a str,
    pub answer: Answer<'a>,
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
    /// A wrong or already used code, or a refused passkey (for the log: which user it
    /// was, and why in the audit trail's words).
    WrongCode {
        username: String,
        reason: &'static str,
    },
}

/// Completes a sign-in with its second factor, throttled like passwords.
pub async fn second_step(
    cx: &Context<'_>,
    session: &Session,
    step: SecondStep<'_>,
) -> Result<SecondStepOutcome, SignInError> {
    let Some((user_id, changed, remember)) = Pending::open(cx.key, step.pending) else {
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
    let proof = match step.answer {
        Answer::Code(code) => {
            second_factor::verify(cx.pool, user_id, code, OffsetDateTime::now_utc())
                .await?
                .ok_or("bad_second_factor")
        }
        Answer::Passkey {
            ceremony,
            credential,
        } => cx
            .passkeys
            .verify(
                cx.pool,
                cx.key,
                Purpose::SecondStep,
                Some(user_id),
                ceremony,
                credential,
            )
            .await?
            .map(|_| second_factor::Proof::Passkey)
            .map_err(Refusal::as_str),
    };
    let proof = match proof {
        Ok(proof) => proof,
        Err(reason) => {
            return Ok(SecondStepOutcome::WrongCode {
                username: account.username,
                reason,
            });
        }
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
        remember,
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

/// What a signed-in user types to prove it is still them (before a sensitive change).
pub enum Proof<'a> {
    Password(&'a str),
    /// A TOTP code or a recovery code.
    Code(&'a str),
}

/// Checks a signed-in user's password or second-factor code, throttled like sign-in on the
/// same counters (their known device's, if the browser is one). A right answer gives back
/// its attempt but resets nothing (`Release::StepPassed`): a password right and a code
/// wrong must keep counting. `Err(Blocked)` when the counters are blocked.
pub async fn verify_current(
    cx: &Context<'_>,
    user_id: i64,
    username: &str,
    ip: &str,
    device_cookie: Option<&str>,
    proof: Proof<'_>,
) -> Result<Result<bool, Blocked>, SignInError> {
    // A password is hashed: it waits in the hasher's line like a sign-in (a code is not).
    let _admission = match proof {
        Proof::Password(_) => Some(cx.hasher.admit().await?),
        Proof::Code(_) => None,
    };
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
    let right = match proof {
        Proof::Password(typed) => {
            let stored =
                sqlx::query_scalar!("SELECT password_hash FROM users WHERE id = $1", user_id)
                    .fetch_one(cx.pool)
                    .await?;
            typed.len() <= MAX_PASSWORD_BYTES
                && matches!(
                    cx.hasher.verify(password::normalize(typed), stored).await?,
                    Verification::Match { .. }
                )
        }
        Proof::Code(code) => {
            second_factor::verify(cx.pool, user_id, code, OffsetDateTime::now_utc())
                .await?
                .is_some()
        }
    };
    if right {
        throttle::release(
            cx.pool,
            &cx.settings.throttle,
            reservation,
            Release::StepPassed,
        )
        .await?;
    }
    Ok(Ok(right))
}
