//! HTTP: the router, the plumbing every page shares (`http`) and the pages (`pages`).

pub mod http;
pub mod pages;

use std::sync::Arc;

use axum::{
    Router, middleware,
    routing::{get, post},
};
use sqlx::PgPool;
use tower_http::services::ServeDir;
use tower_sessions::{Expiry, SessionManagerLayer, cookie::SameSite};

use crate::{
    audit::AuditLog,
    auth::{Role, csrf::CsrfKey, password::PasswordHasher, session::Lookup, store::PgSessionStore},
    config::Settings,
};
use http::{
    errors, frame,
    guard::{self, Gate},
    render::{Site, static_cache},
};
use pages::{
    access, account, admin, api, health, help, home, login, metrics, reauth, reports, second_step,
    setup, two_factor,
};

/// Everything handlers share. Cloned by every extractor and middleware that takes
/// `State`, so it is one `Arc`: a clone is one atomic increment, not six.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub pool: PgPool,
    /// Sign-ins, sign-outs and session writes (see `Pools`): may be `pool` itself.
    pub sign_in_pool: PgPool,
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

pub fn router(state: AppState) -> Router {
    let settings = &state.settings;
    let sessions = SessionManagerLayer::new(PgSessionStore::new(
        state.sign_in_pool.clone(),
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
    // `enforce_mfa`: whether `--require-mfa` applies; not on the account pages, where
    // enrolment happens.
    let gate = |required: Option<Role>, lookup: Lookup, enforce_mfa: bool| {
        middleware::from_fn_with_state(
            Gate {
                state: state.clone(),
                required,
                lookup,
                enforce_mfa,
            },
            guard::gate,
        )
    };
    let member = Some(role_of("/account"));

    let public_pages = Router::new()
        .route("/", get(home::show))
        .route("/logout", post(login::logout))
        .route("/login/complete", get(login::complete))
        .route("/help/access", get(help::access))
        .route("/metrics", get(metrics::show))
        .route_layer(gate(None, Lookup::Page, false));
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
        .route("/reauth", get(reauth::form).post(reauth::submit))
        .route("/account/two-factor", get(two_factor::show))
        .route("/account/two-factor/enable", post(two_factor::enable))
        .route(
            "/account/two-factor/recovery-codes",
            post(two_factor::new_codes),
        )
        .route("/account/two-factor/disable", post(two_factor::disable))
        .route_layer(gate(member, Lookup::Page, false));
    // The account page lists the user's sessions: fetched by the same single query.
    let account_page = Router::new()
        .route("/account", get(account::show))
        .route_layer(gate(member, Lookup::AccountPage, false));
    let reports = Router::new()
        .route("/reports", get(reports::show))
        .route_layer(gate(Some(role_of("/reports")), Lookup::Page, true));
    let admin = admin::router().route_layer(gate(Some(role_of("/admin")), Lookup::Page, true));
    let api = Router::new()
        .route("/api/me", get(api::me))
        .route_layer(gate(Some(role_of("/api/me")), Lookup::Api, true));

    // Pages that only read who is asking: the guard reads the session cookie itself, so
    // they go without tower-sessions' and tower-cookies' layers (a cookie jar and a
    // `Session` per request, never used here; benches/ANALYSIS.md). Their handlers cannot
    // take `Session` or `Cookies`: it would fail at run time, so anything that changes the
    // session or sets a cookie belongs below.
    let reads = Router::new().merge(account_page).merge(reports).merge(api);

    let with_sessions = Router::new()
        .merge(public_pages)
        .merge(member_forms)
        .merge(admin)
        .route("/login", get(login::form).post(login::submit))
        .route(login::FORGET_PAGES, get(login::forget_pages))
        .route(
            "/login/second-factor",
            get(second_step::form).post(second_step::submit),
        )
        .route("/setup", get(setup::form).post(setup::submit))
        .layer(sessions);

    let static_files = Router::new()
        .fallback_service(ServeDir::new(&settings.static_dir))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.site),
            static_cache,
        ));

    Router::new()
        .merge(reads)
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
                metrics: frame::RequestMetrics::default(),
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
