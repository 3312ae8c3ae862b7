//! DNS rebinding defence: answer only to the site's own names.
//!
//! A page on `http://rebound.example:3000/` whose DNS name the attacker then points at
//! 127.0.0.1 can send requests to an instance on the visitor's loopback and read the
//! answers: to the browser it is all one origin, so neither the same-origin policy nor
//! our `Origin` check (`origin.rs`, which compares `Origin` with `Host`) objects. What
//! gives it away is the name: the browser sends `Host: rebound.example:3000`.
//!
//! So a request is served only if its host is
//! - an IP address literal: a rebinding page can only use a DNS name (a page on an IP
//!   address has that address as its origin, so it cannot read our answers);
//! - `localhost`, which browsers resolve to loopback themselves, never through DNS;
//! - the host of `--public-url`.
//!
//! The port is not compared: the attacker controls only the name (the port is whatever
//! the victim's instance listens on), and proxies and port forwards (`ssh -L`) legitimately
//! change it. Everything else gets `421 Misdirected Request` (RFC 9110, 15.5.20), except the
//! health checks, which load balancers call by whatever name or address they know.

use axum::http::{HeaderMap, Uri, header};
use url::Url;

/// Paths load balancers and orchestrators probe, served whatever the host.
pub fn is_health_check(path: &str) -> bool {
    path == "/healthz" || path == "/readyz"
}

/// The host the client asked for: behind a trusted proxy, the `X-Forwarded-Host` it set
/// (its last entry: the one the nearest proxy wrote), else `Host`, else the request
/// line's authority. `None` when there is none (HTTP/1.0): no name, nothing rebound.
pub fn requested<'a>(headers: &'a HeaderMap, uri: &'a Uri, proxied: bool) -> Option<&'a str> {
    let forwarded = proxied
        .then(|| headers.get("x-forwarded-host"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    forwarded
        .or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()))
        .or_else(|| uri.authority().map(|a| a.as_str()))
}

/// The name part of a `Host` value, without port or trailing dot:
/// `Example.com.:443` → `Example.com`, `[::1]:3000` → `[::1]`.
fn name_of(host: &str) -> &str {
    let host = host.trim();
    let name = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.trim_end_matches('.')
}

/// Whether `host` (a `Host` header value) names this site (see the module comment).
pub fn is_own(host: Option<&str>, public_url: Option<&Url>) -> bool {
    let Some(host) = host else {
        return true;
    };
    let name = name_of(host);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok()
    {
        return true;
    }
    public_url
        .and_then(Url::host_str)
        .is_some_and(|public| name.eq_ignore_ascii_case(public.trim_end_matches('.')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_address_literals_are_own_names() {
        for host in [
            "127.0.0.1:3000",
            "127.0.0.1",
            "localhost:3000",
            "LOCALHOST.",
            "[::1]:3000",
            "[::1]",
            "10.1.2.3:8080",
        ] {
            assert!(is_own(Some(host), None), "{host}");
        }
        assert!(is_own(None, None), "no Host at all");
    }

    #[test]
    fn other_names_are_not_unless_they_are_the_public_url() {
        let public = Url::parse("https://Login.Example.com").expect("url");
        for host in [
            "rebound.example",
            "rebound.example:3000",
            "localhost.rebound.example",
            "127.0.0.1.rebound.example",
            "example.com",
            "login.example.com.evil.example",
        ] {
            assert!(!is_own(Some(host), None), "{host}");
            assert!(!is_own(Some(host), Some(&public)), "{host}");
        }
        for host in [
            "login.example.com",
            "LOGIN.example.com:443",
            "login.example.com.",
        ] {
            assert!(!is_own(Some(host), None), "{host}");
            assert!(is_own(Some(host), Some(&public)), "{host}");
        }
    }

    #[test]
    fn forwarded_host_counts_only_from_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:3001".parse().expect("host"));
        headers.insert(
            "x-forwarded-host",
            "spoofed.example, rebound.example".parse().expect("value"),
        );
        let uri: Uri = "/login".parse().expect("uri");
        assert_eq!(requested(&headers, &uri, false), Some("127.0.0.1:3001"));
        assert_eq!(requested(&headers, &uri, true), Some("rebound.example"));
        headers.remove("x-forwarded-host");
        assert_eq!(
            requested(&headers, &uri, true),
            Some("127.0.0.1:3001"),
            "a proxy that sets only Host"
        );
    }
}
