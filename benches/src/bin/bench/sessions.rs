//! Signing in over HTTP, the way a browser does, to get the session cookies the load
//! generator replays; and a pre-flight check that each server answers as expected.

use anyhow::{Context, bail, ensure};
use rand::RngCore;
use reqwest::{Client, StatusCode, header};
use sqlx::PgPool;

use crate::{PageBytes, servers::Server};

pub fn member(k: usize) -> String {
    format!("member{k}")
}

/// The users the sign-in scenarios sign in (never the page load's).
pub fn flooder(k: usize) -> String {
    format!("flooder{k}")
}

/// `application/x-www-form-urlencoded` for our ASCII values.
pub fn form_encode(value: &str) -> String {
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

pub fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A client that keeps no cookies and follows no redirects: we read them ourselves.
pub fn client() -> anyhow::Result<Client> {
    Ok(Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// `name=value` of the cookie `name` a response sets.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default())
        .find(|pair| pair.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn hidden_field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].to_owned())
}

/// One anonymous CSRF cookie value and its form token. The token is an HMAC of the
/// cookie, so the pair stays valid for any number of sign-ins.
pub async fn portcullis_csrf_pair(base: &str) -> anyhow::Result<(String, String)> {
    let response = client()?
        .get(format!("{base}/login"))
        .header(header::ACCEPT, "text/html")
        .send()
        .await?;
    let cookie = set_cookie(&response, "portcullis_csrf").context("no CSRF cookie on /login")?;
    let page = response.text().await?;
    let token = hidden_field(&page, "csrf").context("no csrf field on /login")?;
    let value = cookie
        .split_once('=')
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    Ok((value, token))
}

/// Signs `member(k)` in; returns the session cookie (`name=value`).
pub async fn portcullis_sign_in(
    client: &Client,
    base: &str,
    csrf_cookie: &str,
    token: &str,
    k: usize,
) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/login"))
        .header(header::ACCEPT, "text/html")
        .header(header::COOKIE, format!("portcullis_csrf={csrf_cookie}"))
        .form(&[
            ("username", member(k).as_str()),
            ("password", portcullis_bench::PASSWORD),
            ("csrf", token),
            ("next", ""),
        ])
        .send()
        .await?;
    ensure!(
        response.status() == StatusCode::SEE_OTHER,
        "Portcullis sign-in of {} answered {}",
        member(k),
        response.status()
    );
    set_cookie(&response, "portcullis_session").context("no session cookie after sign-in")
}

pub async fn portcullis_sessions(
    base: &str,
    count: usize,
    users: usize,
) -> anyhow::Result<Vec<String>> {
    let client = client()?;
    let (cookie, token) = portcullis_csrf_pair(base).await?;
    let mut cookies = Vec::with_capacity(count);
    for i in 0..count {
        cookies.push(portcullis_sign_in(&client, base, &cookie, &token, i % users).await?);
    }
    Ok(cookies)
}

pub async fn peer_sessions(base: &str, count: usize, users: usize) -> anyhow::Result<Vec<String>> {
    let client = client()?;
    let mut cookies = Vec::with_capacity(count);
    for i in 0..count {
        let response = client
            .post(format!("{base}/login"))
            .form(&[
                ("username", member(i % users).as_str()),
                ("password", portcullis_bench::PASSWORD),
                ("next", ""),
            ])
            .send()
            .await?;
        ensure!(
            response.status() == StatusCode::SEE_OTHER,
            "peer sign-in answered {}",
            response.status()
        );
        // tower-sessions' default cookie name.
        cookies.push(set_cookie(&response, "id").context("no session cookie from the peer")?);
    }
    Ok(cookies)
}

pub async fn ceiling_sessions(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    let tokens: Vec<String> = sqlx::query_scalar("SELECT token FROM tokens ORDER BY token")
        .fetch_all(pool)
        .await?;
    Ok(tokens
        .into_iter()
        .map(|t| format!("{}={t}", portcullis_bench::CEILING_COOKIE))
        .collect())
}

/// Checks the three answers the scenarios count as success, and measures the pages.
pub async fn preflight(server: &Server, cookie: &str) -> anyhow::Result<PageBytes> {
    let client = client()?;
    let get = |path: &str, cookie: Option<&str>| {
        let mut request = client
            .get(format!("{}{path}", server.base))
            .header(header::ACCEPT, "text/html");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        request.send()
    };
    let account = get("/account", Some(cookie)).await?;
    let status = account.status();
    let account = account.text().await?;
    if status != StatusCode::OK || !account.contains("Your account") || !account.contains("member")
    {
        bail!(
            "{}: GET /account with a session answered {status}: {}",
            server.name,
            account.chars().take(300).collect::<String>()
        );
    }
    let forbidden = get("/reports", Some(cookie)).await?;
    ensure!(
        forbidden.status() == StatusCode::FORBIDDEN,
        "{}: GET /reports as a member answered {}",
        server.name,
        forbidden.status()
    );
    let forbidden = forbidden.text().await?;
    let me = get("/api/me", Some(cookie)).await?;
    ensure!(
        me.status() == StatusCode::OK,
        "{}: GET /api/me with a session answered {}",
        server.name,
        me.status()
    );
    let me = me.text().await?;
    let anon = get("/account", None).await?;
    let location = anon
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        anon.status().is_redirection() && location.starts_with("/login"),
        "{}: anonymous GET /account answered {} to {location:?}",
        server.name,
        anon.status()
    );
    Ok(PageBytes {
        server: server.name.into(),
        account: account.len(),
        forbidden: forbidden.len(),
        api_me: me.len(),
    })
}

/// Warns when the ceiling's account page is not the size of Portcullis' (the ceiling
/// mirrors `templates/account.html` by hand: a template change must be followed there).
pub fn compare_pages(pages: &[PageBytes]) {
    let size = |name: &str| pages.iter().find(|p| p.server == name).map(|p| p.account);
    if let (Some(ours), Some(ceiling)) = (size("portcullis"), size("ceiling")) {
        let difference = ours.abs_diff(ceiling) as f64 / ours.max(1) as f64;
        if difference > 0.02 {
            crate::log(format!(
                "warning: the ceiling's /account page is {ceiling} bytes, Portcullis' {ours}: \
                 update benches/src/page.rs to match templates/account.html"
            ));
        }
    }
}
