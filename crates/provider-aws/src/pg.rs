//! Reaching an RDS instance's engine for the SQL a credential rotation runs: a
//! tokio-postgres connection to the instance's endpoint — or, where the control plane
//! cannot reach the private subnet, through a local port forward
//! (`SKIFF_AWS_DATABASE_TUNNELS`, an SSM or SSH session). TLS is required on any
//! other address, verified against the RDS CA bundle (`SKIFF_AWS_RDS_CA`) for the
//! endpoint's name; through a loopback forward it is used when the server offers it.
//! Passwords are sent as SCRAM verifiers, never as text.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use skiff_pluginapi::{ProviderError, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::AwsProvider;

/// How long opening a connection may take.
const CONNECT: Duration = Duration::from_secs(10);

/// Where and how to open a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The endpoint's name (TLS verifies the certificate against it).
    pub host: String,
    /// Where the TCP connection goes: the endpoint, or a forward to it.
    pub via: Option<SocketAddr>,
    /// The endpoint's port.
    pub port: u16,
    /// The database.
    pub database: String,
}

impl Target {
    fn mode(&self) -> SslMode {
        if self.via.is_some_and(|a| a.ip().is_loopback()) { SslMode::Prefer } else { SslMode::Require }
    }

    /// Where the connection goes, for messages.
    pub(crate) fn shown(&self) -> String {
        match self.via {
            Some(a) => format!("{}:{} (through {a})", self.host, self.port),
            None => format!("{}:{}", self.host, self.port),
        }
    }
}

/// An open connection; its driver task ends when it is dropped.
pub(crate) struct Session {
    pub client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl AwsProvider {
    /// How to reach instance `id` (its endpoint from RDS, a tunnel if one is set).
    pub(crate) fn target(&self, id: &str, host: &str, port: u16, database: &str) -> Target {
        Target {
            host: host.to_owned(),
            via: self.settings.database_tunnels.get(id).copied(),
            port,
            database: database.to_owned(),
        }
    }

    /// Logs in to `t` as `user`.
    pub(crate) async fn login(&self, t: &Target, user: &str, password: &str) -> Result<Session> {
        let mut c = tokio_postgres::Config::new();
        c.host(&t.host).user(user).password(password).dbname(&t.database).ssl_mode(t.mode()).connect_timeout(CONNECT);
        match t.via {
            Some(a) => c.hostaddr(a.ip()).port(a.port()),
            None => c.port(t.port),
        };
        let tls = Tls(Arc::new(self.tls_config()?));
        let (client, connection) = c.connect(tls).await.map_err(|e| connect_error(t, user, &e))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Session { client, driver })
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.settings.rds_ca {
            Some(path) => {
                use rustls::pki_types::pem::PemObject as _;
                let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                    .map_err(|e| ProviderError::new(format!("SKIFF_AWS_RDS_CA {}: {e}", path.display()), false))?;
                for cert in certs {
                    let cert = cert
                        .map_err(|e| ProviderError::new(format!("SKIFF_AWS_RDS_CA {}: {e}", path.display()), false))?;
                    roots.add(cert).map_err(|e| ProviderError::new(format!("SKIFF_AWS_RDS_CA: {e}"), false))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .map_err(|e| ProviderError::new(format!("TLS for the database: {e}"), false))
    }
}

/// A password as PostgreSQL stores it (SCRAM-SHA-256), so the text never crosses the wire.
pub(crate) fn verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

fn connect_error(t: &Target, user: &str, e: &tokio_postgres::Error) -> ProviderError {
    let auth = e.as_db_error().is_some_and(|d| d.code() == &tokio_postgres::error::SqlState::INVALID_PASSWORD);
    let why = match e.as_db_error() {
        Some(d) => d.message().to_owned(),
        None => std::error::Error::source(e).map_or_else(|| e.to_string(), ToString::to_string),
    };
    let hint = if auth {
        String::new()
    } else if why.contains("certificate") {
        "; the endpoint's certificate must chain to a CA in SKIFF_AWS_RDS_CA (Amazon's bundle: https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem)".to_owned()
    } else if t.via.is_none() {
        "; the control plane must reach the instance's private subnet — or forward a local port to it (`aws ssm start-session --document-name AWS-StartPortForwardingSessionToRemoteHost`) and name it in SKIFF_AWS_DATABASE_TUNNELS".to_owned()
    } else {
        "; is the port forward running?".to_owned()
    };
    ProviderError::new(format!("log in to {} as {user}: {why}{hint}", t.shown()), !auth)
}

/// The TLS connector tokio-postgres uses: rustls with the AWS SDK's crypto provider.
#[derive(Clone)]
struct Tls(Arc<rustls::ClientConfig>);

impl<S> MakeTlsConnect<S> for Tls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = Connect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> std::result::Result<Connect, Self::Error> {
        Ok(Connect { config: self.0.clone(), name: ServerName::try_from(domain.to_owned())? })
    }
}

struct Connect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let s = tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream).await?;
            Ok(TlsStream(s))
        })
    }
}

struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for TlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}
