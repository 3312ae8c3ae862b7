//! The HTTP accept loop.
//!
//! Hand-written on hyper-util instead of `axum::serve` because `axum::serve` sets no header
//! read timeout and no connection limit: a slow-loris client (headers dribbled a byte at a
//! time) could hold a connection forever, and enough of them exhaust file descriptors.
//! Here every connection must deliver its request headers within `header_timeout`, at most
//! `max_connections` are served at once (the rest wait in the kernel's accept queue), and
//! shutdown stops accepting first, then lets in-flight requests finish (up to a deadline).

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::ConnectInfo};
use futures_util::future::join_all;
use hyper::body::Incoming;
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown, service::TowerToHyperService};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    task::{AbortHandle, JoinHandle},
};
use tower::ServiceExt;

mod header_clock;
use header_clock::HeaderClock;

#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// After the shutdown signal, how long to keep accepting and serving while telling
    /// everyone the instance is going (`/readyz` 503, `Connection: close`), so load
    /// balancers move on before connections are refused.
    pub drain_grace: Duration,
    /// Then, how long in-flight requests get to finish.
    pub drain_timeout: Duration,
    /// Set when the grace period starts; read by `/readyz` and the request frame.
    pub draining: Arc<AtomicBool>,
}

/// How the instance was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM (systemd, orchestrators, a rolling restart): the grace, then the drain.
    Graceful,
    /// Ctrl-C in a terminal: no load balancer is waiting to move on, so no grace; requests
    /// in flight still finish.
    Interactive,
}

fn start_draining(
    limits: &ServerLimits,
    stop: Stop,
    grace_ends: &mut Option<tokio::time::Instant>,
) {
    let grace = match stop {
        Stop::Graceful => limits.drain_grace,
        Stop::Interactive => Duration::ZERO,
    };
    tracing::info!(?grace, "shutting down: not ready any more, still serving");
    limits.draining.store(true, Ordering::Release);
    *grace_ends = Some(tokio::time::Instant::now() + grace);
}

/// Serves `router` on `listener` until `shutdown` resolves, keeps serving for the grace
/// period while saying it is going, then stops accepting and drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = Stop> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // The header-read timeout runs on a coarse clock of our own (see `header_clock`), one
    // timer per connection: `serve_on` below.
    let clock = HeaderClock::start();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let service_for = |peer: SocketAddr| {
        TowerToHyperService::new(router.clone().map_request(
            move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ))
    };
    let mut shutdown = std::pin::pin!(shutdown);
    // Set once the shutdown signal arrives: accept until then, then stop.
    let mut grace_ends: Option<tokio::time::Instant> = None;
    // Connections accepted during the grace period serve one request each (every answer
    // then says `Connection: close` anyway) and are not handed to `graceful`: its shutdown
    // closes a connection whose first request has not been read yet, and one accepted a
    // moment before the grace ended could lose a POST that a proxy will not retry (seen
    // once in `deploy::rolling` on a busy machine).
    let mut last_calls = Vec::new();
    let mut one_request = http.clone();
    one_request.keep_alive(false);
    // Serves one accepted connection with `builder`'s settings and a timer of its own (its
    // slot on the clock).
    let serve_on =
        |builder: &hyper::server::conn::http1::Builder, stream: TcpStream, peer: SocketAddr| {
            let mut builder = builder.clone();
            builder.timer(clock.connection());
            builder.serve_connection(TokioIo::new(stream), service_for(peer))
        };
    loop {
        let deadline = grace_ends;
        let waiting_for_signal = grace_ends.is_none();
        let grace = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let mut grace = std::pin::pin!(grace);
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            stop = &mut shutdown, if waiting_for_signal => {
                start_draining(&limits, stop, &mut grace_ends);
                continue;
            }
            () = &mut grace => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            stop = &mut shutdown, if waiting_for_signal => {
                start_draining(&limits, stop, &mut grace_ends);
                continue;
            }
            () = &mut grace => break,
        };
        let _ = stream.set_nodelay(true);
        if grace_ends.is_some() {
            let connection = serve_on(&one_request, stream, peer);
            last_calls.push(spawn_connection(connection, peer, Some(slot)));
            continue;
        }
        let connection = graceful.watch(serve_on(&http, stream, peer));
        spawn_connection(connection, peer, Some(slot));
    }

    // Stop accepting before draining, so a load balancer sends new connections elsewhere.
    // Connections the kernel has already completed (queued for `accept`) would be reset
    // when the listener closes, after their clients may have sent a request a proxy will
    // not retry (a POST): serve one request on each. They are not handed to `graceful`,
    // whose shutdown would close them before their first request is read. The queue is
    // bounded by the listen backlog, so they may exceed `max_connections` briefly.
    for (stream, peer) in take_queued(listener) {
        let _ = stream.set_nodelay(true);
        let connection = serve_on(&one_request, stream, peer);
        last_calls.push(spawn_connection(connection, peer, None));
    }
    tracing::info!("draining in-flight requests");
    let aborts: Vec<_> = last_calls.iter().map(|task| task.abort_handle()).collect();
    let drained = async {
        tokio::join!(graceful.shutdown(), join_all(last_calls));
    };
    if tokio::time::timeout(limits.drain_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still running after {:?}; closing their connections",
            limits.drain_timeout
        );
        aborts.iter().for_each(AbortHandle::abort);
    }
    Ok(())
}

/// Serves one connection on its own task, holding its `max_connections` slot (if it has
/// one) until the connection ends.
fn spawn_connection<C, E>(
    connection: C,
    peer: SocketAddr,
    slot: Option<OwnedSemaphorePermit>,
) -> JoinHandle<()>
where
    C: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, %peer, "connection ended with an error");
        }
        drop(slot);
    })
}

/// The connections waiting in `listener`'s accept queue, without waiting for more. A plain
/// non-blocking `accept` on the std socket, because tokio's `accept` only tries once its
/// reactor has seen a readiness event, which may not have happened yet.
fn take_queued(listener: TcpListener) -> Vec<(TcpStream, SocketAddr)> {
    let mut queued = Vec::new();
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(err) => {
            tracing::warn!(error = %err, "could not take queued connections");
            return queued;
        }
    };
    loop {
        match listener.accept() {
            Ok((stream, peer)) => match stream
                .set_nonblocking(true)
                .and_then(|()| TcpStream::from_std(stream))
            {
                Ok(stream) => queued.push((stream, peer)),
                Err(err) => tracing::warn!(error = %err, %peer, "queued connection lost"),
            },
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return queued,
            Err(err) => {
                tracing::warn!(error = %err, "accept of queued connections failed");
                return queued;
            }
        }
    }
}
