//! Pages in the site's look: the layout every page shares (`Chrome`), site-wide facts
//! (`Site`), and rendering templates into responses.

use std::sync::Arc;

use askama::Template;
use axum::{
    body::Body,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::frame::FRAME_HEADERS;

use crate::{
    auth::{Role, SessionUser},
    config::Settings,
};

/// Site-wide presentation facts every page (including error pages) needs.
#[derive(Debug, Clone)]
pub struct Site {
    /// The stylesheet URL with a content hash, so it can be cached for a year.
    pub css_href: String,
    /// The passkey script's URL (`static/passkeys.js`), the same way; only the pages with
    /// passkey buttons load it.
    pub passkeys_js_href: String,
    /// The copy button's script (`static/copy.js`), the same way; only the admin's link
    /// page loads it.
    pub copy_js_href: String,
    /// The account page's time zone script (`static/time-zone.js`), the same way.
    pub time_zone_js_href: String,
    /// Whom to ask about access (`--support-contact`); `None`: "your administrator".
    pub support: Option<SupportContact>,
    /// `--demo`: every page says so.
    pub demo: bool,
    /// `--public-url`: the address people open the site at; requests naming another host
    /// are refused (`host.rs`).
    pub public_url: Option<url::Url>,
    /// `--smtp-url` is set: pages offer what needs mail ("Forgot your password?", the
    /// account's e-mail address); without it they mention e-mail nowhere.
    pub mail: bool,
}

impl Site {
    pub fn new(settings: &Settings) -> Site {
        let versioned = |file: &str| {
            let content = std::fs::read(settings.static_dir.join(file)).unwrap_or_default();
            let digest = Sha256::digest(&content);
            let version: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
            format!("/static/{file}?v={version}")
        };
        Site {
            css_href: versioned("app.css"),
            passkeys_js_href: versioned("passkeys.js"),
            copy_js_href: versioned("copy.js"),
            time_zone_js_href: versioned("time-zone.js"),
            support: settings.support_contact.as_deref().map(SupportContact::new),
            demo: settings.demo,
            public_url: settings.public_url.clone(),
            mail: settings.mail.is_some(),
        }
    }
}

/// Static files are cached for a year only under the address pages link to (with this
/// build's content hash). Any other `v` gets `no-cache`: during a rolling upgrade an old
/// instance may be asked for the new hash, and must not let its old file be kept a year
/// under that name.
pub async fn static_cache(
    axum::extract::State(site): axum::extract::State<Arc<Site>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let current = request.uri().path_and_query().is_some_and(|pq| {
        pq.query().is_some()
            && (site.css_href.ends_with(pq.as_str())
                || site.passkeys_js_href.ends_with(pq.as_str())
                || site.copy_js_href.ends_with(pq.as_str())
                || site.time_zone_js_href.ends_with(pq.as_str()))
    });
    let mut response = next.run(request).await;
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        let value = if current {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    response
}

/// The operator's support contact as pages show it: an address or URL becomes a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportContact {
    pub text: String,
    /// Only `mailto:` and `http(s):` links are ever made, so the operator's text cannot
    /// turn into a `javascript:` URL.
    pub href: Option<String>,
}

impl SupportContact {
    pub fn new(contact: &str) -> SupportContact {
        let text = contact.trim().to_owned();
        let lower = text.to_ascii_lowercase();
        let href = if lower.starts_with("https://") || lower.starts_with("http://") {
            Some(text.clone())
        } else if text.contains('@') && !text.contains(char::is_whitespace) && !text.contains(':') {
            Some(format!("mailto:{text}"))
        } else {
            None
        };
        SupportContact { text, href }
    }
}

/// What the shared layout (`base.html`) shows: title, stylesheet, who is signed in, and
/// whom to contact (`_contact.html`).
pub struct Chrome {
    pub title: String,
    pub css_href: String,
    pub user: Option<ChromeUser>,
    pub support: Option<SupportContact>,
    pub demo: bool,
    /// Pending access requests, shown in the admin navigation (admin pages only).
    pub pending_requests: Option<i64>,
    /// Error pages are drawn without looking the session up (no query, so they work while
    /// the database is down): the header then offers neither "Sign in" nor "Sign out".
    pub identity_unknown: bool,
    /// Mail is configured (`Site::mail`).
    pub mail: bool,
}

pub struct ChromeUser {
    pub username: String,
    pub role: Role,
    pub csrf: String,
}

impl Chrome {
    pub fn new(site: &Site, title: impl Into<String>, user: Option<&SessionUser>) -> Chrome {
        Chrome {
            title: title.into(),
            css_href: site.css_href.clone(),
            user: user.map(|user| ChromeUser {
                username: user.username.clone(),
                role: user.role,
                csrf: user.csrf_token.clone(),
            }),
            support: site.support.clone(),
            demo: site.demo,
            pending_requests: None,
            identity_unknown: false,
            mail: site.mail,
        }
    }

    /// The chrome of a page drawn without knowing who asked (see `identity_unknown`).
    pub fn anonymous_unknown(site: &Site, title: impl Into<String>) -> Chrome {
        Chrome {
            identity_unknown: true,
            ..Chrome::new(site, title, None)
        }
    }
}

/// Marks a response whose body is already the page the person should see, so the error
/// page layer leaves it alone (401/403 pages, a re-rendered form with errors).
#[derive(Debug, Clone, Copy)]
pub struct Rendered;

/// Renders a template into an HTML response; a template failure is a logged 500.
pub fn render(template: &impl Template) -> Response {
    render_sized(template, 0)
}

/// [`render`] into a buffer of at least `capacity` bytes, for a page whose size follows its
/// lists (the account page's sessions). askama's own estimate counts the template's text
/// once, and the account page then grew its buffer two or three times, copying it each
/// time.
pub fn render_sized<T: Template>(template: &T, capacity: usize) -> Response {
    let mut html = String::with_capacity(capacity.max(T::SIZE_HINT));
    match template.render_into(&mut html) {
        Ok(()) => sized_response(header::CONTENT_TYPE, TEXT_HTML, html.into()),
        Err(err) => crate::error::AppError::Internal(err.into()).into_response(),
    }
}

const TEXT_HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A 200 with `body` and one header (`name`: `value`), its header map sized up front for
/// the headers the frame and the session layer add. axum's `Html`, `Json` and `Redirect`
/// answers start from a map with room for their one header, which the frame then grew and
/// rehashed on every answer (about 1,000 instructions of `/api/me`'s 52,000 and 1,400 of
/// the sign-in redirect's, benches/ANALYSIS.md). Every page, JSON answer and sign-in
/// redirect is built here.
pub fn sized_response(name: HeaderName, value: HeaderValue, body: Body) -> Response {
    let mut response = Response::new(body);
    let mut headers = HeaderMap::with_capacity(FRAME_HEADERS + 2);
    headers.insert(name, value);
    *response.headers_mut() = headers;
    response
}

/// `value` as a JSON answer (200), like axum's `Json`, with the header map sized as
/// [`sized_response`] does and room for a small document (axum's starts at 128 bytes, which
/// `/api/me`'s outgrows); a value that cannot be serialised is a logged 500.
pub fn json(value: &impl Serialize) -> Response {
    let mut body = Vec::with_capacity(256);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => sized_response(header::CONTENT_TYPE, APPLICATION_JSON, body.into()),
        Err(err) => crate::error::AppError::Internal(err.into()).into_response(),
    }
}

/// Renders with a status, marked as a finished page.
pub fn render_status(status: StatusCode, template: &impl Template) -> Response {
    render_status_sized(status, template, 0)
}

/// [`render_status`] into a buffer of at least `capacity` bytes (see [`render_sized`]).
pub fn render_status_sized<T: Template>(
    status: StatusCode,
    template: &T,
    capacity: usize,
) -> Response {
    let mut response = render_sized(template, capacity);
    if response.status().is_success() {
        *response.status_mut() = status;
        response.extensions_mut().insert(Rendered);
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::http::{StatusCode, header};
    use http_body_util::BodyExt;

    use super::{FRAME_HEADERS, SupportContact, json};

    #[tokio::test]
    async fn json_answers_have_room_for_the_frames_headers() {
        let response = json(&serde_json::json!({ "username": "ada", "role": "member" }));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        // The frame reserves FRAME_HEADERS more; with this room the map never regrows.
        assert!(response.headers().capacity() >= FRAME_HEADERS + 2);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(&body[..], br#"{"role":"member","username":"ada"}"#);
    }

    #[test]
    fn support_contacts_become_safe_links() {
        let mail = SupportContact::new(" it-help@example.com ");
        assert_eq!(mail.text, "it-help@example.com");
        assert_eq!(mail.href.as_deref(), Some("mailto:it-help@example.com"));
        let web = SupportContact::new("https://help.example.com/access");
        assert_eq!(web.href.as_deref(), Some("https://help.example.com/access"));
        for text in ["the IT desk, room 4", "javascript:alert(1)", "a@b:c"] {
            assert_eq!(SupportContact::new(text).href, None, "{text}");
        }
    }
}
