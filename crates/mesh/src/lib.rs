//! Mutual TLS between services, the runtime half of the mTLS plugin. An environment
//! has one CA ([`Ca`]; its key lives encrypted in the secret store); every instance of
//! a service with `network.mtls` gets a short-lived certificate naming its service
//! ([`Ca::issue`]) when it starts and a new one two thirds into its life, swapped in
//! place ([`Credentials`]). The runner serves the instance's mesh port
//! ([`proxy::inbound`]: a caller without a certificate of the CA is refused) and a
//! loopback port per upstream the program calls ([`proxy::outbound`]).
#![warn(missing_docs)]

mod ca;
pub mod proxy;
mod tls;

pub use ca::{CA_DAYS, Ca, DEFAULT_TTL_SECS, Identity, Issued, not_after_ms};
pub use tls::{Credentials, client_config, server_config};

/// Why a mesh operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// A certificate or key could not be made or read.
    #[error("mesh certificate: {0}")]
    Certificate(String),
    /// A TLS configuration could not be built.
    #[error("mesh TLS: {0}")]
    Tls(String),
}

/// The secret references of `environment`'s CA: its certificate and its key.
pub fn ca_secrets(environment: &str) -> (String, String) {
    (format!("secret://skiff-mesh-{environment}/ca-cert"), format!("secret://skiff-mesh-{environment}/ca-key"))
}

/// The variable through which a program finds an upstream's loopback port: the
/// prefix `SKIFF_UPSTREAM_` and the service's name upper-cased, dashes as underscores;
/// it holds `http://127.0.0.1:PORT`.
pub fn upstream_var(service: &str) -> String {
    format!("SKIFF_UPSTREAM_{}", service.to_ascii_uppercase().replace('-', "_"))
}
