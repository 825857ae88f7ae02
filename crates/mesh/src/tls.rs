//! TLS configurations that present the instance's current certificate and trust only
//! the environment's CA. The certificate sits behind a lock both ends read at every
//! handshake: renewing it swaps the lock's content, so connections already open go
//! on with the old one and every new handshake gets the new one — no listener
//! restarts, no failed calls.

use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Ca, Issued, MeshError};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_err(what: &str) -> impl Fn(rustls::Error) -> MeshError + '_ {
    move |e| MeshError::Tls(format!("{what}: {e}"))
}

/// The instance's current certificate, shared by its listeners and renewed in place.
#[derive(Clone, Debug)]
pub struct Credentials {
    current: Arc<RwLock<(Arc<CertifiedKey>, String)>>,
}

fn certified(issued: &Issued) -> Result<Arc<CertifiedKey>, MeshError> {
    let cert = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
        .map_err(|e| MeshError::Tls(format!("the certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
        .map_err(|e| MeshError::Tls(format!("the key: {e}")))?;
    let signing = provider().key_provider.load_private_key(key).map_err(tls_err("the key"))?;
    Ok(Arc::new(CertifiedKey::new(vec![cert], signing)))
}

impl Credentials {
    /// Credentials holding `issued`.
    pub fn new(issued: &Issued) -> Result<Self, MeshError> {
        Ok(Credentials { current: Arc::new(RwLock::new((certified(issued)?, issued.serial.clone()))) })
    }

    /// Puts `issued` in place for every handshake from now on.
    pub fn renew(&self, issued: &Issued) -> Result<(), MeshError> {
        let next = certified(issued)?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = (next, issued.serial.clone());
        Ok(())
    }

    /// The serial of the certificate in use.
    pub fn serial(&self) -> String {
        self.read().1
    }

    fn read(&self) -> (Arc<CertifiedKey>, String) {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl ResolvesServerCert for Credentials {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.read().0)
    }
}

impl rustls::client::ResolvesClientCert for Credentials {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.read().0)
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn roots(ca: &Ca) -> Result<RootCertStore, MeshError> {
    let der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes())
        .map_err(|e| MeshError::Tls(format!("the CA certificate: {e}")))?;
    let mut roots = RootCertStore::empty();
    roots.add(der).map_err(tls_err("the CA certificate"))?;
    Ok(roots)
}

/// The inbound end: presents `creds`, and requires a client certificate the CA issued.
pub fn server_config(ca: &Ca, creds: &Credentials) -> Result<Arc<ServerConfig>, MeshError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
        .build()
        .map_err(|e| MeshError::Tls(format!("the client verifier: {e}")))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err("the server"))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(creds.clone()));
    Ok(Arc::new(config))
}

/// The outbound end: presents `creds`, and trusts only servers the CA issued.
pub fn client_config(ca: &Ca, creds: &Credentials) -> Result<Arc<ClientConfig>, MeshError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err("the client"))?
        .with_root_certificates(roots(ca)?)
        .with_client_cert_resolver(Arc::new(creds.clone()));
    Ok(Arc::new(config))
}
