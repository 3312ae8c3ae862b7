//! HTTP: the route table and router (`routes`), the plumbing every page shares (`http`)
//! and the pages (`pages`).

pub mod http;
pub mod pages;
pub mod routes;

use std::sync::Arc;

use sqlx::PgPool;

use crate::{
    audit::AuditLog,
    auth::{Role, csrf::CsrfKey, passkey::Passkeys, password::PasswordHasher},
    config::Settings,
};
use http::render::Site;
pub use routes::{Access, RouteSpec, router, routes};

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
    /// The passkey relying party (`auth::passkey`).
    pub passkeys: Passkeys,
    pub site: Arc<Site>,
    pub audit: AuditLog,
    /// Outgoing mail (`--smtp-url`); `None`: no e-mail features anywhere.
    pub mailer: Option<crate::mail::Mailer>,
    /// "Forgot your password?" (with the mailer only).
    pub recovery: Option<crate::accounts::recovery::Recovery>,
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

/// A page behind a role guard, as the home page lists it. The route table (`routes`) says
/// the same role for each (a unit test there checks), so the table people read is the
/// table the guards enforce.
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
