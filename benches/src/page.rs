//! The HTML the ceiling and peer apps serve: Portcullis' layout (`templates/base.html`)
//! with the facts of `account.html` and `forbidden.html`, built with `format!`.

use std::fmt::Write;

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Who is signed in, for the header of every page.
pub struct Viewer<'a> {
    pub username: &'a str,
    pub role: &'a str,
    /// A form token for the sign-out button (the ceiling and peer have no CSRF; a fixed
    /// string keeps the bytes comparable).
    pub csrf: &'a str,
}

fn layout(title: &str, viewer: &Viewer<'_>, content: &str) -> String {
    let mut html = String::with_capacity(2048 + content.len());
    let username = escape(viewer.username);
    let role = escape(viewer.role);
    // Writing to a String cannot fail.
    let _ = write!(
        html,
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title} · Portcullis</title>
<link rel="stylesheet" href="/static/app.css?v=000000000000">
</head>
<body>
<a class="skip-link" href="#main">Skip to main content</a>
<header class="site-header">
  <div class="bar">
    <a class="brand" href="/">Portcullis</a>
    <nav aria-label="Main">
      <ul>
        <li><a href="/account">Account</a></li>
        <li><a href="/reports">Reports</a></li>
        <li><a href="/admin">Admin</a></li>
      </ul>
    </nav>
    <div class="who">
      <span class="signed-in">Signed in as <strong>{username}</strong> <span class="badge role-{role}">{role}</span></span>
      <form method="post" action="/logout" class="inline">
        <input type="hidden" name="csrf" value="{csrf}">
        <button type="submit" class="secondary">Sign out</button>
      </form>
    </div>
  </div>
</header>
<main id="main" tabindex="-1">
{content}
</main>
<footer class="site-footer">
  <p>Portcullis — sign-in done right: 401 means “who are you?”, 403 means “you may not”.</p>
</footer>
</body>
</html>"##,
        title = escape(title),
        csrf = escape(viewer.csrf),
    );
    html
}

/// The facts `/account` shows.
pub struct Account<'a> {
    pub signed_in_at: &'a str,
    pub idle_expires_at: &'a str,
    pub absolute_expires_at: &'a str,
    pub previous_sign_in: Option<&'a str>,
}

pub fn account(viewer: &Viewer<'_>, account: &Account<'_>) -> String {
    let previous = match account.previous_sign_in {
        Some(at) => escape(at),
        None => "This is your first sign-in.".to_owned(),
    };
    let role = escape(viewer.role);
    let content = format!(
        r#"<h1>Your account</h1>
<dl class="facts">
  <dt>Username</dt><dd>{username}</dd>
  <dt>Role</dt><dd><span class="badge role-{role}">{role}</span></dd>
  <dt>This session started</dt><dd>{started}</dd>
  <dt>Ends if idle until</dt><dd>{idle} <span class="muted">(each request pushes this back)</span></dd>
  <dt>Ends at the latest</dt><dd>{absolute}</dd>
  <dt>Previous sign-in</dt>
  <dd>{previous}</dd>
</dl>
<p class="muted">If the previous sign-in was not you, change your password and tell your administrator.</p>"#,
        username = escape(viewer.username),
        started = escape(account.signed_in_at),
        idle = escape(account.idle_expires_at),
        absolute = escape(account.absolute_expires_at),
    );
    layout("Your account", viewer, &content)
}

pub fn forbidden(viewer: &Viewer<'_>, required: &str, path: &str) -> String {
    let required = escape(required);
    let content = format!(
        r#"<div class="narrow">
<h1>You do not have access to this page</h1>
<p class="lead">You are signed in as <strong>{username}</strong> with the <strong>{role}</strong> role. The page <code>{path}</code> needs the <strong>{required}</strong> role.</p>
<p><strong>Signing in again will not help</strong> — your account is fine, it just has not been given this role. Ask an administrator to grant you the {required} role.</p>
<p class="actions"><a class="button" href="/">Go to the home page</a> <a href="/account">Your account</a></p>
</div>"#,
        username = escape(viewer.username),
        role = escape(viewer.role),
        path = escape(path),
    );
    layout("Access denied", viewer, &content)
}
