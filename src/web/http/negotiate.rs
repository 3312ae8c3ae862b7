//! Browser or API client? It decides between a redirect to sign-in and a real 401.

use axum::http::{HeaderMap, Method, Uri, header};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A person in a browser: gets pages and redirects.
    Browser,
    /// A program: gets JSON and real status codes, never a redirect to a login page.
    Api,
}

impl RequestKind {
    /// `/api/*` is always API. Otherwise an `Accept` naming `text/html` is a browser, one
    /// naming JSON is API, and with neither a GET/HEAD is a plain navigation (a browser)
    /// while anything else is API.
    pub fn of(method: &Method, uri: &Uri, headers: &HeaderMap) -> RequestKind {
        let path = uri.path();
        if path == "/api" || path.starts_with("/api/") {
            return RequestKind::Api;
        }
        // Case-insensitive substring checks over every Accept value, without allocating:
        // this runs on every request.
        let accepts = |needle: &str| {
            headers.get_all(header::ACCEPT).iter().any(|value| {
                value
                    .as_bytes()
                    .windows(needle.len())
                    .any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
            })
        };
        if accepts("text/html") || accepts("application/xhtml+xml") {
            RequestKind::Browser
        } else if accepts("json") {
            RequestKind::Api
        } else if method == Method::GET || method == Method::HEAD {
            RequestKind::Browser
        } else {
            RequestKind::Api
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(method: Method, path: &str, accept: Option<&str>) -> RequestKind {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT, accept.parse().expect("header"));
        }
        RequestKind::of(&method, &path.parse().expect("uri"), &headers)
    }

    #[test]
    fn classification_follows_the_contract() {
        use RequestKind::*;
        assert_eq!(
            kind(Method::GET, "/reports", Some("text/html,*/*;q=0.8")),
            Browser
        );
        assert_eq!(kind(Method::GET, "/reports", None), Browser);
        assert_eq!(kind(Method::GET, "/reports", Some("*/*")), Browser);
        assert_eq!(kind(Method::GET, "/reports", Some("application/json")), Api);
        assert_eq!(kind(Method::GET, "/api/me", Some("text/html")), Api);
        assert_eq!(kind(Method::POST, "/logout", None), Api);
        assert_eq!(kind(Method::POST, "/logout", Some("text/html")), Browser);
    }
}
