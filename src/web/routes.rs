//! Every route in one table ([`routes`]): its method, path, who may use it, and what it
//! reads (query parameters and form fields, taken from its handler's extractor types). The
//! router is built from this table and from nothing else, so the table tests read is the
//! router that runs: `tests/it/routes.rs` checks that every entry is served, that no
//! `.route(` appears outside this file, and sends every route and field bad input.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Path, Request, State},
    http::{HeaderMap, Method, request::Parts},
    middleware,
    routing::{MethodFilter, MethodRouter, on},
};
use serde::de::DeserializeOwned;
use tower_cookies::Cookies;
use tower_http::services::ServeDir;
use tower_sessions::{Expiry, Session, SessionManagerLayer, cookie::SameSite};

use super::{
    AppState,
    http::{
        CurrentUser, MaybeUser, TextForm, TextQuery, errors,
        form::SignedForm,
        frame,
        fresh::FreshForm,
        guard::Gate,
        input::{field_names, is_multi_line},
        layer::WrapLayer,
        render::static_cache,
    },
    pages::{
        access, account, admin, api, email, forgot, health, help, home, login, metrics,
        passkey_sign_in, passkeys, password_link, reauth, reports, second_step, setup, time_zone,
        two_factor,
    },
};
use crate::auth::{Role, session::Lookup, store::PgSessionStore};

/// Who may use a route, and what is looked up before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Outside the session layer: health checks and `robots.txt` never touch sessions.
    Stateless,
    /// Sessions, but nobody is looked up: sign-in and first-run setup (their forms carry
    /// the anonymous CSRF token).
    Anonymous,
    /// Anyone; who is asking is looked up (the page may differ, or check a token itself).
    Public,
    /// Signed in with at least this role (the guard answers 401 or 403 otherwise) and,
    /// where `--require-mfa` covers the role, with a second factor set up.
    Role(Role),
    /// As `Role`, for the JSON API: it renders no forms, so the guard computes no CSRF
    /// token for it.
    Api(Role),
    /// Signed in (any role), on the person's own account: sessions, password, second
    /// factor, access requests, re-authentication. `--require-mfa` does not apply: this is
    /// where a second factor is set up.
    Own,
    /// As `Own`, and the guard's one query also fetches the user's sessions (the account
    /// page lists them).
    OwnWithSessions,
}

impl Access {
    /// The role the route needs, if any.
    pub fn role(self) -> Option<Role> {
        match self {
            Access::Role(role) | Access::Api(role) => Some(role),
            Access::Own | Access::OwnWithSessions => Some(Role::Member),
            Access::Stateless | Access::Anonymous | Access::Public => None,
        }
    }
}

/// A query parameter or form field a handler reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    /// A [`MultiLine`](super::http::MultiLine): line breaks and tabs allowed.
    pub multi_line: bool,
}

/// What a handler reads from the request besides its path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    /// Query parameters (its `TextQuery<T>`'s fields); `None`: it reads no query.
    pub query: Option<Vec<Field>>,
    /// Form fields (its `TextForm<T>` or `SignedForm<T>`); `None`: it reads no form.
    pub form: Option<Vec<Field>>,
    /// The form is a `SignedForm`: it also carries the session's CSRF token as `csrf`.
    pub signed: bool,
    /// It takes the session or the cookie jar (`Session`, `Cookies`, `FreshForm`), so the
    /// route runs inside tower-sessions' layer. Routes that only read who is asking go
    /// without it: the guard reads the session cookie itself, and the layer's cookie jar
    /// and `Session` per request were a measurable share of a page's cost
    /// (benches/ANALYSIS.md).
    pub session: bool,
}

/// One route: method, path template, access, and its handler.
pub struct RouteSpec {
    pub method: Method,
    /// The path template, as axum matches it (`/admin/users/{id}`).
    pub path: &'static str,
    pub access: Access,
    inputs: fn() -> Inputs,
    handler: fn() -> MethodRouter<AppState>,
}

impl RouteSpec {
    /// What the handler reads, from its extractors' types.
    pub fn inputs(&self) -> Inputs {
        (self.inputs)()
    }

    /// The names of the path's parameters (`{id}`), in order.
    pub fn path_params(&self) -> Vec<&'static str> {
        self.path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect()
    }
}

/// An extractor says what it reads. Every extractor a routed handler takes needs this (a
/// new kind without it does not compile in the table, rather than going unseen by tests).
pub trait Reads {
    fn declare(_inputs: &mut Inputs) {}
}

fn fields<T: DeserializeOwned>() -> Vec<Field> {
    field_names::<T>()
        .iter()
        .map(|&name| Field {
            name,
            multi_line: is_multi_line::<T>(name),
        })
        .collect()
}

impl<T: DeserializeOwned> Reads for TextQuery<T> {
    fn declare(inputs: &mut Inputs) {
        inputs.query = Some(fields::<T>());
    }
}

impl<T: DeserializeOwned> Reads for TextForm<T> {
    fn declare(inputs: &mut Inputs) {
        inputs.form = Some(fields::<T>());
    }
}

impl<T: DeserializeOwned> Reads for SignedForm<T> {
    fn declare(inputs: &mut Inputs) {
        inputs.form = Some(fields::<T>());
        inputs.signed = true;
    }
}

impl<T: DeserializeOwned> Reads for FreshForm<T> {
    fn declare(inputs: &mut Inputs) {
        inputs.form = Some(fields::<T>());
        inputs.signed = true;
        // It reads the session to cycle its id after a re-authentication.
        inputs.session = true;
    }
}

impl<T: Reads, E> Reads for Result<T, E> {
    fn declare(inputs: &mut Inputs) {
        T::declare(inputs);
    }
}

// Path parameters are in the template; these read no query and no form.
impl<T> Reads for Path<T> {}
impl Reads for State<AppState> {}
impl Reads for CurrentUser {}
impl Reads for MaybeUser {}
impl Reads for Cookies {
    fn declare(inputs: &mut Inputs) {
        inputs.session = true;
    }
}
impl Reads for Session {
    fn declare(inputs: &mut Inputs) {
        inputs.session = true;
    }
}
impl Reads for Parts {}
impl Reads for HeaderMap {}
impl Reads for Request {}

/// A handler whose every argument [`Reads`]; `M` is its argument tuple.
pub trait ReadsAll<M> {
    fn inputs() -> Inputs;
}

macro_rules! reads_all {
    ($($arg:ident),*) => {
        impl<F, Fut, $($arg: Reads),*> ReadsAll<($($arg,)*)> for F
        where
            F: FnOnce($($arg),*) -> Fut,
        {
            #[allow(unused_mut, reason = "a handler without arguments declares nothing")]
            fn inputs() -> Inputs {
                let mut inputs = Inputs::default();
                $($arg::declare(&mut inputs);)*
                inputs
            }
        }
    };
}

reads_all!();
reads_all!(A);
reads_all!(A, B);
reads_all!(A, B, C);
reads_all!(A, B, C, D);
reads_all!(A, B, C, D, E);
reads_all!(A, B, C, D, E, G);

fn reads<H: ReadsAll<M>, M>(_handler: &H) -> Inputs {
    H::inputs()
}

/// One table entry: the method names both the spec and the handler's method filter.
macro_rules! route {
    ($method:ident $path:expr, $access:expr, $handler:path) => {
        RouteSpec {
            method: Method::$method,
            path: $path,
            access: $access,
            inputs: || reads(&$handler),
            handler: || on(MethodFilter::$method, $handler),
        }
    };
}

const EDITOR: Access = Access::Role(Role::Editor);
const ADMIN: Access = Access::Role(Role::Admin);
const API_MEMBER: Access = Access::Api(Role::Member);
use Access::{Anonymous, Own, OwnWithSessions, Public, Stateless};

static ROUTES: &[RouteSpec] = &[
    route!(GET "/", Public, home::show),
    route!(GET "/login", Anonymous, login::form),
    route!(POST "/login", Anonymous, login::submit),
    route!(GET "/login/complete", Public, login::complete),
    route!(GET login::FORGET_PAGES, Anonymous, login::forget_pages),
    route!(POST "/logout", Public, login::logout),
    // "Forgot your password?" (404 without --smtp-url).
    route!(GET forgot::PATH, Anonymous, forgot::form),
    route!(POST forgot::PATH, Anonymous, forgot::submit),
    route!(GET "/setup", Anonymous, setup::form),
    route!(POST "/setup", Anonymous, setup::submit),
    // One-time links (invitation, reset): the token is checked by the page itself.
    route!(GET "/password/new", Anonymous, password_link::form),
    route!(POST "/password/new", Anonymous, password_link::submit),
    route!(GET "/login/second-factor", Anonymous, second_step::form),
    route!(POST "/login/second-factor", Anonymous, second_step::submit),
    route!(GET "/help/access", Public, help::access),
    route!(GET "/account", OwnWithSessions, account::show),
    route!(POST "/account/password", Own, account::change_password),
    route!(POST "/account/sessions/revoke-others", Own, account::revoke_others),
    route!(POST "/account/sessions/{id}/revoke", Own, account::revoke_session),
    route!(GET "/account/time-zone", Own, time_zone::show),
    route!(POST "/account/time-zone", Own, time_zone::save),
    route!(GET "/account/two-factor", Own, two_factor::show),
    route!(POST "/account/two-factor/enable", Own, two_factor::enable),
    route!(POST "/account/two-factor/recovery-codes", Own, two_factor::new_codes),
    route!(POST "/account/two-factor/disable", Own, two_factor::disable),
    route!(POST "/access-requests", Own, access::request),
    route!(GET "/reauth", Own, reauth::form),
    route!(POST "/reauth", Own, reauth::submit),
    // Passkeys: signing in with one (no session until it succeeds), the second step's and
    // a re-authentication's challenges, and the account's list (adding, removing).
    route!(POST "/login/passkey", Anonymous, passkey_sign_in::sign_in),
    route!(POST "/login/passkey/options", Anonymous, passkey_sign_in::sign_in_options),
    route!(POST "/login/second-factor/passkey/options", Anonymous, passkey_sign_in::second_step_options),
    route!(POST "/reauth/passkey/options", Own, passkey_sign_in::reauth_options),
    // The account's e-mail address and its verification link (404 without --smtp-url).
    route!(GET "/account/email", Own, email::show),
    route!(POST "/account/email", Own, email::set),
    route!(POST "/account/email/remove", Own, email::remove),
    route!(GET "/email/verify", Public, email::verify),
    route!(GET "/account/passkeys", Own, passkeys::show),
    route!(POST "/account/passkeys", Own, passkeys::register),
    route!(POST "/account/passkeys/options", Own, passkeys::options),
    route!(POST "/account/passkeys/{id}/remove", Own, passkeys::remove),
    route!(GET "/reports", EDITOR, reports::show),
    route!(GET "/api/me", API_MEMBER, api::me),
    route!(GET "/admin", ADMIN, admin::users::list),
    route!(POST "/admin/users", ADMIN, admin::users::create),
    route!(GET "/admin/users/{id}", ADMIN, admin::user::show),
    route!(POST "/admin/users/{id}/role", ADMIN, admin::user::set_role),
    route!(POST "/admin/users/{id}/disable", ADMIN, admin::user::disable),
    route!(POST "/admin/users/{id}/enable", ADMIN, admin::user::enable),
    route!(POST "/admin/users/{id}/password-link", ADMIN, admin::user::password_link),
    route!(POST "/admin/users/{id}/link/mail", ADMIN, admin::mail_link::send),
    route!(POST "/admin/users/{id}/delete", ADMIN, admin::user::delete),
    route!(POST "/admin/users/{id}/second-factor/reset", ADMIN, admin::user::reset_second_factor),
    route!(POST "/admin/users/{id}/sessions/revoke-all", ADMIN, admin::user::revoke_all),
    route!(POST "/admin/users/{id}/sessions/{session}/revoke", ADMIN, admin::user::revoke_one),
    route!(POST "/admin/sessions/revoke-everyone", ADMIN, admin::everyone::revoke),
    route!(GET "/admin/denials", ADMIN, admin::denials::show),
    route!(GET "/admin/audit", ADMIN, admin::audit::list),
    route!(GET "/admin/audit.csv", ADMIN, admin::audit::csv),
    route!(GET "/admin/requests", ADMIN, admin::requests::list),
    route!(POST "/admin/requests/{id}/grant", ADMIN, admin::requests::grant),
    route!(POST "/admin/requests/{id}/decline", ADMIN, admin::requests::decline),
    route!(GET "/admin/throttles", ADMIN, admin::throttles::list),
    route!(POST "/admin/throttles/clear", ADMIN, admin::throttles::clear),
    route!(GET "/metrics", Public, metrics::show),
    route!(GET "/healthz", Stateless, health::healthz),
    route!(GET "/readyz", Stateless, health::readyz),
    route!(GET "/robots.txt", Stateless, help::robots),
];

/// Every route the app serves (static files under `/static/` aside).
pub fn routes() -> &'static [RouteSpec] {
    ROUTES
}

/// The application: the routes of [`routes`], each behind its guard, the session layer
/// around those whose handlers take the session or cookies ([`Inputs::session`]), static
/// files, and `frame` around everything.
pub fn router(state: AppState) -> Router {
    let settings = &state.settings;
    let sessions = SessionManagerLayer::new(
        PgSessionStore::new(state.sign_in_pool.clone(), settings.idle_timeout)
            .with_max_sessions(settings.max_sessions),
    )
    .with_name(settings.session_cookie_name())
    .with_secure(settings.secure_cookies)
    .with_http_only(true)
    .with_same_site(SameSite::Lax)
    .with_path("/")
    // A browser-session cookie: it outlives the server-side deadline, so an expired
    // session is still recognised and the person told "your session has expired".
    .with_expiry(Expiry::OnSessionEnd);

    let mut with_sessions = Router::new();
    let mut without_sessions = Router::new();
    for spec in routes() {
        let handler = (spec.handler)();
        // Each route gets its gate: who is asking (one query when there is a session
        // cookie) and, for protected routes, the role it needs. (lookup, enforce_mfa)
        let gate = match spec.access {
            Access::Stateless | Access::Anonymous => None,
            Access::Public | Access::Own => Some((Lookup::Page, false)),
            Access::OwnWithSessions => Some((Lookup::AccountPage, false)),
            Access::Role(_) => Some((Lookup::Page, true)),
            Access::Api(_) => Some((Lookup::Api, true)),
        };
        let route = match gate {
            None => handler,
            Some((lookup, enforce_mfa)) => handler.route_layer(WrapLayer(Arc::new(Gate {
                state: state.clone(),
                required: spec.access.role(),
                lookup,
                enforce_mfa,
            }))),
        };
        if spec.access != Access::Stateless && spec.inputs().session {
            with_sessions = with_sessions.route(spec.path, route);
        } else {
            without_sessions = without_sessions.route(spec.path, route);
        }
    }

    let static_files = Router::new()
        .fallback_service(ServeDir::new(&settings.static_dir))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.site),
            static_cache,
        ));

    Router::new()
        .merge(with_sessions.layer(sessions))
        .merge(without_sessions)
        .nest("/static", static_files)
        .fallback(errors::not_found)
        // One layer around every route: see `frame` (it also applies the body limit, the
        // request timeout and catches panics).
        .layer(WrapLayer(Arc::new(frame::Frame {
            site: Arc::clone(&state.site),
            metrics: frame::RequestMetrics::default(),
            audit: state.audit.clone(),
            trusted_proxies: state.settings.trusted_proxies.clone(),
            secure: state.settings.secure_cookies,
            request_timeout: state.settings.request_timeout,
            draining: Arc::clone(&state.draining),
        })))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::PROTECTED_PAGES;

    fn spec(method: Method, path: &str) -> &'static RouteSpec {
        routes()
            .iter()
            .find(|r| r.method == method && r.path == path)
            .unwrap_or_else(|| panic!("no {method} {path} in the table"))
    }

    #[test]
    fn the_table_builds_one_router_without_overlaps() {
        // axum panics on a method and path routed twice.
        let mut router: Router<AppState> = Router::new();
        for spec in routes() {
            router = router.route(spec.path, (spec.handler)());
        }
        let mut seen = std::collections::HashSet::new();
        for spec in routes() {
            assert!(
                seen.insert((spec.method.clone(), spec.path)),
                "{}",
                spec.path
            );
        }
    }

    #[test]
    fn the_home_pages_table_agrees_with_the_route_table() {
        for page in &PROTECTED_PAGES {
            assert_eq!(
                spec(Method::GET, page.path).access.role(),
                Some(page.role),
                "{}",
                page.path
            );
        }
    }

    #[test]
    fn inputs_come_from_the_handlers_extractors() {
        let names = |fields: &[Field]| fields.iter().map(|f| f.name).collect::<Vec<_>>();
        let audit = spec(Method::GET, "/admin/audit").inputs();
        assert_eq!(
            audit.query.as_deref().map(names),
            Some(vec![
                "event", "status", "reason", "username", "ip", "path", "window", "page"
            ])
        );
        assert_eq!(spec(Method::GET, "/").inputs().query, None);
        assert_eq!(audit.form, None);
        let clear = spec(Method::POST, "/admin/throttles/clear").inputs();
        assert_eq!(clear.form.as_deref().map(names), Some(vec!["scope", "key"]));
        assert!(clear.signed);
        let login = spec(Method::POST, "/login").inputs();
        assert!(
            !login.signed,
            "the sign-in form carries the anonymous token"
        );
        assert!(names(login.form.as_deref().unwrap_or_default()).contains(&"csrf"));
        let others = spec(Method::POST, "/account/sessions/revoke-others");
        assert_eq!(
            others.inputs().form,
            Some(vec![]),
            "a form of nothing but its token"
        );
        // The hot read-only pages go without tower-sessions' layer; what changes the
        // session or sets a cookie keeps it.
        for (method, path, session) in [
            (Method::GET, "/account", false),
            (Method::GET, "/api/me", false),
            (Method::GET, "/reports", false),
            (Method::POST, "/logout", true),
            (Method::POST, "/login", true),
            (Method::POST, "/reauth", true),
            (Method::POST, "/account/password", true),
        ] {
            assert_eq!(spec(method, path).inputs().session, session, "{path}");
        }
        let grant = spec(Method::POST, "/admin/requests/{id}/grant");
        assert_eq!(grant.path_params(), ["id"]);
        assert_eq!(
            spec(Method::POST, "/admin/users/{id}/sessions/{session}/revoke").path_params(),
            ["id", "session"]
        );
        // Multi-line: the access-request message and the decline note, nothing else.
        let multi_line: Vec<(&str, &str)> = routes()
            .iter()
            .flat_map(|r| {
                let inputs = r.inputs();
                let query = inputs.query.unwrap_or_default();
                let form = inputs.form.unwrap_or_default();
                query
                    .into_iter()
                    .chain(form)
                    .filter(|f| f.multi_line)
                    .map(move |f| (r.path, f.name))
            })
            .collect();
        assert_eq!(
            multi_line,
            [
                ("/access-requests", "message"),
                ("/admin/requests/{id}/decline", "note")
            ]
        );
    }
}
