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
//!
//! A [`Wrap`] may also answer before its future exists ([`Wrap::check`]): the guard refuses
//! a request without a session cookie that way, so a bot's request for a protected page
//! allocates no future for it (the guard's is 2 KB) and runs no state machine.

use std::{
    convert::Infallible,
    future::{Future, Ready, ready},
    ops::ControlFlow,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{extract::Request, response::Response};
use futures_util::future::Either;
use tower::{Layer, Service};

/// A middleware: what it does to a request, given the rest of the stack (`inner`).
pub trait Wrap: Clone + Send + Sync + 'static {
    /// What [`Wrap::check`] learnt of the request, handed on to [`Wrap::wrap`].
    type Checked: Send + 'static;

    /// The answer, where it is known before anything is awaited (`Break`, the request
    /// taken); otherwise the request goes on to [`Wrap::wrap`] with what was learnt. By
    /// reference, so that neither the request nor the wrap is moved or cloned for it.
    fn check(&self, request: &mut Request) -> ControlFlow<Response, Self::Checked>;

    fn wrap<S>(
        self,
        request: Request,
        checked: Self::Checked,
        inner: S,
    ) -> impl Future<Output = Response> + Send
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
    /// An answer given at once ([`Wrap::check`]) is not boxed.
    type Future = Either<
        Ready<Result<Response, Infallible>>,
        Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let checked = match self.wrap.check(&mut request) {
            ControlFlow::Break(response) => return Either::Left(ready(Ok(response))),
            ControlFlow::Continue(checked) => checked,
        };
        // tower's rule: the service that was made ready is the one called. It goes with
        // the request; a clone takes its place here.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let wrap = self.wrap.clone();
        // The wrap's future is made inside the box, not moved into it: it is kilobytes.
        Either::Right(Box::pin(async move {
            Ok(wrap.wrap(request, checked, inner).await)
        }))
    }
}
