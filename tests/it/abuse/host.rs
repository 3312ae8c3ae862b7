//! DNS rebinding: a web page whose name the attacker re-points at 127.0.0.1 can send
//! requests to an instance on loopback, under the page's own origin. The `Host` header
//! still carries the attacker's name, so an instance answers only to its own names.

use reqwest::{StatusCode, header::HOST};

use crate::{process::Server, support::*};

async fn status(client: &reqwest::Client, url: &str, host: &str) -> StatusCode {
    client
        .get(url)
        .header(HOST, host)
        .header(reqwest::header::ACCEPT, BROWSER_ACCEPT)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url} as {host}: {e}"))
        .status()
}

/// On loopback without `--public-url`: loopback names and addresses are served, any other
/// name gets `421 Misdirected Request` — except the health checks, which load balancers
/// call by whatever name or address they know.
#[tokio::test]
async fn a_loopback_instance_answers_only_to_loopback_names() {
    let app = TestApp::spawn().await;
    let client = app.bare_client();
    let port = app.addr.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        format!("[::1]:{port}"),
        "127.0.0.1".to_owned(),
    ] {
        assert_eq!(
            status(&client, &app.url("/login"), &host).await,
            StatusCode::OK,
            "{host}"
        );
    }
    for host in [
        "rebound.example".to_owned(),
        format!("rebound.example:{port}"),
        format!("localhost.rebound.example:{port}"),
    ] {
        for path in ["/", "/login", "/account", "/static/app.css"] {
            assert_eq!(
                status(&client, &app.url(path), &host).await,
                StatusCode::MISDIRECTED_REQUEST,
                "{host} {path}"
            );
        }
        for path in ["/healthz", "/readyz"] {
            assert_eq!(
                status(&client, &app.url(path), &host).await,
                StatusCode::OK,
                "{host} {path}"
            );
        }
    }
}

/// With `--public-url`, its host is served too (any port: a proxy may or may not keep
/// it), and behind a trusted proxy an `X-Forwarded-Host` it sets is what gets checked.
#[tokio::test]
async fn the_public_url_names_the_site() {
    let (pool, db) = fresh_database().await;
    pool.close().await;
    let url = database_url(&db);
    let (server, log) = Server::start_with(
        &[
            "--database-url",
            &url,
            "--public-url",
            "https://login.example.com",
            "--trusted-proxy",
            "127.0.0.1",
        ],
        &[],
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = format!("{}/login", server.base);
    let port = server
        .base
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    for (host, expected) in [
        ("login.example.com", StatusCode::OK),
        ("LOGIN.example.com:443", StatusCode::OK),
        (&*format!("127.0.0.1:{port}"), StatusCode::OK),
        ("rebound.example", StatusCode::MISDIRECTED_REQUEST),
        ("example.com", StatusCode::MISDIRECTED_REQUEST),
    ] {
        assert_eq!(
            status(&client, &login, host).await,
            expected,
            "{host}\n{}",
            log.lock().expect("lock").join("\n")
        );
    }
    for (forwarded, expected) in [
        ("login.example.com", StatusCode::OK),
        ("rebound.example", StatusCode::MISDIRECTED_REQUEST),
    ] {
        let response = client
            .get(&login)
            .header(HOST, "login.example.com")
            .header("x-forwarded-host", forwarded)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), expected, "X-Forwarded-Host {forwarded}");
    }
    server.stop();
}
