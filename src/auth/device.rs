//! Device tokens (OWASP's "device cookie" defence against lockout as a weapon).
//!
//! After a successful sign-in the browser gets a long-lived cookie naming the account
//! (by its key) and a random device nonce, signed with the server key. A later attempt for
//! that account from a browser that presents a valid entry is a *known device*: it is
//! throttled on its own counter (`throttle::Scope::Device`), not on the account name's
//! shared counter nor the address's. A flood of guesses from anywhere else can therefore
//! slow down unknown devices only; the owner, on a browser that signed in before, is
//! never shut out by someone else's failures.
//!
//! The cookie is stateless (nothing is stored per device): its entries are
//! `base64(account key).nonce.tag`, separated by `~`, newest first, at most
//! [`MAX_ENTRIES`] (one browser may be used for a few accounts).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;

use super::csrf::CsrfKey;

/// Accounts remembered per browser.
pub const MAX_ENTRIES: usize = 5;
/// How long a browser stays a known device after its last successful sign-in.
pub const LIFETIME: time::Duration = time::Duration::days(365);
/// Longest cookie value read (anything longer is ignored as garbage).
const MAX_COOKIE: usize = 1024;

struct Entry<'a> {
    account: String,
    nonce: &'a str,
    tag: &'a str,
}

fn entries(cookie: &str) -> impl Iterator<Item = Entry<'_>> {
    let cookie = if cookie.len() > MAX_COOKIE {
        ""
    } else {
        cookie
    };
    cookie
        .split('~')
        .filter_map(|entry| {
            let mut parts = entry.splitn(3, '.');
            let account = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
            Some(Entry {
                account: String::from_utf8(account).ok()?,
                nonce: parts.next()?,
                tag: parts.next()?,
            })
        })
        .take(MAX_ENTRIES)
}

/// The device nonce this cookie carries for `account_key`, if its signature is valid.
pub fn known(key: &CsrfKey, cookie: Option<&str>, account_key: &str) -> Option<String> {
    entries(cookie?)
        .find(|e| e.account == account_key && key.verify_device_tag(account_key, e.nonce, e.tag))
        .map(|e| e.nonce.to_owned())
}

/// The cookie value after a successful sign-in to `account_key`: its entry first (a fresh
/// nonce for a new device, the same one for a known device), then the browser's other
/// valid entries.
pub fn remember(key: &CsrfKey, cookie: Option<&str>, account_key: &str) -> String {
    let nonce = known(key, cookie, account_key).unwrap_or_else(|| {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        URL_SAFE_NO_PAD.encode(bytes)
    });
    let first = format!(
        "{}.{nonce}.{}",
        URL_SAFE_NO_PAD.encode(account_key),
        key.device_tag(account_key, &nonce)
    );
    let others = entries(cookie.unwrap_or_default())
        .filter(|e| e.account != account_key && key.verify_device_tag(&e.account, e.nonce, e.tag))
        .map(|e| {
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(&e.account),
                e.nonce,
                e.tag
            )
        });
    std::iter::once(first)
        .chain(others)
        .take(MAX_ENTRIES)
        .collect::<Vec<_>>()
        .join("~")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_device_is_known_for_its_account_only() {
        let key = CsrfKey::from_bytes([3; 32]);
        let cookie = remember(&key, None, "alice");
        let nonce = known(&key, Some(&cookie), "alice").expect("known");
        assert_eq!(known(&key, Some(&cookie), "bob"), None);
        // Signing in again keeps the same device nonce; another account is added.
        let cookie = remember(&key, Some(&cookie), "alice");
        assert_eq!(known(&key, Some(&cookie), "alice"), Some(nonce.clone()));
        let cookie = remember(&key, Some(&cookie), "bob");
        assert_eq!(known(&key, Some(&cookie), "alice"), Some(nonce));
        assert!(known(&key, Some(&cookie), "bob").is_some());
    }

    #[test]
    fn forged_or_foreign_entries_are_not_known() {
        let key = CsrfKey::from_bytes([3; 32]);
        let other = CsrfKey::from_bytes([4; 32]);
        let cookie = remember(&other, None, "alice");
        assert_eq!(known(&key, Some(&cookie), "alice"), None);
        // Another account's valid entry does not vouch for this one.
        let bob = remember(&key, None, "bob");
        let swapped = bob.replacen(
            &URL_SAFE_NO_PAD.encode("bob"),
            &URL_SAFE_NO_PAD.encode("alice"),
            1,
        );
        assert_eq!(known(&key, Some(&swapped), "alice"), None);
        for garbage in ["", "~~~", "a.b", "!!!.x.y", &"x".repeat(5000)] {
            assert_eq!(known(&key, Some(garbage), "alice"), None, "{garbage}");
        }
    }

    #[test]
    fn at_most_a_few_accounts_are_remembered() {
        let key = CsrfKey::from_bytes([3; 32]);
        let mut cookie = String::new();
        for i in 0..(MAX_ENTRIES + 3) {
            cookie = remember(&key, Some(&cookie), &format!("user{i}"));
        }
        assert_eq!(cookie.split('~').count(), MAX_ENTRIES);
        assert!(known(&key, Some(&cookie), &format!("user{}", MAX_ENTRIES + 2)).is_some());
        assert!(known(&key, Some(&cookie), "user0").is_none());
    }
}
