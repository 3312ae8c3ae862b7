//! HTTP: the router, one module per page group, and the pieces every page shares.

pub mod access;
pub mod account;
pub mod admin;
pub mod api;
pub mod client;
pub mod denial;
pub mod errors;
pub mod form;
pub mod frame;
pub mod health;
pub mod help;
pub mod home;
pub mod login;
pub mod metrics;
pub mod negotiate;
pub mod origin;
pub mod reports;
pub mod setup;

use std::sync::Arc;

use askama::Template;
use axum::{
    Router,
    http::{HeaderName, HeaderValue, StatusCode, header},
    middleware,
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tower_http::services::ServeDir;
use tower_sessions::{Expiry, SessionManagerLayer, cookie::SameSite};

use crate::{
    audit::AuditLog,
    auth::{
        Role, SessionUser,
        csrf::CsrfKey,
        password::PasswordHasher,
        session_user::{self, Gate},
        store::PgSessionStore,
    },
    config::Settings,
};

/// Largest request body accepted (forms are tiny); larger gets a 413 page.
pub const BODY_LIMIT: usize = 16 * 1024;

/// Everything handlers share. Cloned by every extractor and middleware that takes
/// `State`, so it is one `Arc`: a clone is one atomic increment, not six.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub hasher: PasswordHasher,
    pub csrf: CsrfKey,
    pub site: Arc<Site>,
    pub audit: AuditLog,
    /// Set on shutdown: `/readyz` says 503 and responses close their connections.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Site-wide presentation facts every page (including error pages) needs.
#[derive(Debug, Clone)]
pub struct Site {
    /// The stylesheet URL with a content hash, so it can be cached for a year.
    pub css_href: String,
    /// Whom to ask about access (`--support-contact`); `None`: "your administrator".
    pub support: Option<SupportContact>,
    /// `--demo`: every page says so.
    pub demo: bool,
}

impl Site {
    pub fn new(settings: &Settings) -> Site {
        let css = std::fs::read(settings.static_dir.join("app.css")).unwrap_or_default();
        let digest = Sha256::digest(&css);
        let version: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Site {
            css_href: format!("/static/app.css?v={version}"),
            support: settings.support_contact.as_deref().map(SupportContact::new),
            demo: settings.demo,
        }
    }
}

/// Static files are cached for a year only under the address pages link to (with this
/// build's content hash). Any other `v` gets `no-cache`: during a rolling upgrade an old
/// instance may be asked for the new hash, and must not let its old file be kept a year
/// under that name.
async fn static_cache(
    axum::extract::State(site): axum::extract::State<Arc<Site>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let current = request
        .uri()
        .path_and_query()
        .is_some_and(|pq| site.css_href.ends_with(pq.as_str()) && pq.query().is_some());
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

/// A page behind a role guard. The router takes each page's role from here and the home
/// page lists them, so the table people read is the table the guards enforce.
pub struct ProtectedPage {
    pub path: &'static str,
    pub title: &'static str,
    pub role: Role,
}

pub const PROTECTED_PAGES: [ProtectedPage; 4] = [
    ProtectedPage {
        path: "/account",
        title: "Your account",
        role: Role::Member,
    },
    ProtectedPage {
        path: "/reports",
        title: "Reports",
        role: Role::Editor,
    },
    ProtectedPage {
        path: "/admin",
        title: "Administration",
        role: Role::Admin,
    },
    ProtectedPage {
        path: "/api/me",
        title: "Who am I (JSON)",
        role: Role::Member,
    },
];

/// The role `path` needs; an unlisted path needs the highest (deny by default).
pub fn role_of(path: &str) -> Role {
    PROTECTED_PAGES
        .iter()
        .find(|page| page.path == path)
        .map_or(Role::Admin, |page| page.role)
}

/// Times on pages: UTC, to the second, unambiguous.
pub fn display_time(at: time::OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| at.to_string())
}

/// Marks a response whose body is already the page the person should see, so the error
/// page layer leaves it alone (401/403 pages, a re-rendered form with errors).
#[derive(Debug, Clone, Copy)]
pub struct Rendered;

/// Renders a template into an HTML response; a template failure is a logged 500.
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => crate::error::AppError::Internal(err.into()).into_response(),
    }
}

/// Renders with a status, marked as a finished page.
pub fn render_status(status: StatusCode, template: &impl Template) -> Response {
    let mut response = render(template);
    if response.status().is_success() {
        *response.status_mut() = status;
        response.extensions_mut().insert(Rendered);
    }
    response
}

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let settings = &state.settings;
    let sessions = SessionManagerLayer::new(PgSessionStore::new(
        state.pool.clone(),
        settings.idle_timeout,
    ))
    .with_name(settings.session_cookie_name())
    .with_secure(settings.secure_cookies)
    .with_http_only(true)
    .with_same_site(SameSite::Lax)
    .with_path("/")
    // A browser-session cookie: it outlives the server-side deadline, so an expired
    // session is still recognised and the person told "your session has expired".
    .with_expiry(Expiry::OnSessionEnd);
    // Each group of routes gets one gate: who is asking (one query when there is a session
    // cookie) and, for protected pages, the role the page needs (`PROTECTED_PAGES`).
    let gate = |required: Option<Role>, with_sessions: bool| {
        middleware::from_fn_with_state(
            Gate {
                state: state.clone(),
                required,
                with_sessions,
            },
            session_user::gate,
        )
    };
    let member = Some(role_of("/account"));

    let public_pages = Router::new()
        .route("/", get(home::show))
        .route("/logout", post(login::logout))
        .route("/login/complete", get(login::complete))
        .route("/help/access", get(help::access))
        .route("/metrics", get(metrics::show))
        .route_layer(gate(None, false));
    let member_forms = Router::new()
        .route("/account/password", post(account::change_password))
        .route(
            "/account/sessions/revoke-others",
            post(account::revoke_others),
        )
        .route(
            "/account/sessions/{id}/revoke",
            post(account::revoke_session),
        )
        .route("/access-requests", post(access::request))
        .route_layer(gate(member, false));
    // The account page lists the user's sessions: fetched by the same single query.
    let account_page = Router::new()
        .route("/account", get(account::show))
        .route_layer(gate(member, true));
    let reports = Router::new()
        .route("/reports", get(reports::show))
        .route_layer(gate(Some(role_of("/reports")), false));
    let admin = admin::router().route_layer(gate(Some(role_of("/admin")), false));
    let api = Router::new()
        .route("/api/me", get(api::me))
        .route_layer(gate(Some(role_of("/api/me")), false));

    let with_sessions = Router::new()
        .merge(public_pages)
        .merge(member_forms)
        .merge(account_page)
        .merge(reports)
        .merge(admin)
        .merge(api)
        .route("/login", get(login::form).post(login::submit))
        .route(login::FORGET_PAGES, get(login::forget_pages))
        .route("/setup", get(setup::form).post(setup::submit))
        .layer(sessions);

    let static_files = Router::new()
        .fallback_service(ServeDir::new(&settings.static_dir))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.site),
            static_cache,
        ));

    Router::new()
        .merge(with_sessions)
        .merge(health::router())
        .route("/robots.txt", get(help::robots))
        .nest("/static", static_files)
        .fallback(errors::not_found)
        // One layer around every route: see `frame` (it also applies the body limit, the
        // request timeout and catches panics).
        .layer(middleware::from_fn_with_state(
            Arc::new(frame::Frame {
                site: Arc::clone(&state.site),
                audit: state.audit.clone(),
                trusted_proxies: state.settings.trusted_proxies.clone(),
                secure: state.settings.secure_cookies,
                request_timeout: state.settings.request_timeout,
                draining: Arc::clone(&state.draining),
            }),
            frame::frame,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::SupportContact;

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
