//! CSRF defence in depth: a state-changing request whose `Origin` (or, without one,
//! `Referer`) names another host is refused before any handler runs. Browsers send
//! `Origin` on every cross-site POST, so a forged form fails here even if a token leaked.

use axum::{
    extract::Request,
    http::{Method, header},
};

use super::request::authority;

/// Whether a state-changing request names another site in `Origin` (or, without one,
/// `Referer`). Safe methods and requests with neither header pass (the CSRF token decides).
pub fn is_cross_site(request: &Request) -> bool {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return false;
    }
    let headers = request.headers();
    // A page sent with `Referrer-Policy: no-referrer` (the one-time link page) makes the
    // browser send `Origin: null` with its own forms (Fetch standard, "append a request
    // `Origin` header"). `Sec-Fetch-Site`, which the browser sets and no page can, still
    // tells its own forms from another site's; the CSRF token decides as always.
    if headers.get(header::ORIGIN).is_some_and(|o| o == "null")
        && headers
            .get("sec-fetch-site")
            .is_some_and(|s| s == "same-origin")
    {
        return false;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|a| a.as_str().to_ascii_lowercase())
        });
    let claimed = match headers.get(header::ORIGIN) {
        Some(origin) => Some(origin.to_str().ok().and_then(authority)),
        None => headers
            .get(header::REFERER)
            .map(|referer| referer.to_str().ok().and_then(authority)),
    };
    match (claimed, host) {
        (None, _) => false,
        (Some(Some(claimed)), Some(host)) => claimed != host,
        _ => true,
    }
}
