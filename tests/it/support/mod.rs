//! Test harness: one PostgreSQL per test process (the private cluster, or DATABASE_URL),
//! a fresh database per test cloned from a migrated template (`database`), and the real
//! app on 127.0.0.1:0 driven over HTTP by a client that does not follow redirects; the
//! `portcullis` binary for CLI tests (`cli`).

mod authenticator;
mod cli;
mod database;
mod smtp;

pub use authenticator::SoftPasskey;
pub use cli::*;
pub use database::*;
pub use smtp::*;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use portcullis::{
    App,
    auth::{Role, password::PasswordHasher},
    config::Settings,
    server::Stop,
};
use portcullis::{accounts, accounts::admin, audit::Actor};
use reqwest::{
    Client, Response, StatusCode,
    cookie::{CookieStore, Jar},
    header::{ACCEPT, HeaderMap, LOCATION},
};
use sqlx::PgPool;

pub const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
pub const PASSWORD: &str = "correct horse battery staple";

pub fn test_settings() -> Settings {
    let mut settings = Settings::defaults();
    // Tests stop instances often; the drain grace has a test of its own.
    settings.drain_grace = Duration::ZERO;
    // Most tests sign administrators in with a password alone; the second-factor policy
    // (default: admins) has tests of its own (`two_factor::`), which turn it back on.
    settings.require_mfa = portcullis::config::RequireMfa::None;
    settings
}

/// An HTTP client with a cookie jar the test can read, like a browser's.
pub struct Browser {
    client: Client,
    jar: Arc<Jar>,
}

impl std::ops::Deref for Browser {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Browser {
    /// The `name=value` of a cookie the jar would send to `url`.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let url = url.parse().ok()?;
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .find(|pair| pair.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub pool: PgPool,
    pub db_name: String,
    pub settings: Settings,
    pub hasher: PasswordHasher,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
        let (pool, db_name) = fresh_database().await;
        Self::spawn_on(pool, db_name, configure).await
    }

    /// Another instance of the app on the same database (as behind a load balancer).
    pub async fn spawn_on(
        pool: PgPool,
        db_name: String,
        configure: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut settings = test_settings();
        // Passkeys belong to http://localhost:PORT of this instance, as in `serve`.
        settings.listening_on(addr);
        configure(&mut settings);
        let hasher = PasswordHasher::start(0).expect("hasher");
        let app = App::build_with_hasher(pool.clone(), settings.clone(), hasher.clone())
            .await
            .expect("build app");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = app
                .serve(listener, async move {
                    let _ = rx.await;
                    Stop::Graceful
                })
                .await;
        });
        TestApp {
            addr,
            pool,
            db_name,
            settings,
            hasher,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the app gracefully (as on SIGTERM) and waits until it has finished.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A browser-like client: own cookie jar, no redirects followed.
    pub fn client(&self) -> Browser {
        let jar = Arc::new(Jar::default());
        let client = Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Browser { client, jar }
    }

    /// A client without cookies (requests carry exactly the headers a test sets).
    pub fn bare_client(&self) -> Client {
        Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// Creates a user through the admin service, recorded as done by "test-setup" (so
    /// tests that read "cli" or an admin's events see only their own).
    pub async fn create_user(&self, name: &str, role: Role) {
        admin::create(
            &self.pool,
            &self.hasher,
            &Actor::new("test-setup", Default::default()),
            name,
            PASSWORD,
            role,
            8,
        )
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    }

    pub async fn get(&self, client: &Client, path: &str) -> Response {
        client
            .get(self.url(path))
            .header(ACCEPT, BROWSER_ACCEPT)
            .send()
            .await
            .expect("GET")
    }

    pub async fn get_json(&self, client: &Client, path: &str) -> Response {
        client
            .get(self.url(path))
            .header(ACCEPT, "application/json")
            .send()
            .await
            .expect("GET")
    }

    /// The CSRF token of the sign-in form (also sets the anonymous CSRF cookie).
    pub async fn login_csrf(&self, client: &Client) -> String {
        let page = self.get(client, "/login").await.text().await.expect("body");
        hidden_field(&page, "csrf").expect("login form has a csrf field")
    }

    pub async fn post_login(
        &self,
        client: &Client,
        username: &str,
        password: &str,
        next: &str,
    ) -> Response {
        let csrf = self.login_csrf(client).await;
        client
            .post(self.url("/login"))
            .header(ACCEPT, BROWSER_ACCEPT)
            .form(&[
                ("username", username),
                ("password", password),
                ("next", next),
                ("csrf", &csrf),
            ])
            .send()
            .await
            .expect("POST /login")
    }

    /// Follows a successful sign-in's redirect through `/login/complete` (which checks the
    /// session cookie came back) and returns where the person finally lands.
    pub async fn landing(&self, browser: &Client, response: Response) -> String {
        let status = response.status();
        let complete = location(&response);
        assert!(
            status == StatusCode::SEE_OTHER && complete.starts_with("/login/complete"),
            "expected a redirect to /login/complete: {}",
            describe(response).await
        );
        let response = self.get(browser, &complete).await;
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "{}",
            describe(response).await
        );
        location(&response)
    }

    /// Signs in and asserts it worked; returns the redirect target.
    pub async fn login(&self, client: &Client, username: &str) -> String {
        let response = self.post_login(client, username, PASSWORD, "").await;
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "sign-in of {username} failed: {}",
            describe(response).await
        );
        location(&response)
    }

    /// A signed-in client for a new user with `role`.
    pub async fn user_client(&self, name: &str, role: Role) -> Browser {
        self.create_user(name, role).await;
        let client = self.client();
        self.login(&client, name).await;
        client
    }

    /// The CSRF token the app put in a signed-in page's forms.
    pub async fn session_csrf(&self, client: &Client) -> String {
        let page = self
            .get(client, "/account")
            .await
            .text()
            .await
            .expect("body");
        hidden_field(&page, "csrf").expect("signed-in page has a csrf field")
    }

    /// The session cookie header value (`name=value`) the client holds.
    pub fn session_cookie(&self, response_or_jar: &HeaderMap) -> Option<String> {
        let name = self.settings.session_cookie_name();
        response_or_jar
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap_or_default().to_owned())
    }

    /// POSTs a form as a signed-in browser, with that session's CSRF token.
    pub async fn post_form(
        &self,
        browser: &Browser,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Response {
        let csrf = self.session_csrf(browser).await;
        self.post_form_with_csrf(browser, path, fields, &csrf).await
    }

    pub async fn post_form_with_csrf(
        &self,
        browser: &Browser,
        path: &str,
        fields: &[(&str, &str)],
        csrf: &str,
    ) -> Response {
        let mut all: Vec<(&str, &str)> = vec![("csrf", csrf)];
        all.extend_from_slice(fields);
        browser
            .post(self.url(path))
            .header(ACCEPT, BROWSER_ACCEPT)
            .form(&all)
            .send()
            .await
            .expect("POST")
    }

    pub async fn user_id(&self, name: &str) -> i64 {
        accounts::find(&self.pool, name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .id
    }

    /// Audit rows matching `where_sql`, waiting (up to 5 s) until at least `at_least` exist:
    /// the writer inserts off the request path, a few milliseconds later.
    pub async fn audit(&self, where_sql: &str, at_least: i64) -> Vec<AuditRow> {
        let sql = format!(
            "SELECT event, status, reason, username, target, path, method, ip, request_id, detail \
             FROM audit_events WHERE {where_sql} ORDER BY id"
        );
        for _ in 0..100 {
            let rows: Vec<AuditRow> = sqlx::query_as(&sql)
                .fetch_all(&self.pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            if rows.len() as i64 >= at_least {
                return rows;
            }
            sleep(50).await;
        }
        let all: Vec<AuditRow> = sqlx::query_as(
            "SELECT event, status, reason, username, target, path, method, ip, request_id, detail \
             FROM audit_events ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default();
        panic!("fewer than {at_least} audit rows where {where_sql}; all rows: {all:#?}");
    }

    /// The number of counted refusals (requests without a signed-in user) where `where_sql`
    /// holds, waiting up to 5 s for at least `at_least`: counts are written every second.
    pub async fn counted(&self, where_sql: &str, at_least: i64) -> i64 {
        let sql = format!(
            "SELECT coalesce(sum(count), 0)::bigint FROM audit_denials_by_minute WHERE {where_sql}"
        );
        let mut n = 0;
        for _ in 0..100 {
            n = self.count(&sql).await;
            if n >= at_least {
                return n;
            }
            sleep(50).await;
        }
        let all: Vec<(i16, String, String, i64)> = sqlx::query_as(
            "SELECT status, reason, path, count FROM audit_denials_by_minute ORDER BY minute",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default();
        panic!("{n} (fewer than {at_least}) counted refusals where {where_sql}; all: {all:#?}");
    }

    /// Moves every timestamp of `username`'s sessions `by` into the past, as if that long
    /// had passed since their last request: what a test would otherwise sleep for. The app
    /// compares these columns with the database's clock on every request, so the next
    /// request finds the sessions that much older (idle and absolute deadlines alike).
    pub async fn age_sessions(&self, username: &str, by: time::Duration) {
        let aged = sqlx::query(
            "UPDATE sessions s \
             SET created_at = s.created_at - make_interval(secs => $2), \
                 last_seen_at = s.last_seen_at - make_interval(secs => $2), \
                 idle_expires_at = s.idle_expires_at - make_interval(secs => $2), \
                 absolute_expires_at = s.absolute_expires_at - make_interval(secs => $2) \
             FROM users u WHERE u.id = s.user_id AND u.username = $1",
        )
        .bind(username)
        .bind(by.as_seconds_f64())
        .execute(&self.pool)
        .await
        .unwrap_or_else(|e| panic!("ageing the sessions of {username}: {e}"))
        .rows_affected();
        assert!(aged > 0, "{username} has no session to age");
    }

    /// Ages `username`'s sessions past the idle window (the idle timeout and a second more),
    /// so their next request finds them idle-expired.
    pub async fn idle_out(&self, username: &str) {
        let by = self.settings.idle_timeout + time::Duration::seconds(1);
        self.age_sessions(username, by).await;
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
#[allow(
    dead_code,
    reason = "every field is printed (Debug) when an assertion fails"
)]
pub struct AuditRow {
    pub event: String,
    pub status: Option<i16>,
    pub reason: Option<String>,
    pub username: Option<String>,
    pub target: Option<String>,
    pub path: Option<String>,
    pub method: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<serde_json::Value>,
}

pub fn location(response: &Response) -> String {
    header(response, LOCATION.as_str())
}

/// A response header's value ("" when absent or not text).
pub fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The value of `<input type="hidden" name="{name}" value="...">` in a page.
pub fn hidden_field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].to_owned())
}

/// Status, headers and the start of the body, for assertion messages.
pub async fn describe(response: Response) -> String {
    let status = response.status();
    let headers = format!("{:?}", response.headers());
    let body = response.text().await.unwrap_or_default();
    let excerpt: String = body.chars().take(1500).collect();
    format!("status {status}\nheaders {headers}\nbody {excerpt}")
}

/// Asserts a 303 to the sign-in page with the given notice and next.
pub async fn assert_login_redirect(response: Response, notice: &str, next: Option<&str>) {
    let status = response.status();
    let location = location(&response);
    let mut expected = String::from("/login?");
    if let Some(next) = next {
        expected.push_str(&format!("next={}&", urlencode(next)));
    }
    expected.push_str(&format!("notice={notice}"));
    assert!(
        status == StatusCode::SEE_OTHER && location == expected,
        "expected 303 to {expected}\n{}",
        describe(response).await
    );
}

pub fn urlencode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Asserts an API 401: challenge header, no-store, JSON reason.
pub async fn assert_api_401(response: Response, reason: &str) {
    let ok_status = response.status() == StatusCode::UNAUTHORIZED;
    let challenge = header(&response, "www-authenticate");
    let cache = header(&response, "cache-control");
    let text = response.text().await.unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    assert!(
        ok_status
            && challenge == r#"Session realm="portcullis""#
            && cache.contains("no-store")
            && json["reason"] == reason
            && json["error"] == "unauthenticated",
        "expected API 401 with reason {reason}; got challenge {challenge:?}, cache {cache:?}, body {text}"
    );
}

pub async fn sleep(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
