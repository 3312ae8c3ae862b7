//! The frame around every request, in one middleware.
//!
//! It used to be a stack of ten small layers (request id set, propagate and strip, trace
//! span, client address, site and audit extensions, origin check, error pages, security
//! headers, noindex, metrics). Each axum `from_fn`/`map_*` layer boxes a future and clones
//! its inner service on every request; the benchmark's profile showed that stack costing
//! more CPU than the page itself (benches/ANALYSIS.md). One function does the same work in
//! one pass (a [`Wrap`], not even one `from_fn`: see `layer.rs`), in this order:
//!
//! 1. a random request id (the client's is never trusted), the client's address (through
//!    trusted proxies only), the site and audit handles, the id every log line names;
//! 2. the host check (421 for a name that is not the site's: DNS rebinding, `host.rs`),
//!    the cross-site check for state-changing requests (CSRF defence in depth) and the
//!    body limit (413 before reading when `Content-Length` says too much);
//! 3. the handler, within the request timeout (408), a panic in it becoming a 500;
//! 4. the error page or JSON error for any unfinished 4xx/5xx;
//! 5. headers: security policy, `no-store`, `noindex`, `X-Request-Id`; metrics.

use std::{
    any::Any,
    convert::Infallible,
    future::Future,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    ops::ControlFlow,
    panic::AssertUnwindSafe,
    sync::{Arc, RwLock},
    time::Instant,
};

use axum::{
    body::Body,
    extract::{ConnectInfo, MatchedPath, Request},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::{
    FutureExt,
    future::{CatchUnwind, Either},
};
use http_body_util::Limited;
use ipnet::IpNet;
use metrics::{Counter, Histogram};
use tokio::time::{Timeout, error::Elapsed};
use tower::Service;
use tracing::Instrument;

use super::{
    BODY_LIMIT, REQUEST_ID, Site, client, denial, errors, host, layer::Wrap,
    negotiate::RequestKind, origin,
};
use crate::{audit::AuditLog, telemetry::metric};

pub const ROBOTS_TAG: HeaderName = HeaderName::from_static("x-robots-tag");

/// Marks a response as not for search engines.
fn noindex(response: &mut Response) {
    response.headers_mut().insert(ROBOTS_TAG, NOINDEX);
}

pub struct Frame {
    pub site: Arc<Site>,
    /// The request counter and duration histogram of each route, method and status.
    pub metrics: RequestMetrics,
    pub audit: AuditLog,
    pub trusted_proxies: Vec<IpNet>,
    /// `--secure-cookies`: the site is HTTPS, so responses carry HSTS.
    pub secure: bool,
    pub request_timeout: std::time::Duration,
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// What the frame hands each request, in one extension (each insert is a box and a hash-map
/// entry per request): the shared handles, who the client is, the request kind and id.
#[derive(Clone)]
pub struct RequestFrame {
    pub frame: Arc<Frame>,
    pub client: client::ClientInfo,
    /// Browser or API client, as the error pages and refusals answer it.
    pub kind: RequestKind,
    /// The request id (16 lowercase hex digits), on the response and every log line.
    /// Carried here rather than as a request header: no header-map insert and no second
    /// copy of the value per request, and a client's own `x-request-id` is never read.
    pub id: [u8; 16],
    /// The route's template (`/admin/users/{id}`), where the router matched one: what
    /// metrics and the denial counts name (never the raw path, whose values are unbounded).
    pub route: Option<MatchedPath>,
}

/// The request's client (see [`client::resolve`]), where the frame has run.
pub fn client_of(extensions: &axum::http::Extensions) -> Option<client::ClientInfo> {
    extensions.get::<RequestFrame>().map(|framed| framed.client)
}

/// Browser or API client, as the frame worked it out (from the request itself where the
/// frame has not run).
pub fn kind_of(parts: &axum::http::request::Parts) -> RequestKind {
    match parts.extensions.get::<RequestFrame>() {
        Some(framed) => framed.kind,
        None => RequestKind::of(&parts.method, &parts.uri, &parts.headers),
    }
}

/// The request metrics' handles, looked up once per route, method and status: building a
/// labelled key (two owned strings) and looking it up in the registry on every request was
/// a measurable part of the hot path (benches/ANALYSIS.md). Label values are bounded as
/// before: route templates, eight method names, status codes.
#[derive(Default)]
pub struct RequestMetrics {
    /// foldhash: keyed by route templates only, looked up on every request.
    by_route: RwLock<foldhash::HashMap<String, Vec<RouteMetrics>>>,
}

struct RouteMetrics {
    method: &'static str,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

impl RequestMetrics {
    fn record(&self, method: &'static str, route: &str, status: u16, took: f64) {
        // The common case under the read lock, without cloning the handles.
        if let Ok(routes) = self.by_route.read()
            && let Some(line) = routes.get(route).and_then(|lines| {
                lines
                    .iter()
                    .find(|m| m.method == method && m.status == status)
            })
        {
            line.requests.increment(1);
            line.duration.record(took);
            return;
        }
        let (requests, duration) = self.register(method, route, status);
        requests.increment(1);
        duration.record(took);
    }

    #[cold]
    fn register(&self, method: &'static str, route: &str, status: u16) -> (Counter, Histogram) {
        let labels = [
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        let line = RouteMetrics {
            method,
            status,
            requests: metrics::counter!(metric::HTTP_REQUESTS, &labels),
            duration: metrics::histogram!(metric::HTTP_DURATION, &labels),
        };
        let handles = (line.requests.clone(), line.duration.clone());
        if let Ok(mut routes) = self.by_route.write() {
            let lines = routes.entry(route.to_owned()).or_default();
            if !lines
                .iter()
                .any(|m| m.method == method && m.status == status)
            {
                lines.push(line);
            }
        }
        handles
    }
}

/// Whether the request announces a body longer than the limit.
fn announces_too_much(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|length| length > BODY_LIMIT as u64)
}

/// The handler's future inside the frame's timeout and panic guard.
type Guarded<F> = Timeout<CatchUnwind<AssertUnwindSafe<F>>>;

/// What a [`Guarded`] handler ends with: its answer, its panic, or the timeout.
type Ended = Result<Result<Result<Response, Infallible>, Box<dyn Any + Send>>, Elapsed>;

/// Where a request goes after the frame's checks.
enum Start<F> {
    /// To the handler.
    Run(Guarded<F>),
    /// Nowhere: this is the answer (413, or a panic while starting the handler).
    Answer(Response),
}

/// The handler's future, behind the body limit, the timeout and a panic guard; or the
/// answer when the request goes no further (413, or a panic while starting it).
///
/// A plain function around the inner service's own future rather than an `async fn`
/// awaiting it: each `async fn` level stores its arguments (the request among them) beside
/// the future it awaits, and the whole frame future is copied each time it moves (into its
/// box, into the connection's state), on every request (benches/ANALYSIS.md).
fn start<S>(request: Request, mut inner: S, timeout: std::time::Duration) -> Start<S::Future>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    if announces_too_much(&request) {
        return Start::Answer(StatusCode::PAYLOAD_TOO_LARGE.into_response());
    }
    let has_body = request.headers().contains_key(header::CONTENT_LENGTH)
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    // Chunked bodies have no length to check up front: cap what is read (extractors then
    // answer 413).
    let request = if has_body {
        request.map(|body| Body::new(Limited::new(body, BODY_LIMIT)))
    } else {
        request
    };
    // `call` only sets up the handler's future (the guard's and the handler's code runs
    // when it is polled), but a panic there is caught too. The inner service is ready:
    // see `layer::Wrapped::call`.
    match std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(request))) {
        Ok(handler) => Start::Run(tokio::time::timeout(
            timeout,
            AssertUnwindSafe(handler).catch_unwind(),
        )),
        Err(panic) => Start::Answer(errors::panic_response(panic)),
    }
}

/// The handler's answer, or the 500 for its panic, or the 408 for its timeout.
fn outcome(finished: Ended, timeout: std::time::Duration) -> Response {
    match finished {
        Ok(Ok(Ok(response))) => response,
        Ok(Ok(Err(never))) => match never {},
        Ok(Err(panic)) => errors::panic_response(panic),
        Err(_) => {
            tracing::warn!(?timeout, "request timed out");
            StatusCode::REQUEST_TIMEOUT.into_response()
        }
    }
}

/// Headers on every response: no sniffing, no framing, no referrer leaks, no inline
/// script or style (the pages need none), a minimal permissions policy. Names and values
/// are constants, built at compile time (`from_static` at run time parses each name on
/// every request). Public for the bench's ceiling, which sends the same bytes.
pub const SECURITY_HEADERS: [(HeaderName, HeaderValue); SECURITY_HEADER_COUNT] = [
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
        ),
    ),
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    ),
];
/// How many headers the frame may add to an answer: the security headers, HSTS,
/// `no-store`, `noindex`, the request id and `Connection: close`. Answers built with room
/// for them (`denial::see_other`) never grow their header map here.
pub const FRAME_HEADERS: usize = SECURITY_HEADER_COUNT + 5;
pub const SECURITY_HEADER_COUNT: usize = 5;
pub const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
pub const NOINDEX: HeaderValue = HeaderValue::from_static("noindex, nofollow");
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000; includeSubDomains");

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// A random request id: 16 lowercase hex digits, formatted on the stack.
fn request_id() -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = rand::random::<u64>();
    let mut text = [0u8; 16];
    for (i, digit) in text.iter_mut().enumerate() {
        *digit = HEX[((bits >> (60 - 4 * i)) & 0xf) as usize];
    }
    text
}

impl Wrap for Arc<Frame> {
    type Checked = ();

    fn check(&self, _: &mut Request) -> ControlFlow<Response, ()> {
        ControlFlow::Continue(())
    }

    fn wrap<S>(self, request: Request, (): (), inner: S) -> impl Future<Output = Response> + Send
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send,
    {
        frame(self, request, inner)
    }
}

async fn frame<S>(frame: Arc<Frame>, mut request: Request, inner: S) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let started = Instant::now();
    let id_text = request_id();
    let id = crate::logs::request_id_text(&id_text);
    let id_header = HeaderValue::from_bytes(&id_text).unwrap_or(HeaderValue::from_static("-"));
    // The connection's address and axum's matched route are taken out of the request's
    // extensions, not read: they travel in the frame's own extension. So the extension map
    // holds at most three entries (axum's path parameters, the frame's, the guard's) and
    // stays within the room its first insert made, where a fourth grew and rehashed it on
    // every request (benches/ANALYSIS.md).
    let route = request.extensions_mut().remove::<MatchedPath>();
    let peer = request
        .extensions_mut()
        .remove::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    let client = client::resolve(peer, request.headers(), &frame.trusted_proxies);
    let kind = RequestKind::of(request.method(), request.uri(), request.headers());
    let method = method_label(request.method());
    let path = request.uri().path();
    let indexable = path == "/" || path == "/robots.txt" || path.starts_with("/static/");
    let is_static = path.starts_with("/static/");
    // Checked before anything else reads the request: see `host.rs` (DNS rebinding).
    let foreign_host = {
        let requested = host::requested(request.headers(), request.uri(), client.proxied);
        let own =
            host::is_health_check(path) || host::is_own(requested, frame.site.public_url.as_ref());
        (!own).then(|| requested.unwrap_or_default().to_owned())
    };
    let (method_text, path_text) = if tracing::enabled!(tracing::Level::DEBUG) {
        (Some(request.method().clone()), Some(path.to_owned()))
    } else {
        (None, None)
    };
    // Site, audit log, client, kind and id travel together: one extension, one Arc clone.
    request.extensions_mut().insert(RequestFrame {
        frame: Arc::clone(&frame),
        client,
        kind,
        id: id_text,
        route: route.clone(),
    });

    let response = async {
        let response = if let Some(host) = &foreign_host {
            tracing::warn!(
                host = host.as_str(),
                "request for another host refused (DNS rebinding?); if people open the \
                 site at this name, set --public-url"
            );
            StatusCode::MISDIRECTED_REQUEST.into_response()
        } else if origin::is_cross_site(&request) {
            let (parts, _) = request.into_parts();
            // Boxed, as every rare answer on the request path: an `async fn`'s future is as
            // large as the largest one it awaits, and the frame's and guard's futures are
            // moved (copied whole) several times on every request (benches/ANALYSIS.md).
            Box::pin(denial::cross_origin(&parts)).await
        } else {
            match start(request, inner, frame.request_timeout) {
                Start::Run(handler) => outcome(handler.await, frame.request_timeout),
                Start::Answer(response) => response,
            }
        };
        let status = response.status();
        tracing::debug!(
            method = ?method_text,
            path = ?path_text,
            status = status.as_u16(),
            latency_us = started.elapsed().as_micros() as u64,
            "finished processing request"
        );
        response
    };
    // Every line logged while serving the request names it: a task-local id that the log's
    // formatters print (see `logs.rs`), or, where `RUST_LOG` has span directives, a real
    // span (only the id in it; the method and path are on the lines that need them).
    let response = if crate::logs::request_spans() {
        Either::Left(response.instrument(tracing::info_span!("request", request_id = id)))
    } else {
        Either::Right(crate::logs::in_request(id_text, response))
    }
    .await;
    let mut response = errors::finish(response, kind, &frame.site, id);

    let status = response.status();
    let headers = response.headers_mut();
    headers.reserve(FRAME_HEADERS);
    for (name, value) in SECURITY_HEADERS {
        headers.entry(name).or_insert(value);
    }
    if frame.secure {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    if !is_static {
        // Every dynamic answer can depend on who asks: never cache it (the back button
        // after signing out must show nothing private).
        headers.entry(header::CACHE_CONTROL).or_insert(NO_STORE);
    }
    if !indexable {
        noindex(&mut response);
    }
    response.headers_mut().insert(REQUEST_ID, id_header);
    if frame.draining.load(std::sync::atomic::Ordering::Acquire) {
        // Shutting down: no more requests on this connection; the proxy opens a new one,
        // to another instance once this one stops accepting.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }

    frame.metrics.record(
        method,
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        status.as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_sixteen_lowercase_hex_digits_and_differ() {
        let ids: Vec<[u8; 16]> = (0..64).map(|_| request_id()).collect();
        for id in &ids {
            assert!(
                id.iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)),
                "{}",
                String::from_utf8_lossy(id)
            );
            assert!(HeaderValue::from_bytes(id).is_ok());
        }
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn the_security_headers_are_valid_constants() {
        let headers = SECURITY_HEADERS;
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-security-policy",
                "x-content-type-options",
                "x-frame-options",
                "referrer-policy",
                "permissions-policy"
            ]
        );
    }
}
