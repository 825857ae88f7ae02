//! The runner's two proxies. Inbound: the instance's mesh port, where a caller must
//! present a certificate of the environment's CA; the bytes then go on to the program
//! in the clear over loopback. Outbound: a loopback port per upstream service the
//! program calls in the clear; each connection goes on to one of that service's mesh
//! ports over mutual TLS, trying the next member when one does not answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use skiff_clock::{Clock, SystemClock};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::Identity;

/// How long a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// How long a connection to a member may take.
const CONNECT: Duration = Duration::from_secs(2);
/// The pause after a failed accept.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long an outbound connection waits for its upstream's first member.
const FIRST_MEMBER: Duration = Duration::from_secs(5);

/// Serves the mesh port on `listener`: mutual TLS with `tls`, then on to `program`.
/// Runs until the task is dropped.
pub async fn inbound(listener: TcpListener, program: SocketAddr, tls: Arc<ServerConfig>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(&e).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let clock = SystemClock;
            let mut tls = match skiff_clock::timeout(&clock, HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "mesh: refused a caller");
                    return;
                }
                Err(_) => return,
            };
            let Ok(mut plain) = TcpStream::connect(program).await else { return };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        });
    }
}

/// Serves the loopback port of `upstream` on `listener`: each connection goes to a
/// member from `members` (round robin, the next one when a member does not answer)
/// over mutual TLS with `tls`, checking the member's certificate names `upstream`.
pub async fn outbound(
    listener: TcpListener,
    upstream: Identity,
    members: watch::Receiver<Vec<SocketAddr>>,
    tls: Arc<ClientConfig>,
) {
    let connector = TlsConnector::from(tls);
    let next = Arc::new(AtomicUsize::new(0));
    let Ok(name) = ServerName::try_from(upstream.dns_name()) else {
        tracing::warn!(%upstream, "mesh: the upstream's name is no DNS name");
        return;
    };
    loop {
        let mut plain = match listener.accept().await {
            Ok((plain, _)) => plain,
            Err(e) => {
                accept_failed(&e).await;
                continue;
            }
        };
        let (connector, name, next, mut members) = (connector.clone(), name.clone(), next.clone(), members.clone());
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let clock = SystemClock;
            let _ = skiff_clock::timeout(&clock, FIRST_MEMBER, members.wait_for(|m| !m.is_empty())).await;
            let list = members.borrow().clone();
            let start = next.fetch_add(1, Ordering::Relaxed);
            for i in 0..list.len() {
                let addr = list[(start + i) % list.len()];
                match connect(&clock, &connector, name.clone(), addr).await {
                    Ok(mut tls) => {
                        let _ = tokio::io::copy_bidirectional(&mut plain, &mut tls).await;
                        return;
                    }
                    Err(e) => tracing::info!(%upstream, %addr, error = %e, "mesh: a member did not answer"),
                }
            }
            tracing::warn!(%upstream, members = list.len(), "mesh: no member answered");
        });
    }
}

/// An accept that failed (out of file descriptors, most often): said, and a pause
/// before the next, so the loop does not spin.
async fn accept_failed(e: &std::io::Error) {
    tracing::warn!(error = %e, "mesh: cannot accept a connection");
    SystemClock.sleep(ACCEPT_PAUSE).await;
}

async fn connect(
    clock: &dyn Clock,
    connector: &TlsConnector,
    name: ServerName<'static>,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let timed_out = |_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
    let tcp = skiff_clock::timeout(clock, CONNECT, TcpStream::connect(addr)).await.map_err(timed_out)??;
    skiff_clock::timeout(clock, HANDSHAKE, connector.connect(name, tcp)).await.map_err(timed_out)?
}
