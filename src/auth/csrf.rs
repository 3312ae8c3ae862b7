//! CSRF tokens that cost no storage.
//!
//! - Signed in: the synchronizer token is an HMAC of the session id under a server key, so
//!   every form of a session carries the same unguessable token and nothing is stored.
//! - Anonymous (the sign-in form): a signed double-submit cookie. `GET /login` sets a random
//!   cookie and the form carries an HMAC of it; an attacker who can plant cookies still
//!   cannot compute the HMAC. Keeping this stateless means anonymous visitors (bots,
//!   monitors) never create a session row.
//!
//! The key lives in the database (`server_keys`) so every instance behind a load balancer
//! shares it without configuration.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use sqlx::PgPool;
use tower_sessions::session::Id;

type HmacSha256 = Hmac<Sha256>;

/// The server key, kept as an HMAC state with the key already absorbed: every signed-in
/// page computes a token, and keying HMAC-SHA256 from scratch costs two extra SHA-256
/// compressions each time (measured: ~8% of the hot path's instructions before this).
#[derive(Clone)]
pub struct CsrfKey(HmacSha256);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl CsrfKey {
    /// Loads the shared key, creating it on first start (first writer wins).
    pub async fn load_or_create(pool: &PgPool) -> sqlx::Result<CsrfKey> {
        let mut fresh = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        sqlx::query!(
            "INSERT INTO server_keys (name, key) VALUES ('csrf', $1) ON CONFLICT (name) DO NOTHING",
            &fresh[..]
        )
        .execute(pool)
        .await?;
        let stored = sqlx::query_scalar!("SELECT key FROM server_keys WHERE name = 'csrf'")
            .fetch_one(pool)
            .await?;
        let mut key = [0u8; 32];
        let len = stored.len().min(32);
        key[..len].copy_from_slice(&stored[..len]);
        Ok(CsrfKey::from_bytes(key))
    }

    pub fn from_bytes(key: [u8; 32]) -> CsrfKey {
        // new_from_slice only fails for key sizes HMAC cannot take; 32 bytes always works.
        CsrfKey(
            <HmacSha256 as Mac>::new_from_slice(&key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts any key length")),
        )
    }

    fn mac(&self, purpose: &[u8], value: &[u8]) -> HmacSha256 {
        let mut mac = self.0.clone();
        mac.update(purpose);
        mac.update(b"\0");
        mac.update(value);
        mac
    }

    fn token(&self, purpose: &[u8], value: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(purpose, value).finalize().into_bytes())
    }

    fn verify(&self, purpose: &[u8], value: &[u8], token: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(token.trim()) else {
            return false;
        };
        // verify_slice compares in constant time.
        self.mac(purpose, value).verify_slice(&tag).is_ok()
    }

    pub fn session_token(&self, session: Id) -> String {
        self.token(b"session", &session.0.to_le_bytes())
    }

    pub fn verify_session_token(&self, session: Id, token: &str) -> bool {
        self.verify(b"session", &session.0.to_le_bytes(), token)
    }

    pub fn anonymous_token(&self, cookie: &str) -> String {
        self.token(b"anonymous", cookie.as_bytes())
    }

    pub fn verify_anonymous_token(&self, cookie: &str, token: &str) -> bool {
        !cookie.is_empty() && self.verify(b"anonymous", cookie.as_bytes(), token)
    }

    /// The tag of a device token (`auth::device`): binds a device nonce to an account key.
    pub fn device_tag(&self, account_key: &str, nonce: &str) -> String {
        self.token(b"device", format!("{account_key}\0{nonce}").as_bytes())
    }

    pub fn verify_device_tag(&self, account_key: &str, nonce: &str, tag: &str) -> bool {
        self.verify(b"device", format!("{account_key}\0{nonce}").as_bytes(), tag)
    }

    /// The tag of a sign-in waiting for its second factor (`auth::sign_in::Pending`).
    pub fn pending_tag(&self, value: &str) -> String {
        self.token(b"second-factor", value.as_bytes())
    }

    pub fn verify_pending_tag(&self, value: &str, tag: &str) -> bool {
        self.verify(b"second-factor", value.as_bytes(), tag)
    }

    /// The tag of a passkey ceremony's state kept by the browser (`auth::passkey`).
    pub fn ceremony_tag(&self, value: &str) -> String {
        self.token(b"passkey-ceremony", value.as_bytes())
    }

    pub fn verify_ceremony_tag(&self, value: &str, tag: &str) -> bool {
        self.verify(b"passkey-ceremony", value.as_bytes(), tag)
    }

    /// The tag of the cookie that carries a one-time password link's token
    /// (`web::pages::password_link`).
    pub fn link_tag(&self, value: &str) -> String {
        self.token(b"password-link", value.as_bytes())
    }

    pub fn verify_link_tag(&self, value: &str, tag: &str) -> bool {
        self.verify(b"password-link", value.as_bytes(), tag)
    }
}

/// A fresh random value for the anonymous CSRF cookie.
pub fn new_cookie_value() -> String {
    let mut value = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut value);
    URL_SAFE_NO_PAD.encode(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_for_their_own_session_and_purpose() {
        let key = CsrfKey::from_bytes([7; 32]);
        let a = Id(1);
        let b = Id(2);
        let token = key.session_token(a);
        assert!(key.verify_session_token(a, &token));
        assert!(!key.verify_session_token(b, &token));
        assert!(!key.verify_anonymous_token("x", &key.anonymous_token("y")));
        assert!(key.verify_anonymous_token("x", &key.anonymous_token("x")));
        assert!(!key.verify_session_token(a, "not base64 !!"));
        assert!(!key.verify_session_token(a, ""));
        assert!(!key.verify_anonymous_token("", &key.anonymous_token("")));
    }

    #[test]
    fn another_key_rejects() {
        let token = CsrfKey::from_bytes([1; 32]).session_token(Id(5));
        assert!(!CsrfKey::from_bytes([2; 32]).verify_session_token(Id(5), &token));
    }
}
