//! The relying party and the site URL, derived from `--public-url` (or its absence).

use super::*;

fn rp(url: Option<&str>) -> Result<RelyingParty, String> {
    let url = url.map(|u| url::Url::parse(u).expect("url"));
    RelyingParty::new(url.as_ref(), "127.0.0.1:3000".parse().expect("address"))
}

#[test]
fn the_relying_party_is_the_public_url_or_localhost() {
    let local = rp(None).expect("local");
    assert_eq!(local.id, "localhost");
    assert_eq!(local.origin.as_str(), "http://localhost:3000/");
    let public = rp(Some("https://Login.Example.com")).expect("public");
    assert_eq!(public.id, "login.example.com");
    assert_eq!(public.origin.as_str(), "https://login.example.com/");
    let port = rp(Some("https://login.example.com:8443/")).expect("port");
    assert_eq!(port.origin.as_str(), "https://login.example.com:8443/");
    assert!(rp(Some("http://localhost:8080")).is_ok());
    assert!(rp(Some("http://app.localhost:8080")).is_ok());
}

#[test]
fn the_site_url_prefers_the_public_url_then_localhost() {
    let public = url::Url::parse("https://login.example.com").expect("url");
    let bind = "127.0.0.1:3000".parse().expect("address");
    assert_eq!(site_url(Some(&public), bind).as_str(), public.as_str());
    assert_eq!(site_url(None, bind).as_str(), "http://localhost:3000/");
    let any = "0.0.0.0:8080".parse().expect("address");
    assert_eq!(site_url(None, any).as_str(), "http://localhost:8080/");
    let lan = "10.1.2.3:80".parse().expect("address");
    assert_eq!(site_url(None, lan).as_str(), "http://10.1.2.3/");
    let v6 = "[2001:db8::1]:3000".parse().expect("address");
    assert_eq!(site_url(None, v6).as_str(), "http://[2001:db8::1]:3000/");
}

#[test]
fn unusable_public_urls_are_refused_with_the_reason() {
    let ip = rp(Some("https://10.1.2.3")).expect_err("an IP address");
    assert!(ip.contains("IP"), "{ip}");
    let v6 = rp(Some("https://[::1]:8443")).expect_err("an IP address");
    assert!(v6.contains("IP"), "{v6}");
    let plain = rp(Some("http://login.example.com")).expect_err("plain http");
    assert!(plain.contains("https://"), "{plain}");
}
