//! CSRF defence in depth: a state-changing request whose `Origin` (or, without one,
//! `Referer`) names another host is refused before any handler runs. Browsers send
//! `Origin` on every cross-site POST, so a forged form fails here even if a token leaked.

use axum::{
    extract::Request,
    http::{Method, header},
    middleware::Next,
    response::Response,
};

use super::denial;

/// `host[:port]` of an absolute URL, lowercased; `None` for anything else (incl. "null").
fn authority(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    (!authority.is_empty() && !authority.contains('@')).then(|| authority.to_ascii_lowercase())
}

pub async fn same_origin(request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let headers = request.headers();
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
        // Neither header: not a browser's cross-site request; the CSRF token decides.
        (None, _) => next.run(request).await,
        (Some(Some(claimed)), Some(host)) if claimed == host => next.run(request).await,
        _ => {
            let (parts, _) = request.into_parts();
            denial::cross_origin(&parts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn authorities_are_extracted_strictly() {
        assert_eq!(
            authority("https://Example.com:8443/path?q").as_deref(),
            Some("example.com:8443")
        );
        assert_eq!(
            authority("http://127.0.0.1:3000").as_deref(),
            Some("127.0.0.1:3000")
        );
        assert_eq!(authority("null"), None);
        assert_eq!(authority("https://user@evil.example/"), None);
        assert_eq!(authority("/relative"), None);
    }
}
