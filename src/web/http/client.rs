//! Who is on the other end: the client's IP and whether the request came over HTTPS.
//!
//! `X-Forwarded-For` and `X-Forwarded-Proto` are believed only when the direct peer is a
//! configured trusted proxy (`--trusted-proxy`); never by default, because any client can
//! send them. Through a proxy, the client is the right-most address in `X-Forwarded-For`
//! that is not itself a trusted proxy (proxies append; the left part is client-supplied).

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub ip: IpAddr,
    /// Whether the client reached us over HTTPS (directly: never, we serve plain HTTP;
    /// through a trusted proxy: its `X-Forwarded-Proto`).
    pub https: bool,
    /// Whether the request came through a trusted proxy.
    pub proxied: bool,
}

pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> ClientInfo {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return ClientInfo {
            ip: peer,
            https: false,
            proxied: false,
        };
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse::<IpAddr>().ok())
        .collect();
    let ip = forwarded
        .iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(forwarded.first())
        .copied()
        .unwrap_or(peer);
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    ClientInfo {
        ip,
        https,
        proxied: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        map
    }

    #[test]
    fn forwarded_headers_are_ignored_from_untrusted_peers() {
        let peer: IpAddr = "203.0.113.9".parse().expect("ip");
        let info = resolve(
            peer,
            &headers(&[
                ("x-forwarded-for", "1.2.3.4"),
                ("x-forwarded-proto", "https"),
            ]),
            &[],
        );
        assert_eq!(info.ip, peer);
        assert!(!info.https && !info.proxied);
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let trusted: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().expect("net"),
            "10.0.0.0/8".parse().expect("net"),
        ];
        let peer: IpAddr = "127.0.0.1".parse().expect("ip");
        let info = resolve(
            peer,
            &headers(&[
                ("x-forwarded-for", "198.51.100.7"),
                ("x-forwarded-proto", "https"),
            ]),
            &trusted,
        );
        assert_eq!(info.ip.to_string(), "198.51.100.7");
        assert!(info.https && info.proxied);
        // A client-supplied value to the left of the proxy's own entry is not believed.
        let info = resolve(
            peer,
            &headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")]),
            &trusted,
        );
        assert_eq!(info.ip.to_string(), "198.51.100.7");
        // Garbage falls back to the peer.
        let info = resolve(
            peer,
            &headers(&[("x-forwarded-for", "not-an-ip")]),
            &trusted,
        );
        assert_eq!(info.ip, peer);
    }
}
