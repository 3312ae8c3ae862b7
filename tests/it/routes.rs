//! The route table (`portcullis::web::routes`) is the router: every entry is served, no
//! route is added anywhere else, and every route, parameter and field answers bad input
//! without a 5xx.

use axum::{
    body::Body,
    extract::{MatchedPath, Request},
    http::HeaderValue,
    middleware::{self, Next},
    response::Response,
};
use portcullis::{
    App,
    auth::{Role, password::PasswordHasher},
    web::{RouteSpec, routes},
};
use reqwest::{Method, StatusCode, header::ACCEPT};
use tower::ServiceExt;

use crate::support::*;

/// `template` with each `{param}` replaced by `value(param)`.
pub fn fill_path(template: &str, value: impl Fn(&str) -> String) -> String {
    template
        .split('/')
        .map(|segment| match segment.strip_prefix('{') {
            Some(rest) => value(rest.trim_end_matches('}')),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The routes only administrators may use.
pub fn admin_routes() -> Vec<&'static RouteSpec> {
    routes()
        .iter()
        .filter(|r| r.access.role() == Some(Role::Admin))
        .collect()
}

/// Names the route template a request matched, in a response header (test only).
async fn stamp_matched_route(request: Request, next: Next) -> Response {
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let mut response = next.run(request).await;
    if let Some(value) = matched.and_then(|m| HeaderValue::from_str(&m).ok()) {
        response.headers_mut().insert("x-matched-route", value);
    }
    response
}

#[tokio::test]
async fn every_route_in_the_table_is_served_by_the_router() {
    let (pool, _db_name) = fresh_database().await;
    let hasher = PasswordHasher::start(0).expect("hasher");
    let app = App::build_with_hasher(pool, test_settings(), hasher)
        .await
        .expect("app");
    let router = app
        .router()
        .route_layer(middleware::from_fn(stamp_matched_route));
    for spec in routes() {
        let path = fill_path(spec.path, |_| "1".into());
        let request = axum::http::Request::builder()
            .method(spec.method.clone())
            .uri(&path)
            .header(ACCEPT.as_str(), BROWSER_ACCEPT)
            .body(Body::empty())
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("response");
        let matched = response
            .headers()
            .get("x-matched-route")
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            matched,
            Some(spec.path),
            "{} {path} was not served by its route (status {})",
            spec.method,
            response.status()
        );
    }
}

/// Routes are declared in the table and built from it: a `.route(` elsewhere would be a
/// route the table (and every test reading it) does not know.
#[test]
fn no_route_is_added_outside_the_table() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut pending = vec![root.clone()];
    let mut offenders = Vec::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("web/routes.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            for needle in [
                ".route(",
                ".route_service(",
                ".nest(",
                ".nest_service(",
                "Router::new(",
            ] {
                if text.contains(needle) {
                    offenders.push(format!("{}: {needle}", path.display()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "routes outside src/web/routes.rs: {offenders:?}"
    );
}

/// Values no text field accepts, and what the app must answer: a 400 (naming the field),
/// or for a value past the request limits 413 (body) or 414 (URL, answered by hyper).
const HOSTILE: [(&str, &str); 4] = [
    ("NUL", "a%00b"),
    ("a control character", "a%01b"),
    ("invalid UTF-8", "a%FFb"),
    ("a line break", "a%0Ab"),
];

fn long_values() -> [(&'static str, String); 2] {
    [
        ("3,000 characters", "x".repeat(3_000)),
        ("100 KB", "x".repeat(100 * 1024)),
    ]
}

/// Path parameters, when another one is under test: an id no row has (the
/// administrator's own session must not be signed out by a form that slips through).
const NO_SUCH_ID: &str = "987654321";

/// A parameter nobody declared: scanners add them, and the rules apply to them too.
const UNDECLARED: &str = "probe";

struct Client<'a> {
    name: &'static str,
    browser: &'a Browser,
    csrf: Option<String>,
    /// Only forms: a stale sign-in changes nothing for pages.
    forms_only: bool,
}

impl Client<'_> {
    fn may_use(&self, spec: &RouteSpec) -> bool {
        spec.access.role().is_none() || self.csrf.is_some()
    }
}

async fn send(
    app: &TestApp,
    client: &Client<'_>,
    spec: &RouteSpec,
    path: &str,
    field: Option<(&str, &str)>,
) -> (StatusCode, String) {
    let (query, body) = match (&spec.method, field) {
        (&Method::GET, Some((name, value))) => (format!("?{name}={value}"), None),
        (_, field) => {
            let mut body = client
                .csrf
                .as_ref()
                .filter(|_| spec.inputs().signed)
                .map(|csrf| format!("csrf={}&", urlencode(csrf)))
                .unwrap_or_default();
            if let Some((name, value)) = field {
                body.push_str(&format!("{name}={value}"));
            }
            (String::new(), Some(body))
        }
    };
    let target = format!("{path}{query}");
    if target.len() > 60_000 {
        // Longer than an `http::Uri` may be: reqwest will not send it.
        return send_raw_get(app, client, &target).await;
    }
    let mut request = client
        .browser
        .request(spec.method.clone(), app.url(&target))
        .header(ACCEPT, BROWSER_ACCEPT);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
    }
    // A connection the server closed after an early 413 may be picked from the pool once
    // more: one retry. (Errors name the URL, which may be long: not printed.)
    let response = match request.try_clone().map(|r| r.send()) {
        Some(first) => match first.await {
            Ok(response) => response,
            Err(_) => request
                .send()
                .await
                .map_err(|e| e.without_url())
                .expect("send"),
        },
        None => request
            .send()
            .await
            .map_err(|e| e.without_url())
            .expect("send"),
    };
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (status, text)
}

/// A GET written by hand, for a request line no HTTP client library will build.
async fn send_raw_get(app: &TestApp, client: &Client<'_>, target: &str) -> (StatusCode, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cookie = client
        .browser
        .cookie(&app.url("/"), app.settings.session_cookie_name())
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nAccept: text/html\r\n{cookie}Connection: close\r\n\r\n",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "no answer to a long request line");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or_else(|| panic!("no status line: {}", excerpt(&text)));
    (status, text)
}

fn excerpt(body: &str) -> String {
    body.chars().take(600).collect()
}

/// Every route, every declared query parameter and form field (and one undeclared), each
/// with NUL, a control character, invalid UTF-8, a line break and over-long values, signed
/// out, as an administrator with a valid CSRF token (so forms reach their handler), and
/// (forms) as one whose sign-in is too old for sensitive changes (so forms are kept for
/// after `/reauth`); path parameters get values that are not ids. Nothing may be a 5xx; text the
/// rules refuse is a 400 naming the field, unless the guard answered first.
#[tokio::test]
async fn every_route_and_field_answers_bad_input_without_a_server_error() {
    let app = TestApp::spawn().await;
    let signed_out = app.client();
    let admin = app.user_client("root", Role::Admin).await;
    // Signed in 11 minutes ago: sensitive forms keep their fields for after `/reauth`.
    let stale = app.user_client("old", Role::Admin).await;
    sqlx::query(
        "UPDATE sessions SET authenticated_at = now() - interval '11 minutes' \
         WHERE user_id = (SELECT id FROM users WHERE username = 'old')",
    )
    .execute(&app.pool)
    .await
    .expect("age the sign-in");
    let clients = [
        Client {
            name: "signed out",
            browser: &signed_out,
            csrf: None,
            forms_only: false,
        },
        Client {
            name: "admin",
            browser: &admin,
            csrf: Some(app.session_csrf(&admin).await),
            forms_only: false,
        },
        Client {
            name: "admin (stale sign-in)",
            browser: &stale,
            csrf: Some(app.session_csrf(&stale).await),
            forms_only: true,
        },
    ];
    let mut failures = Vec::new();
    let mut sent = 0;
    for client in &clients {
        for spec in routes() {
            if client.forms_only && spec.method == Method::GET {
                continue;
            }
            let inputs = spec.inputs();
            let path = fill_path(spec.path, |_| NO_SUCH_ID.into());
            let reads = if spec.method == Method::GET {
                inputs.query.clone()
            } else {
                inputs.form.clone()
            };
            let mut fields: Vec<(&str, bool)> = reads
                .iter()
                .flatten()
                .map(|f| (f.name, f.multi_line))
                .collect();
            fields.push((UNDECLARED, false));
            for (field, multi_line) in fields {
                let values = HOSTILE
                    .iter()
                    .map(|(what, v)| (*what, v.to_string()))
                    .chain(long_values());
                for (what, value) in values {
                    let (status, body) =
                        send(&app, client, spec, &path, Some((field, &value))).await;
                    sent += 1;
                    let case = format!(
                        "{} {} {path} {field}={what}: {status}",
                        client.name, spec.method
                    );
                    if status.is_server_error() {
                        failures.push(format!("{case}\n{}", excerpt(&body)));
                        continue;
                    }
                    let refused = reads.is_some()
                        && client.may_use(spec)
                        && !(multi_line && what == "a line break");
                    if !refused {
                        continue;
                    }
                    let ok = match what {
                        "100 KB" => {
                            status == StatusCode::PAYLOAD_TOO_LARGE
                                || status == StatusCode::URI_TOO_LONG
                        }
                        _ => {
                            status == StatusCode::BAD_REQUEST
                                && (body.contains(&format!("“{field}”"))
                                    || body.contains("no username or password contains"))
                        }
                    };
                    if !ok {
                        failures.push(format!("{case} (expected the refusal)\n{}", excerpt(&body)));
                    }
                }
            }
            for param in spec.path_params() {
                for bad in [
                    "abc",
                    "99999999999999999999999",
                    "-1",
                    "0",
                    "1%00",
                    "%FF",
                    "1.5",
                ] {
                    let path = fill_path(spec.path, |p| {
                        if p == param {
                            bad.into()
                        } else {
                            NO_SUCH_ID.into()
                        }
                    });
                    let (status, body) = send(&app, client, spec, &path, None).await;
                    sent += 1;
                    let case = format!("{} {} {path}: {status}", client.name, spec.method);
                    let not_an_id = !matches!(bad, "-1" | "0");
                    if status.is_server_error()
                        || (client.may_use(spec) && not_an_id && status != StatusCode::BAD_REQUEST)
                    {
                        failures.push(format!("{case}\n{}", excerpt(&body)));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // The administrator's session survived it all: no refused form reached a handler.
    assert_eq!(app.get(&admin, "/admin").await.status(), StatusCode::OK);
    assert_eq!(app.count("SELECT count(*) FROM users").await, 2);
}
