//! Why a request is not signed in, and what the sign-in page tells the person about it.

/// Why a request is not signed in: the reasons behind every 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSignedIn {
    NoSession,
    /// A session cookie that is not a well-formed session id.
    TamperedCookie,
    /// A well-formed id with no row: signed out, swept, or guessed.
    UnknownSession,
    ExpiredIdle,
    ExpiredAbsolute,
    Revoked,
    /// Revoked by a newer sign-in beyond `--max-sessions`.
    SessionLimit,
    UserDisabled,
}

/// What the sign-in page tells the person, from the closed set of notices it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    SignInRequired,
    Expired,
    /// A form was posted after its session ended.
    FormExpired,
    Revoked,
    SignedOut,
    /// The first administrator was just created at /setup.
    SetupDone,
    /// The second step of a sign-in was not completed in time (or its note is invalid).
    SecondStepExpired,
    /// A newer sign-in took this session's place (`--max-sessions`).
    SessionLimit,
}

impl Notice {
    pub fn key(self) -> &'static str {
        match self {
            Notice::SignInRequired => "required",
            Notice::Expired => "expired",
            Notice::FormExpired => "form_expired",
            Notice::Revoked => "revoked",
            Notice::SignedOut => "signed_out",
            Notice::SetupDone => "setup_done",
            Notice::SecondStepExpired => "second_step_expired",
            Notice::SessionLimit => "session_limit",
        }
    }

    pub fn from_key(key: &str) -> Option<Notice> {
        [
            Notice::SignInRequired,
            Notice::Expired,
            Notice::FormExpired,
            Notice::Revoked,
            Notice::SignedOut,
            Notice::SetupDone,
            Notice::SecondStepExpired,
            Notice::SessionLimit,
        ]
        .into_iter()
        .find(|notice| notice.key() == key)
    }

    pub fn message(self) -> &'static str {
        match self {
            Notice::SignInRequired => "Please sign in to continue.",
            Notice::Expired => "Your session has expired, please sign in again.",
            Notice::FormExpired => {
                "Your session expired before the form was sent; sign in and send it again."
            }
            Notice::Revoked => {
                "You were signed out of this session. Sign in again; if you did not expect \
                 this, contact your administrator."
            }
            Notice::SignedOut => "You have been signed out.",
            Notice::SetupDone => "The administrator account was created. Sign in with it.",
            Notice::SecondStepExpired => {
                "Your sign-in was not completed in time. Sign in again with your password."
            }
            Notice::SessionLimit => {
                "You were signed out because you signed in on another device. Sign in again \
                 to continue here (that signs out your oldest session instead)."
            }
        }
    }
}

impl NotSignedIn {
    /// The precise reason, for logs and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            NotSignedIn::NoSession => "no_session",
            NotSignedIn::TamperedCookie => "tampered_cookie",
            NotSignedIn::UnknownSession => "unknown_session",
            NotSignedIn::ExpiredIdle => "expired_idle",
            NotSignedIn::ExpiredAbsolute => "expired_absolute",
            NotSignedIn::Revoked => "revoked",
            NotSignedIn::SessionLimit => "session_limit",
            NotSignedIn::UserDisabled => "user_disabled",
        }
    }

    /// The reason told to API clients. A disabled account reads as "revoked": the holder of
    /// a session learns that it ended, not why.
    pub fn client_reason(self) -> &'static str {
        match self {
            NotSignedIn::NoSession => "no_session",
            NotSignedIn::TamperedCookie | NotSignedIn::UnknownSession => "invalid_session",
            NotSignedIn::ExpiredIdle => "session_expired_idle",
            NotSignedIn::ExpiredAbsolute => "session_expired_absolute",
            NotSignedIn::Revoked | NotSignedIn::UserDisabled => "session_revoked",
            NotSignedIn::SessionLimit => "session_limit",
        }
    }

    /// The notice for a page view (`form: false`) or a submitted form (`form: true`).
    pub fn notice(self, form: bool) -> Notice {
        match self {
            NotSignedIn::Revoked | NotSignedIn::UserDisabled => Notice::Revoked,
            NotSignedIn::SessionLimit => Notice::SessionLimit,
            _ if form => Notice::FormExpired,
            NotSignedIn::NoSession | NotSignedIn::TamperedCookie | NotSignedIn::UnknownSession => {
                Notice::SignInRequired
            }
            NotSignedIn::ExpiredIdle | NotSignedIn::ExpiredAbsolute => Notice::Expired,
        }
    }
}
