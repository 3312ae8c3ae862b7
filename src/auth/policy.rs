//! The password policy (NIST SP 800-63B rev. 4, 3.1.1.2): a minimum length (15 by default),
//! up to 128 characters counted as code points after NFKC, any Unicode, no composition
//! rules — and a blocklist: common and breached passwords, the username, and passwords
//! guessable within about a million tries.
//!
//! The blocklist is zxcvbn's: its dictionaries (the 30,000 most common passwords of public
//! breach corpora, plus English words and names), matched with l33t substitutions,
//! reversal, repeats, sequences and keyboard patterns. A well-kept crate beats a list we
//! would have to curate ourselves.

use unicode_normalization::UnicodeNormalization;
use zxcvbn::{
    Score,
    matching::patterns::{DictionaryPattern, MatchPattern},
};

use super::password::{self, HashError, MAX_PASSWORD_BYTES, MAX_PASSWORD_CHARS, PasswordHasher};

/// The recommended minimum when the password is the only factor.
pub const RECOMMENDED_MIN: usize = 15;

/// How much of a password zxcvbn looks at. Its matching grows far faster than the input
/// (every combination of l33t readings, every substring against every dictionary;
/// zxcvbn-rs issue 69): measured here in a release build, crafted passwords of 100
/// characters (zxcvbn-rs's own cut-off) took 0.5–1 s, of 64 about 250–290 ms, of 32 at
/// most 75 ms, and ordinary passphrases of any length a few milliseconds. The cap costs
/// no safety: characters after it only add guesses, so the estimate for the prefix is a
/// lower bound, and a prefix of 32 characters that zxcvbn finds hard to guess leaves a
/// password far beyond online guessing whatever follows. (Whole-password matches against
/// the breached list and the username check still look at the whole password.)
pub const ESTIMATED_CHARS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("Enter a password.")]
    Empty,
    #[error("Use at least {0} characters (a few words make it easy).")]
    TooShort(usize),
    #[error("Use at most {MAX_PASSWORD_CHARS} characters.")]
    TooLong,
    #[error("This password is on a list of commonly used or breached passwords; choose another.")]
    Common,
    #[error("Do not use your username in your password.")]
    ContainsUsername,
    #[error(
        "This password is too easy to guess (repeated characters, a sequence or a keyboard pattern); choose another."
    )]
    Guessable,
}

/// Checks a new password and returns its normalized form, the one that gets hashed.
pub fn check(
    raw: &str,
    min_chars: usize,
    username: Option<&str>,
) -> Result<String, PasswordProblem> {
    if raw.is_empty() {
        return Err(PasswordProblem::Empty);
    }
    if raw.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordProblem::TooLong);
    }
    let normalized = password::normalize(raw);
    let chars = normalized.chars().count();
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordProblem::TooLong);
    }
    if chars < min_chars {
        return Err(PasswordProblem::TooShort(min_chars));
    }
    let lower = normalized.to_lowercase();
    let name = username.map(|u| u.trim().nfkc().collect::<String>().to_lowercase());
    if let Some(name) = name.as_deref().filter(|n| n.chars().count() >= 3)
        && lower.contains(name)
    {
        return Err(PasswordProblem::ContainsUsername);
    }
    let mut inputs = vec!["portcullis"];
    if let Some(name) = name.as_deref() {
        inputs.push(name);
    }
    let prefix: String = normalized.chars().take(ESTIMATED_CHARS).collect();
    let entropy = zxcvbn::zxcvbn(&prefix, &inputs);
    let whole = |m: &zxcvbn::matching::Match| m.i == 0 && m.j + 1 >= chars;
    for m in entropy.sequence() {
        if let MatchPattern::Dictionary(DictionaryPattern { dictionary_name, .. }) = &m.pattern
            && whole(m)
            // zxcvbn exposes the field but not its enum type; its Debug name is stable.
            && format!("{dictionary_name:?}") == "Passwords"
        {
            return Err(PasswordProblem::Common);
        }
    }
    if entropy.score() < Score::Two {
        return Err(PasswordProblem::Guessable);
    }
    Ok(normalized)
}

/// [`check`] on a hashing worker (tens of milliseconds for crafted input, even capped: not
/// for the async threads). `Err` when the workers are saturated (a 503 for the caller).
pub async fn check_on(
    hasher: &PasswordHasher,
    raw: &str,
    min_chars: usize,
    username: Option<&str>,
) -> Result<Result<String, PasswordProblem>, HashError> {
    if raw.len() > MAX_PASSWORD_BYTES {
        // Refused without copying it anywhere.
        return Ok(Err(PasswordProblem::TooLong));
    }
    let raw = raw.to_owned();
    let username = username.map(str::to_owned);
    hasher
        .run_other(move || check(&raw, min_chars, username.as_deref()))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_counts_code_points_after_nfkc() {
        assert_eq!(check("", 15, None), Err(PasswordProblem::Empty));
        assert_eq!(
            check("a few words", 15, None),
            Err(PasswordProblem::TooShort(15))
        );
        // 15 precomposed é in NFKC; 14 is too short.
        assert_eq!(
            check(&"é".repeat(14), 15, None),
            Err(PasswordProblem::TooShort(15))
        );
        assert_eq!(
            check(&"x".repeat(129), 8, None),
            Err(PasswordProblem::TooLong)
        );
        assert_eq!(
            check(&"x".repeat(10_000), 8, None),
            Err(PasswordProblem::TooLong)
        );
    }

    #[test]
    fn any_unicode_passphrase_of_enough_length_passes() {
        for ok in [
            "correct horse battery staple",
            "tarte aux fraises du dimanche",
            "Ünïcödé wörks fïne hére tøø",
            "日本語のパスワードも大丈夫です",
            "a few words, nothing more",
        ] {
            assert!(
                check(ok, 15, None).is_ok(),
                "{ok:?}: {:?}",
                check(ok, 15, None)
            );
        }
    }

    #[test]
    fn only_a_prefix_is_estimated() {
        // Guessable as a whole (a repeat), but its first 32 characters are not: accepted.
        let strong_start = "vq7Ltr2-kpw9xZn4-hcb3Mjd8-sYf6Rqa";
        let long = format!("{strong_start}{}", "a".repeat(90));
        assert_eq!(check(&long, 15, None), Ok(long.clone()));
        // A guessable start is refused whatever follows.
        let weak_start = format!("{}{strong_start}", "a".repeat(32));
        assert_eq!(
            check(&weak_start, 15, None),
            Err(PasswordProblem::Guessable)
        );
    }

    #[test]
    fn common_guessable_and_personal_passwords_are_refused() {
        assert_eq!(
            check("passwordpassword", 15, None),
            Err(PasswordProblem::Guessable)
        );
        assert_eq!(
            check("qwertyuiopasdfgh", 15, None),
            Err(PasswordProblem::Guessable)
        );
        assert_eq!(
            check("aaaaaaaaaaaaaaaaaaaa", 15, None),
            Err(PasswordProblem::Guessable)
        );
        assert_eq!(
            check("123456789012345", 15, None),
            Err(PasswordProblem::Guessable)
        );
        assert_eq!(check("password", 8, None), Err(PasswordProblem::Common));
        assert_eq!(check("p@ssw0rd", 8, None), Err(PasswordProblem::Common));
        assert_eq!(check("iloveyou", 8, None), Err(PasswordProblem::Common));
        assert_eq!(
            check("alice-in-wonderland-2026", 15, Some("Alice")),
            Err(PasswordProblem::ContainsUsername)
        );
        assert_eq!(
            check("portcullisportcullis", 15, None),
            Err(PasswordProblem::Guessable)
        );
    }
}
