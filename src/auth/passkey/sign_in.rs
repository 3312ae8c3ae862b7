//! Signing in with a passkey alone, and re-authenticating with one. (A passkey as the
//! second step after a password goes through `sign_in::second_step`, like a code.)

use tower_sessions::Session;

use super::ceremony::{Purpose, Refusal};
use crate::{
    accounts::Username,
    auth::{
        device,
        sign_in::{Client, Context, SignInError, SignedInAs, start_session},
        throttle::{self, Blocked, Keys, Release},
    },
};

/// The session's sign-in method after a passkey alone.
pub const METHOD: &str = "passkey";

/// A passkey's answer to a sign-in challenge, as the browser sent it.
pub struct PasskeyAttempt<'a> {
    /// The ceremony cookie (`ceremony`), from the browser.
    pub ceremony: &'a str,
    /// The assertion, JSON.
    pub credential: &'a str,
    pub ip: &'a str,
    pub user_agent: Option<String>,
    pub device_cookie: Option<&'a str>,
    /// "Keep me signed in" was ticked on the sign-in page.
    pub remember: bool,
}

/// What became of a passkey sign-in.
#[derive(Debug)]
pub enum PasskeyOutcome {
    SignedIn {
        username: String,
        device_cookie: String,
    },
    Throttled(Blocked),
    /// Refused; `username` when the passkey named an account (for the log).
    Failed {
        refusal: Refusal,
        username: Option<String>,
    },
}

/// Signs in with a passkey alone: throttled per address like passwords (the attempt is
/// reserved before anything is checked), then the challenge, the passkey and its
/// signature; on success a new session (method "passkey"), as any sign-in.
pub async fn sign_in(
    cx: &Context<'_>,
    session: &Session,
    attempt: PasskeyAttempt<'_>,
) -> Result<PasskeyOutcome, SignInError> {
    let reservation =
        match throttle::reserve_address(cx.pool, &cx.settings.throttle, attempt.ip).await? {
            Ok(reservation) => reservation,
            Err(blocked) => return Ok(PasskeyOutcome::Throttled(blocked)),
        };
    let verified = cx
        .passkeys
        .verify(
            cx.pool,
            cx.key,
            Purpose::SignIn,
            None,
            attempt.ceremony,
            attempt.credential,
        )
        .await?;
    let verified = match verified {
        Ok(verified) => verified,
        Err(refusal) => {
            return Ok(PasskeyOutcome::Failed {
                refusal,
                username: None,
            });
        }
    };
    let account = sqlx::query!(
        r#"
        SELECT username, last_sign_in_at, last_sign_in_ip, password_changed_at
        FROM users WHERE id = $1 AND disabled_at IS NULL
        "#,
        verified.user_id
    )
    .fetch_optional(cx.pool)
    .await?;
    let Some(account) = account else {
        return Ok(PasskeyOutcome::Failed {
            refusal: Refusal::Disabled,
            username: None,
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
        user_id: verified.user_id,
        username: account.username,
        password_changed_at: account.password_changed_at,
        last_sign_in_at: account.last_sign_in_at,
        last_sign_in_ip: account.last_sign_in_ip,
    };
    let client = Client {
        ip: attempt.ip.to_owned(),
        user_agent: attempt.user_agent,
        remember: attempt.remember,
    };
    match start_session(cx, session, &who, &client, METHOD).await {
        // The account was disabled (or its password changed) between the check and the save.
        Err(SignInError::ChangedMeanwhile) => {
            return Ok(PasskeyOutcome::Failed {
                refusal: Refusal::Disabled,
                username: Some(who.username),
            });
        }
        other => other?,
    }
    let account_key = Username::key_of(&who.username);
    Ok(PasskeyOutcome::SignedIn {
        device_cookie: device::remember(cx.key, attempt.device_cookie, &account_key),
        username: who.username,
    })
}

/// Checks a signed-in user's passkey (re-authentication), throttled like sign-in on the
/// same counters as their password. `Err(Blocked)` when they are blocked; `Ok(Err(_))`
/// says why it was refused.
pub async fn verify_current(
    cx: &Context<'_>,
    user_id: i64,
    username: &str,
    ip: &str,
    device_cookie: Option<&str>,
    ceremony: &str,
    credential: &str,
) -> Result<Result<Result<(), Refusal>, Blocked>, SignInError> {
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
    let verified = cx
        .passkeys
        .verify(
            cx.pool,
            cx.key,
            Purpose::Reauth,
            Some(user_id),
            ceremony,
            credential,
        )
        .await?;
    if verified.is_ok() {
        throttle::release(
            cx.pool,
            &cx.settings.throttle,
            reservation,
            Release::StepPassed,
        )
        .await?;
    }
    Ok(Ok(verified.map(|_| ())))
}
