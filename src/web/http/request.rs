//! What a handler needs to know about the request itself, read one way everywhere: its id,
//! the client's address and user agent, the page a form was sent from, and the audit
//! record's view of it.

use axum::http::{Extensions, HeaderMap, HeaderName, header, request::Parts};

use super::frame::{RequestFrame, client_of};
use crate::{
    audit::{AuditEvent, MAX_USER_AGENT, RequestMeta, clip},
    auth::next::safe_next,
};

/// The request id header on every response (set by `frame`; a client's own on a request is
/// ignored).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest path kept in audit records.
const MAX_PATH: usize = 512;

/// This request's id, as `frame` chose it ("-" outside it).
pub fn request_id(extensions: &Extensions) -> &str {
    extensions
        .get::<RequestFrame>()
        .map_or("-", |framed| crate::logs::request_id_text(&framed.id))
}

/// The client's address as the app sees it (through trusted proxies, the real client).
pub fn client_ip(parts: &Parts) -> String {
    client_of(&parts.extensions)
        .map(|client| client.ip.to_string())
        .unwrap_or_default()
}

/// The user agent, without control characters and clipped to what sessions and the audit
/// trail keep.
pub fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| clip(ua, MAX_USER_AGENT))
}

/// `host[:port]` of an absolute http(s) URL, lowercased; `None` for anything else (a
/// relative URL, "null", credentials in the URL).
pub fn authority(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// The same-origin page this request came from (`Referer`), as a safe local path with its
/// query: where to go back to after a form. `None` for another site or no `Referer`.
pub fn referring_page(parts: &Parts) -> Option<String> {
    let referer = parts.headers.get(header::REFERER)?.to_str().ok()?;
    let host = parts.headers.get(header::HOST)?.to_str().ok()?;
    if authority(referer)? != host.to_ascii_lowercase() {
        return None;
    }
    let url = url::Url::parse(referer).ok()?;
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    safe_next(&path)
}

/// Where and from whom the request came, as the audit trail records it.
pub fn audit_meta(parts: &Parts) -> RequestMeta {
    RequestMeta {
        path: Some(clip(parts.uri.path(), MAX_PATH)),
        method: Some(parts.method.to_string()),
        ip: client_of(&parts.extensions).map(|client| client.ip.to_string()),
        user_agent: user_agent(&parts.headers),
        request_id: Some(request_id(&parts.extensions).to_owned()),
    }
}

/// Records an audit event about this request (the audit log travels in the request's
/// extensions, put there by `frame`). Waits while the audit queue is full: an event about
/// a known person is never dropped.
pub async fn record(parts: &Parts, event: impl FnOnce(RequestMeta) -> AuditEvent) {
    if let Some(framed) = parts.extensions.get::<RequestFrame>() {
        framed.frame.audit.record(event(audit_meta(parts))).await;
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
        assert_eq!(
            authority("http://[::1]:3000/x").as_deref(),
            Some("[::1]:3000")
        );
        assert_eq!(authority("null"), None);
        assert_eq!(authority("https://user@evil.example/"), None);
        assert_eq!(authority("/relative"), None);
        assert_eq!(authority("javascript:alert(1)"), None);
    }
}
