//! A person's sessions as the account page and an administrator's user page list them:
//! one card per session, the device in words, times relative and in the viewer's zone.

use time::OffsetDateTime;

use crate::{
    auth::session::SessionSummary,
    display::{Moment, Zone, device_name, sign_in_method},
};

pub struct SessionLine {
    pub id: i64,
    /// The session this page was requested with.
    pub current: bool,
    /// "Chrome on macOS".
    pub device: String,
    /// The stored user agent, for the tooltip.
    pub user_agent: String,
    /// "Password and authenticator code".
    pub method: &'static str,
    pub ip: String,
    pub created: Moment,
    pub last_seen: Moment,
    pub expires: Moment,
    /// Where its "Sign out" button posts.
    pub revoke_action: String,
    pub button: &'static str,
}

/// What the list needs besides the sessions: whose page, in which zone.
pub struct ListOptions<'a> {
    /// The viewer's session row, marked "This device".
    pub current: Option<i64>,
    pub zone: &'a Zone,
    /// The "Sign out" button's action for a session id.
    pub revoke_action: &'a dyn Fn(i64) -> String,
    /// The label of the current session's button, and of the others'.
    pub buttons: (&'static str, &'static str),
}

pub fn session_lines(sessions: &[SessionSummary], options: &ListOptions<'_>) -> Vec<SessionLine> {
    let now = OffsetDateTime::now_utc();
    sessions
        .iter()
        .map(|s| {
            let current = Some(s.id) == options.current;
            let user_agent = s.user_agent.clone().unwrap_or_default();
            SessionLine {
                id: s.id,
                current,
                // Worked out here, from the stored (capped) string, only for pages that
                // list sessions: requests never pay for it.
                device: device_name(&user_agent),
                user_agent: if user_agent.is_empty() {
                    "No user agent was sent.".into()
                } else {
                    user_agent
                },
                method: sign_in_method(s.auth_method.as_deref()),
                ip: s.ip.clone().unwrap_or_else(|| "—".into()),
                created: options.zone.moment(s.created_at, now),
                last_seen: options.zone.moment(s.last_seen_at, now),
                expires: options.zone.moment(s.expires_at, now),
                revoke_action: (options.revoke_action)(s.id),
                button: if current {
                    options.buttons.0
                } else {
                    options.buttons.1
                },
            }
        })
        .collect()
}
