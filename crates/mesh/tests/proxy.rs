//! The proxies over real loopback sockets: a call through the outbound port reaches
//! the program behind another instance's mesh port; a caller without a certificate,
//! or with one of another environment's CA, is refused; certificates renewed on both
//! ends while calls keep coming fail none of them.

use std::net::SocketAddr;
use std::sync::Arc;

use skiff_mesh::{Ca, Credentials, Identity, proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TTL: u64 = 3_600_000;

/// Real time: the TLS stacks check validity against the system clock.
fn now() -> u64 {
    use skiff_clock::Clock as _;
    skiff_clock::SystemClock.now_ms()
}

/// A program answering every connection with one HTTP 200 naming itself.
async fn program() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nledger").await;
            });
        }
    });
    addr
}

async fn get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

struct Mesh {
    outbound: SocketAddr,
    inbound: SocketAddr,
    server: Credentials,
    client: Credentials,
    ca: Ca,
}

async fn mesh() -> Mesh {
    let ca = Ca::generate("test", now()).unwrap();
    let api = Identity::new("test", "ledger-api");
    let web = Identity::new("test", "ledger-web");
    let server = Credentials::new(&ca.issue(&api, now(), TTL).unwrap()).unwrap();
    let client = Credentials::new(&ca.issue(&web, now(), TTL).unwrap()).unwrap();
    let inbound_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let inbound = inbound_l.local_addr().unwrap();
    tokio::spawn(proxy::inbound(inbound_l, program().await, skiff_mesh::server_config(&ca, &server).unwrap()));
    let outbound_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outbound = outbound_l.local_addr().unwrap();
    // A member that is gone comes first: the proxy goes on to the next.
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let (tx, members) = tokio::sync::watch::channel(vec![gone, inbound]);
    let tls = skiff_mesh::client_config(&ca, &client).unwrap();
    tokio::spawn(async move {
        let _members = tx;
        proxy::outbound(outbound_l, api, members, tls).await;
    });
    Mesh { outbound, inbound, server, client, ca }
}

#[tokio::test]
async fn a_call_through_the_outbound_port_reaches_the_program_over_mutual_tls() {
    let m = mesh().await;
    let answer = get(m.outbound).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ledger"), "{answer}");
}

/// A TLS client of the mesh port with `creds` (none: no client certificate).
async fn call_directly(m: &Mesh, ca: &Ca, creds: Option<Credentials>) -> std::io::Result<String> {
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject as _;
        r.add(rustls_pki_types::CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap()).unwrap();
        r
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match creds {
        Some(c) => builder.with_client_cert_resolver(Arc::new(c)),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(m.inbound).await?;
    let name = rustls_pki_types::ServerName::try_from("ledger-api.test.skiff.mesh").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
    tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await?;
    let mut out = String::new();
    tls.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test]
async fn a_caller_without_a_certificate_of_the_ca_is_refused() {
    let m = mesh().await;
    // The server's chain verifies; the caller presents nothing: refused.
    let e = call_directly(&m, &m.ca, None).await.unwrap_err();
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    // A certificate of another environment's CA: refused too.
    let other = Ca::generate("other", now()).unwrap();
    let stranger = Credentials::new(&other.issue(&Identity::new("test", "ledger-web"), now(), TTL).unwrap()).unwrap();
    assert!(call_directly(&m, &m.ca, Some(stranger)).await.is_err());
    // The same call with the environment's certificate goes through.
    let answer = call_directly(&m, &m.ca, Some(m.client.clone())).await.unwrap();
    assert!(answer.ends_with("ledger"), "{answer}");
}

#[tokio::test]
async fn certificates_renewed_on_both_ends_during_calls_fail_none_of_them() {
    let m = mesh().await;
    let first = (m.server.serial(), m.client.serial());
    let calls = tokio::spawn(async move {
        let mut failed = 0;
        for _ in 0..300 {
            match get(m.outbound).await {
                Ok(a) if a.ends_with("ledger") => {}
                _ => failed += 1,
            }
        }
        failed
    });
    for i in 1..=10u64 {
        let at = now() + i * 1_000;
        m.server.renew(&m.ca.issue(&Identity::new("test", "ledger-api"), at, TTL).unwrap()).unwrap();
        m.client.renew(&m.ca.issue(&Identity::new("test", "ledger-web"), at, TTL).unwrap()).unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(calls.await.unwrap(), 0, "calls failed while certificates were renewed");
    assert_ne!(m.server.serial(), first.0);
    assert_ne!(m.client.serial(), first.1);
}
