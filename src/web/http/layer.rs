//! The app's own middleware as plain tower services.
//!
//! `axum::middleware::from_fn` is the easy way to write one, but on every request it boxes
//! the rest of the stack into a `Next` (a second boxed service around a clone of the
//! inner one), boxes that service's future again, and moves the request's parts out and
//! back in. The frame and the guard run on every request, so the profile showed those
//! moves and allocations (`memcpy` was 7% of `/api/me`'s instructions, benches/ANALYSIS.md).
//! A [`Wrap`] is the same async function, called with the inner service itself: one box
//! per layer (the async function's future), nothing else. tower has no ready-made layer
//! that takes an async function with the inner service, hence these few lines.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{extract::Request, response::Response};
use tower::{Layer, Service};

/// A middleware: what it does to a request, given the rest of the stack (`inner`).
pub trait Wrap: Clone + Send + Sync + 'static {
    fn wrap<S>(self, request: Request, inner: S) -> impl Future<Output = Response> + Send
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send;
}

/// Calls the rest of the stack (already made ready: see [`Wrapped::call`]).
pub async fn call<S>(mut inner: S, request: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    match inner.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The layer of a [`Wrap`].
#[derive(Clone)]
pub struct WrapLayer<W>(pub W);

impl<W: Wrap, S> Layer<S> for WrapLayer<W> {
    type Service = Wrapped<W, S>;

    fn layer(&self, inner: S) -> Wrapped<W, S> {
        Wrapped {
            wrap: self.0.clone(),
            inner,
        }
    }
}

/// A service behind a [`Wrap`].
#[derive(Clone)]
pub struct Wrapped<W, S> {
    wrap: W,
    inner: S,
}

impl<W, S> Service<Request> for Wrapped<W, S>
where
    W: Wrap,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // tower's rule: the service that was made ready is the one called. It goes with
        // the request; a clone takes its place here.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let wrap = self.wrap.clone();
        Box::pin(async move { Ok(wrap.wrap(request, ready).await) })
    }
}
