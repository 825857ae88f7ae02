//! Serving, plain or over TLS, through one hyper connection builder that bounds what a
//! client can hold: request headers must arrive within [`Limits::header_read_timeout`]
//! (slow-header clients are dropped) and fit in [`MAX_HEADER_BYTES`]; and a graceful
//! shutdown: when `shutdown` resolves, no new connection is accepted (those already in
//! the kernel's backlog are served), and the ones in flight get [`Limits::drain`] to
//! finish their requests.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use skiff_clock::Clock;

/// The most header bytes hyper buffers for one request (HTTP/1) or accepts (HTTP/2);
/// the app answers requests over [`crate::http::HEADER_BYTES`] with an envelope.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What one connection may take.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// Time in-flight requests get after the shutdown signal.
    pub drain: Duration,
}

fn builder(limits: Limits) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).max_buf_size(MAX_HEADER_BYTES);
    b.http2().timer(TokioTimer::new()).max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX));
    b
}

/// The longest a connection accepted just before the shutdown signal gets to start its
/// request before it is asked to close (a connection still reading its first bytes
/// would otherwise be closed with its request unread).
const SETTLE: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown`, then drains:
/// connections the kernel had already accepted are served too, every connection gets
/// a moment to start its request, and in-flight requests get [`Limits::drain`]. Every
/// wait (the accept back-off, the TLS handshake's deadline, the settle and the drain)
/// is on `clock`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()>,
    limits: Limits,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
    let builder = Arc::new(builder(limits));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let start = |tcp| spawn_connection(tcp, &app, acceptor.as_ref(), &builder, &graceful, limits, &clock);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: keep serving the others.
                Err(_) => {
                    clock.sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        start(tcp);
    }
    // Clients whose connections wait in the backlog sent their requests before the
    // signal: they are answered, not reset.
    while let Poll::Ready(Ok((tcp, _))) = std::future::poll_fn(|cx| Poll::Ready(listener.poll_accept(cx))).await {
        start(tcp);
    }
    drop(listener);
    let settle = SETTLE.min(limits.drain / 4);
    clock.sleep(settle).await;
    let drained = skiff_clock::timeout(clock.as_ref(), limits.drain.saturating_sub(settle), graceful.shutdown()).await;
    if drained.is_err() {
        tracing::warn!(
            drain_ms = limits.drain.as_millis() as u64,
            "requests still in flight after the drain; stopping"
        );
    }
    Ok(())
}

/// Serves one accepted connection on its own task, watched by `graceful`.
fn spawn_connection(
    tcp: tokio::net::TcpStream,
    app: &axum::Router,
    acceptor: Option<&tokio_rustls::TlsAcceptor>,
    builder: &Arc<Builder<TokioExecutor>>,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
    limits: Limits,
    clock: &Arc<dyn Clock>,
) {
    let service = hyper_util::service::TowerToHyperService::new(app.clone());
    match acceptor {
        Some(acceptor) => {
            let acceptor = acceptor.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let clock = clock.clone();
            tokio::spawn(async move {
                // A client that fails the handshake (no certificate, or one the CA did
                // not sign) is dropped before any request.
                let handshake =
                    skiff_clock::timeout(clock.as_ref(), limits.header_read_timeout, acceptor.accept(tcp)).await;
                let Ok(Ok(tls)) = handshake else { return };
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).into_owned();
                let _ = watcher.watch(conn).await;
            });
        }
        None => {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    }
}
