//! The HTML the ceiling and peer apps serve: Portcullis' layout (`templates/base.html`)
//! with the facts of `account.html` and `forbidden.html`, written straight into one
//! `String`.
//!
//! The account page is byte for byte what Portcullis renders for the benchmark's users
//! (a member, several sessions, no second factor, no access requests), tokens and times
//! aside: the driver's pre-flight check compares the sizes, so a template change in
//! Portcullis that this file does not follow shows up in the report. It is written the
//! cheapest plain way (no template engine, escaping that copies runs of safe text), so the
//! ceiling stays a floor.

/// Appends `text` escaped for HTML element content and double-quoted attributes.
pub fn escape_into(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&#34;",
            _ => "&#39;",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// `text` escaped for HTML (see [`escape_into`]).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

/// Who is signed in, for the header of every page.
pub struct Viewer<'a> {
    pub username: &'a str,
    pub role: &'a str,
    /// A form token for the sign-out button (the ceiling and peer have no CSRF; a fixed
    /// string of a token's length keeps the bytes comparable).
    pub csrf: &'a str,
}

/// Writes Portcullis' layout around what `content` writes.
fn layout(
    title: &str,
    head: &str,
    viewer: &Viewer<'_>,
    size: usize,
    content: impl FnOnce(&mut String),
) -> String {
    let mut html = String::with_capacity(size);
    html.push_str(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n<title>",
    );
    escape_into(&mut html, title);
    html.push_str(
        " · Portcullis</title>\n<link rel=\"stylesheet\" href=\"/static/app.css?v=000000000000\">",
    );
    html.push_str(head);
    html.push_str(
        "\n</head>\n<body>\n<a class=\"skip-link\" href=\"#main\">Skip to main content</a>\n\
         <header class=\"site-header\">\n  <div class=\"bar\">\n    \
         <a class=\"brand\" href=\"/\">Portcullis</a>\n    <nav aria-label=\"Main\">\n      <ul>\n        \
         <li><a href=\"/account\">Account</a></li>\n        \
         <li><a href=\"/reports\">Reports</a></li>\n        \
         <li><a href=\"/admin\">Admin</a></li>\n      </ul>\n    </nav>\n    <div class=\"who\">\n      \
         <span class=\"signed-in\">Signed in as <strong>",
    );
    escape_into(&mut html, viewer.username);
    html.push_str("</strong> <span class=\"badge role-");
    escape_into(&mut html, viewer.role);
    html.push_str("\">");
    escape_into(&mut html, viewer.role);
    html.push_str(
        "</span></span>\n      <form method=\"post\" action=\"/logout\" class=\"inline\">\n        \
         <input type=\"hidden\" name=\"csrf\" value=\"",
    );
    escape_into(&mut html, viewer.csrf);
    html.push_str(
        "\">\n        <button type=\"submit\" class=\"secondary\">Sign out</button>\n      \
         </form>\n    </div>\n  </div>\n</header>\n<main id=\"main\" tabindex=\"-1\">\n",
    );
    content(&mut html);
    html.push_str(
        "\n</main>\n<footer class=\"site-footer\">\n  <p>Portcullis — sign-in done right: \
         401 means “who are you?”, 403 means “you may not”.</p>\n</footer>\n</body>\n</html>",
    );
    html
}

/// The facts `/account` shows.
pub struct Account<'a> {
    pub signed_in_at: &'a str,
    pub idle_expires_at: &'a str,
    pub absolute_expires_at: &'a str,
    pub previous_sign_in: Option<&'a str>,
    /// The user's sessions, as Portcullis lists them (empty where a server cannot know
    /// them: axum-login's session store has no user column).
    pub sessions: &'a [SessionLine],
    /// Shortest password accepted (Portcullis' `--password-min-length`).
    pub min_password: usize,
    /// Whether two-step verification is on.
    pub second_factor: bool,
    /// When a recovery code was last used, if in the last 30 days, and how many are left.
    pub recovery_used: Option<String>,
    pub recovery_left: i64,
    /// The user's access requests.
    pub requests: &'a [RequestLine],
}

/// One access request, as the account page lists it.
pub struct RequestLine {
    pub role: String,
    pub path: String,
    pub status: String,
    pub asked: String,
}

/// A time as Portcullis' session cards show it (`portcullis::display::Moment`).
pub use portcullis::display::Moment;

/// One session card.
pub struct SessionLine {
    pub id: i64,
    /// The device in words, and the raw user agent (its tooltip).
    pub device: String,
    pub user_agent: String,
    pub method: &'static str,
    pub created: Moment,
    pub last_seen: Moment,
    pub expires: Moment,
    pub ip: String,
    pub current: bool,
}

/// The session cards (`templates/_sessions.html`) and the "sign out the others" form.
fn session_cards(html: &mut String, csrf: &str, sessions: &[SessionLine]) {
    html.push_str(
        "\n<h2 id=\"sessions\">Your sessions</h2>\n<p>Every browser or device where you are \
         signed in. Signing one out takes effect on its next request.</p>\n<ul class=\"sessions\">",
    );
    let time = |html: &mut String, label: &str, at: &Moment| {
        html.push_str("\n      <dt>");
        html.push_str(label);
        html.push_str("</dt><dd><time datetime=\"");
        escape_into(html, &at.datetime);
        html.push_str("\" title=\"");
        escape_into(html, &at.exact);
        html.push_str("\">");
        escape_into(html, &at.relative);
        html.push_str("</time></dd>");
    };
    for s in sessions {
        html.push_str(if s.current {
            "\n  <li class=\"session current\">"
        } else {
            "\n  <li class=\"session\">"
        });
        html.push_str("\n    <h3 class=\"device\"><span title=\"");
        escape_into(html, &s.user_agent);
        html.push_str("\">");
        escape_into(html, &s.device);
        html.push_str("</span>");
        if s.current {
            html.push_str(" <span class=\"badge this-device\">This device</span>");
        }
        html.push_str("</h3>\n    <dl>");
        time(html, "Last active", &s.last_seen);
        time(html, "Signed in", &s.created);
        html.push_str("\n      <dt>Signed in with</dt><dd>");
        escape_into(html, s.method);
        html.push_str("</dd>");
        time(html, "Ends", &s.expires);
        html.push_str("\n      <dt>IP address</dt><dd>");
        escape_into(html, &s.ip);
        html.push_str("</dd>\n    </dl>\n    <form method=\"post\" action=\"/account/sessions/");
        html.push_str(&s.id.to_string());
        html.push_str("/revoke\">\n      <input type=\"hidden\" name=\"csrf\" value=\"");
        escape_into(html, csrf);
        html.push_str("\">\n      <button type=\"submit\" class=\"secondary\">");
        html.push_str(if s.current {
            "Sign out"
        } else {
            "Sign out this session"
        });
        html.push_str("<span class=\"visually-hidden\">: ");
        escape_into(html, &s.device);
        html.push_str(", last active ");
        escape_into(html, &s.last_seen.relative);
        html.push_str("</span></button>\n    </form>\n  </li>");
    }
    html.push_str("\n</ul>");
    let others = sessions.iter().filter(|s| !s.current).count();
    if others > 0 {
        html.push_str(
            "\n<form method=\"post\" action=\"/account/sessions/revoke-others\" class=\"actions\">\n  \
             <input type=\"hidden\" name=\"csrf\" value=\"",
        );
        escape_into(html, csrf);
        html.push_str("\">\n  <button type=\"submit\">Sign out all other sessions (");
        html.push_str(&others.to_string());
        html.push_str(")</button>\n</form>");
    }
}

/// The time zone section, for a viewer who has not chosen one (times in UTC).
fn time_zone(html: &mut String, csrf: &str) {
    html.push_str(
        "\n\n\n<h2 id=\"time-zone\">Time zone</h2>\n<p data-time-zone=\"UTC\" \
         data-chosen=\"false\">Times on these pages are shown in <strong>UTC</strong>, until you \
         choose your time zone. <a href=\"/account/time-zone\">Choose your time zone</a></p>\n\
         <form method=\"post\" action=\"/account/time-zone\" class=\"browser-zone\" \
         data-browser-zone hidden>\n  <input type=\"hidden\" name=\"csrf\" value=\"",
    );
    escape_into(html, csrf);
    html.push_str(
        "\">\n  <input type=\"hidden\" name=\"time_zone\" value=\"\">\n  <p>Your browser is \
         set to <strong data-browser-zone-name></strong>.</p>\n  <button type=\"submit\" \
         class=\"secondary\">Use my browser’s time zone</button>\n</form>",
    );
}

fn requests_table(html: &mut String, requests: &[RequestLine]) {
    if requests.is_empty() {
        return;
    }
    html.push_str(
        "\n<h2 id=\"requests\">Your access requests</h2>\n<div class=\"table-wrap\">\n<table>\n  \
         <thead><tr><th scope=\"col\">Role</th><th scope=\"col\">For the page</th>\
         <th scope=\"col\">Asked</th><th scope=\"col\">Answer</th></tr></thead>\n  <tbody>",
    );
    for r in requests {
        html.push_str("\n    <tr>\n      <td>");
        escape_into(html, &r.role);
        html.push_str("</td>\n      <td>");
        escape_into(html, &r.path);
        html.push_str("</td>\n      <td>");
        escape_into(html, &r.asked);
        html.push_str("</td>\n      <td>");
        escape_into(html, &r.status);
        html.push_str("</td>\n    </tr>");
    }
    html.push_str("\n  </tbody>\n</table>\n</div>");
}

fn password_form(html: &mut String, viewer: &Viewer<'_>, min_password: usize) {
    html.push_str("\n\n<h2 id=\"password\">Change your password</h2>\n<p>Use at least ");
    html.push_str(&min_password.to_string());
    html.push_str(
        " characters. Changing it signs out all your other sessions.</p>\n\
         <form method=\"post\" action=\"/account/password\" class=\"stack narrow\" novalidate>\n  \
         <input type=\"hidden\" name=\"csrf\" value=\"",
    );
    escape_into(html, viewer.csrf);
    html.push_str("\">\n  <input type=\"text\" name=\"username\" value=\"");
    escape_into(html, viewer.username);
    html.push_str(
        "\" autocomplete=\"username\" hidden>\n  <div class=\"field\">\n    \
         <label for=\"current_password\">Current password</label>\n    \
         <input id=\"current_password\" name=\"current_password\" type=\"password\" \
         autocomplete=\"current-password\" required maxlength=\"512\">\n  </div>\n  \
         <div class=\"field\">\n    <label for=\"new_password\">New password</label>\n    \
         <input id=\"new_password\" name=\"new_password\" type=\"password\" \
         autocomplete=\"new-password\" required maxlength=\"512\">\n  </div>\n  \
         <div class=\"field\">\n    <label for=\"confirm_password\">New password again</label>\n    \
         <input id=\"confirm_password\" name=\"confirm_password\" type=\"password\" \
         autocomplete=\"new-password\" required maxlength=\"512\">\n  </div>\n  \
         <button type=\"submit\">Change password</button>\n</form>\n",
    );
}

pub fn account(viewer: &Viewer<'_>, account: &Account<'_>) -> String {
    let size = 4096 + 1024 * account.sessions.len();
    let head = "<script src=\"/static/time-zone.js?v=000000000000\" defer></script>";
    layout("Your account", head, viewer, size, |html| {
        html.push_str("\n<h1>Your account</h1>\n<dl class=\"facts\">\n  <dt>Username</dt><dd>");
        escape_into(html, viewer.username);
        html.push_str("</dd>\n  <dt>Role</dt><dd><span class=\"badge role-");
        escape_into(html, viewer.role);
        html.push_str("\">");
        escape_into(html, viewer.role);
        html.push_str("</span></dd>\n  <dt>This session started</dt><dd>");
        escape_into(html, account.signed_in_at);
        html.push_str("</dd>\n  <dt>Ends if idle until</dt><dd>");
        escape_into(html, account.idle_expires_at);
        html.push_str(
            " <span class=\"muted\">(each request pushes this back)</span></dd>\n  \
             <dt>Ends at the latest</dt><dd>",
        );
        escape_into(html, account.absolute_expires_at);
        html.push_str("</dd>\n  <dt>Previous sign-in</dt>\n  <dd>");
        match account.previous_sign_in {
            Some(at) => escape_into(html, at),
            None => html.push_str("This is your first sign-in."),
        }
        html.push_str(
            "</dd>\n</dl>\n<p class=\"muted\">If the previous sign-in was not you, change your \
             password below and tell your administrator.</p>",
        );
        if let Some(used) = &account.recovery_used {
            html.push_str(
                "\n<div class=\"notice\" role=\"status\">\n  <p class=\"notice-title\">A \
                 recovery code was used to sign in on ",
            );
            escape_into(html, used);
            html.push_str(".</p>\n  <p>");
            html.push_str(&account.recovery_left.to_string());
            html.push_str(" recovery codes left.</p>\n</div>");
        }
        html.push_str("\n\n<h2 id=\"two-factor\">Two-step verification</h2>\n<p>");
        html.push_str(if account.second_factor {
            "<strong>On.</strong> Signing in asks for a code from your authenticator app. \
             <a href=\"/account/two-factor\">Manage</a></p>\n"
        } else {
            "<strong>Off.</strong> Only your password protects this account. \
             <a href=\"/account/two-factor\">Turn it on</a></p>\n"
        });
        // The bench's users have no passkeys: the template's "none yet" case.
        html.push_str(
            "\n<h2 id=\"passkeys\">Passkeys</h2>\n<p>None yet. A passkey signs you in with your \
             device’s screen lock or a security key, no password needed. \
             <a href=\"/account/passkeys\">Add a passkey</a></p>\n",
        );
        session_cards(html, viewer.csrf, account.sessions);
        time_zone(html, viewer.csrf);
        requests_table(html, account.requests);
        password_form(html, viewer, account.min_password);
    })
}

pub fn forbidden(viewer: &Viewer<'_>, required: &str, path: &str) -> String {
    layout("Access denied", "", viewer, 2048, |html| {
        html.push_str(
            "<div class=\"narrow\">\n<h1>You do not have access to this page</h1>\n\
             <p class=\"lead\">You are signed in as <strong>",
        );
        escape_into(html, viewer.username);
        html.push_str("</strong> with the <strong>");
        escape_into(html, viewer.role);
        html.push_str("</strong> role. The page <code>");
        escape_into(html, path);
        html.push_str("</code> needs the <strong>");
        escape_into(html, required);
        html.push_str(
            "</strong> role.</p>\n<p><strong>Signing in again will not help</strong> — your \
             account is fine, it just has not been given this role. Ask an administrator to \
             grant you the ",
        );
        escape_into(html, required);
        html.push_str(
            " role.</p>\n<p class=\"actions\"><a class=\"button\" href=\"/\">Go to the home \
             page</a> <a href=\"/account\">Your account</a></p>\n</div>",
        );
    })
}
