//! The second factor: TOTP codes (RFC 6238) from an authenticator app, and single-use
//! recovery codes for when the phone is gone.
//!
//! - A code is accepted for its 30-second step, one step either side for clock skew, and
//!   never twice: the last accepted step is stored and only a later one passes (one
//!   conditional `UPDATE`, so two simultaneous submissions of the same code cannot both win).
//! - Recovery codes carry 80 random bits; only their SHA-256 is stored, and using one marks
//!   it used in the same statement that checks it.
//! - Enrolment stores the secret unconfirmed; it counts only once a valid code has been
//!   entered, so a half-finished enrolment never locks anyone out.
//!
//! Attempts are throttled by the caller like passwords (`throttle::reserve`).

use base64::{Engine, engine::general_purpose::STANDARD};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use totp_rs::{Builder, Secret, Totp};

use crate::audit::{self, Actor};

/// Recovery codes issued at a time.
pub const RECOVERY_CODES: usize = 10;
const ISSUER: &str = "Portcullis";
/// Letters that cannot be mistaken for one another when copied by hand.
const CODE_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// How a second factor was proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Totp,
    RecoveryCode,
    /// A passkey (`auth::passkey`), with user verification.
    Passkey,
}

impl Proof {
    /// The session's sign-in method after a password and this proof.
    pub fn method(self) -> &'static str {
        match self {
            Proof::Totp => "password+totp",
            Proof::RecoveryCode => "password+recovery",
            Proof::Passkey => "password+passkey",
        }
    }
}

fn totp(secret: &[u8], account: &str) -> Option<Totp> {
    Builder::new()
        .with_secret(Secret::from(secret.to_vec()))
        .with_issuer(Some(ISSUER))
        .with_account_name(account.replace(':', "_"))
        .build()
        .ok()
}

fn unix_seconds(now: OffsetDateTime) -> u64 {
    u64::try_from(now.unix_timestamp()).unwrap_or_default()
}

/// An enrolment waiting for its first code: what the person scans or types.
pub struct Enrolment {
    /// The key as text (base32), for typing into an app.
    pub key: String,
    /// The `otpauth://` URL, as an SVG QR code.
    pub qr_svg: String,
}

/// Starts (or resumes) enrolment: a fresh secret unless one is already waiting. `None`
/// when a second factor is already enabled.
pub async fn start_enrolment(
    pool: &PgPool,
    user_id: i64,
    username: &str,
) -> sqlx::Result<Option<Enrolment>> {
    let mut fresh = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut fresh);
    let row = sqlx::query!(
        r#"
        INSERT INTO totp_credentials (user_id, secret) VALUES ($1, $2)
        ON CONFLICT (user_id) DO UPDATE SET user_id = EXCLUDED.user_id
        RETURNING secret, enabled_at
        "#,
        user_id,
        &fresh[..]
    )
    .fetch_one(pool)
    .await?;
    if row.enabled_at.is_some() {
        return Ok(None);
    }
    Ok(enrolment(&row.secret, username))
}

fn enrolment(secret: &[u8], username: &str) -> Option<Enrolment> {
    let totp = totp(secret, username)?;
    let url = totp.to_url().ok()?;
    let qr = qrcode::QrCode::new(url.as_bytes()).ok()?;
    let svg = qr
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    Some(Enrolment {
        key: Secret::from(secret.to_vec()).to_base32(),
        qr_svg: format!("data:image/svg+xml;base64,{}", STANDARD.encode(svg)),
    })
}

/// Fresh recovery codes, shown once: `xxxx-xxxx-xxxx-xxxx` from a 31-letter alphabet.
fn new_codes() -> Vec<String> {
    let mut rng = rand::rngs::OsRng;
    (0..RECOVERY_CODES)
        .map(|_| {
            let letters: String = (0..16)
                .map(|_| {
                    let mut byte = [0u8; 1];
                    loop {
                        rng.fill_bytes(&mut byte);
                        // Rejection sampling keeps every letter equally likely.
                        if usize::from(byte[0]) < 248 {
                            break;
                        }
                    }
                    CODE_ALPHABET[usize::from(byte[0]) % CODE_ALPHABET.len()] as char
                })
                .collect();
            format!(
                "{}-{}-{}-{}",
                &letters[0..4],
                &letters[4..8],
                &letters[8..12],
                &letters[12..16]
            )
        })
        .collect()
}

fn code_hash(code: &str) -> Vec<u8> {
    let normalized: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Sha256::digest(normalized.as_bytes()).to_vec()
}

/// Replaces the user's recovery codes with new ones; returns them (to show once).
async fn replace_codes(tx: &mut sqlx::PgConnection, user_id: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query!("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
        .execute(&mut *tx)
        .await?;
    let codes = new_codes();
    let hashes: Vec<Vec<u8>> = codes.iter().map(|c| code_hash(c)).collect();
    sqlx::query!(
        "INSERT INTO recovery_codes (user_id, code_hash) SELECT $1, UNNEST($2::bytea[])",
        user_id,
        &hashes
    )
    .execute(&mut *tx)
    .await?;
    Ok(codes)
}

/// Enables the waiting enrolment if `code` is valid for it; returns the recovery codes.
/// `None` for a wrong code (or no enrolment waiting).
pub async fn confirm_enrolment(
    pool: &PgPool,
    actor: &Actor,
    user_id: i64,
    code: &str,
    now: OffsetDateTime,
) -> sqlx::Result<Option<Vec<String>>> {
    let mut tx = pool.begin().await?;
    let secret = sqlx::query_scalar!(
        "SELECT secret FROM totp_credentials WHERE user_id = $1 AND enabled_at IS NULL FOR UPDATE",
        user_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let step = secret
        .as_deref()
        .and_then(|secret| totp(secret, ""))
        .and_then(|totp| totp.check(code.trim(), unix_seconds(now)));
    let Some(step) = step else {
        return Ok(None);
    };
    sqlx::query!(
        "UPDATE totp_credentials SET enabled_at = now(), last_used_step = $2 WHERE user_id = $1",
        user_id,
        i64::try_from(step).unwrap_or(i64::MAX)
    )
    .execute(&mut *tx)
    .await?;
    let codes = replace_codes(&mut tx, user_id).await?;
    audit::write_in(
        &mut *tx,
        &actor.event("second_factor_enabled", &actor.username),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(codes))
}

/// Checks a second-factor code (a TOTP code or a recovery code) and spends it.
pub async fn verify(
    pool: &PgPool,
    user_id: i64,
    code: &str,
    now: OffsetDateTime,
) -> sqlx::Result<Option<Proof>> {
    let typed = code.trim();
    if typed.len() <= 8 && typed.chars().all(|c| c.is_ascii_digit() || c == ' ') {
        let secret = sqlx::query_scalar!(
            "SELECT secret FROM totp_credentials WHERE user_id = $1 AND enabled_at IS NOT NULL",
            user_id
        )
        .fetch_optional(pool)
        .await?;
        let digits: String = typed.chars().filter(char::is_ascii_digit).collect();
        let step = secret
            .as_deref()
            .and_then(|secret| totp(secret, ""))
            .and_then(|totp| totp.check(&digits, unix_seconds(now)));
        let Some(step) = step else {
            return Ok(None);
        };
        // Only a step later than the last one accepted: no replay within the window.
        let spent = sqlx::query!(
            r#"
            UPDATE totp_credentials SET last_used_step = $2
            WHERE user_id = $1 AND enabled_at IS NOT NULL AND last_used_step < $2
            "#,
            user_id,
            i64::try_from(step).unwrap_or(i64::MAX)
        )
        .execute(pool)
        .await?
        .rows_affected();
        return Ok((spent == 1).then_some(Proof::Totp));
    }
    let used = sqlx::query!(
        r#"
        UPDATE recovery_codes SET used_at = now()
        WHERE id = (SELECT id FROM recovery_codes
                    WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL
                    LIMIT 1 FOR UPDATE)
        "#,
        user_id,
        code_hash(typed)
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok((used == 1).then_some(Proof::RecoveryCode))
}

/// New recovery codes (the old ones stop working); shown once.
pub async fn regenerate_codes(
    pool: &PgPool,
    actor: &Actor,
    user_id: i64,
) -> sqlx::Result<Vec<String>> {
    let mut tx = pool.begin().await?;
    let codes = replace_codes(&mut tx, user_id).await?;
    audit::write_in(
        &mut *tx,
        &actor.event("recovery_codes_regenerated", &actor.username),
    )
    .await?;
    tx.commit().await?;
    Ok(codes)
}

/// Removes the second factor and its recovery codes (the owner turning it off, or an
/// administrator resetting it: `event` says which, recorded about `target`).
pub async fn remove(
    executor: &mut sqlx::PgConnection,
    actor: &Actor,
    event: &'static str,
    user_id: i64,
    target: &str,
) -> sqlx::Result<bool> {
    // The codes first: a code being spent at this moment holds its row and then waits for
    // the user's row (the triggers of migrations 0015 and 0016 lock it). Removing the app
    // first would take the user's row and then wait for the code's: a deadlock.
    sqlx::query!("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
        .execute(&mut *executor)
        .await?;
    let removed = sqlx::query!("DELETE FROM totp_credentials WHERE user_id = $1", user_id)
        .execute(&mut *executor)
        .await?
        .rows_affected();
    if removed > 0 {
        let audit_event = actor
            .event(event, target)
            .detail(json!({ "factor": "totp" }));
        audit::write_in(&mut *executor, &audit_event).await?;
    }
    Ok(removed > 0)
}

/// Whether the user has a second factor: an enabled authenticator app or a passkey, read
/// from the tables themselves (the rule the triggers of migration 0015 keep
/// `users.has_second_factor`, and so `SessionUser::has_second_factor`, to).
pub async fn enabled(executor: impl PgExecutor<'_>, user_id: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM totp_credentials
                          WHERE user_id = $1 AND enabled_at IS NOT NULL)
                  OR EXISTS (SELECT 1 FROM passkeys WHERE user_id = $1) AS "enabled!""#,
        user_id
    )
    .fetch_one(executor)
    .await
}

/// Which second factors a user can answer with: what the second step and the
/// re-authentication pages ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Factors {
    /// An enabled authenticator app.
    pub totp: bool,
    /// Unused recovery codes.
    pub recovery_codes: i64,
    /// Registered passkeys.
    pub passkeys: i64,
}

impl Factors {
    /// Whether a code (from the app, or a recovery code) can be typed.
    pub fn takes_codes(&self) -> bool {
        self.totp || self.recovery_codes > 0
    }
}

pub async fn factors(pool: &PgPool, user_id: i64) -> sqlx::Result<Factors> {
    let row = sqlx::query!(
        r#"
        SELECT EXISTS (SELECT 1 FROM totp_credentials
                       WHERE user_id = $1 AND enabled_at IS NOT NULL) AS "totp!",
               (SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL)
                   AS "recovery_codes!",
               (SELECT count(*) FROM passkeys WHERE user_id = $1) AS "passkeys!"
        "#,
        user_id
    )
    .fetch_one(pool)
    .await?;
    Ok(Factors {
        totp: row.totp,
        recovery_codes: row.recovery_codes,
        passkeys: row.passkeys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_distinct_and_readable() {
        let codes = new_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        for code in &codes {
            assert_eq!(code.len(), 19, "{code}");
            assert!(
                code.chars()
                    .all(|c| c == '-' || CODE_ALPHABET.contains(&(c as u8)))
            );
        }
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), codes.len());
        // Typed with spaces or capitals, a code is the same code.
        assert_eq!(
            code_hash(&codes[0]),
            code_hash(&codes[0].to_uppercase().replace('-', " "))
        );
    }

    #[test]
    fn codes_match_rfc_6238_and_allow_one_step_of_skew() {
        let secret = b"12345678901234567890";
        let totp = totp(secret, "alice").expect("totp");
        // RFC 6238 appendix B, SHA-1, truncated to 6 digits.
        assert_eq!(totp.generate(59).to_string(), "287082");
        assert_eq!(totp.check("287082", 59 + 30), Some(1));
        assert_eq!(totp.check("287082", 59 + 90), None);
        let enrolment = enrolment(secret, "alice").expect("enrolment");
        assert!(enrolment.qr_svg.starts_with("data:image/svg+xml;base64,"));
        assert_eq!(enrolment.key, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }
}
