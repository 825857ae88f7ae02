//! The environment's certificate authority and the certificates it issues: a
//! self-signed P-256 CA per environment (its key kept in the secret store), and
//! short-lived leaves naming one service (`SERVICE.ENV.skiff.mesh`, and the URI
//! `spiffe://skiff/ENV/SERVICE`), good for both ends of a mutual TLS connection.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

use crate::MeshError;

/// How long an environment's CA is good for.
pub const CA_DAYS: u64 = 365;
/// The leaf lifetime when none is given: one hour, renewed after forty minutes.
pub const DEFAULT_TTL_SECS: u64 = 3_600;
/// Clock skew a new leaf tolerates: it is valid from this long before it was issued.
const SKEW_MS: u64 = 60_000;

/// Who a certificate names: a service of an environment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The environment (its CA).
    pub environment: String,
    /// The service.
    pub service: String,
}

impl Identity {
    /// The identity of `service` in `environment`.
    pub fn new(environment: impl Into<String>, service: impl Into<String>) -> Self {
        Identity { environment: environment.into(), service: service.into() }
    }

    /// The DNS name a client checks the server's certificate against.
    pub fn dns_name(&self) -> String {
        format!("{}.{}.skiff.mesh", self.service, self.environment)
    }

    /// The SPIFFE-style URI the certificate also carries.
    pub fn uri(&self) -> String {
        format!("spiffe://skiff/{}/{}", self.environment, self.service)
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uri())
    }
}

/// An issued leaf: its certificate and key (PEM) and when it is good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    /// Its serial number, hex.
    pub serial: String,
    /// When it was issued, ms since the epoch.
    pub issued_at_ms: u64,
    /// When it stops being valid, ms since the epoch.
    pub not_after_ms: u64,
}

impl Issued {
    /// When its holder renews it: two thirds into its life.
    pub fn renew_at_ms(&self) -> u64 {
        self.issued_at_ms + self.not_after_ms.saturating_sub(self.issued_at_ms) * 2 / 3
    }
}

/// An environment's certificate authority.
#[derive(Clone)]
pub struct Ca {
    cert_pem: String,
    key_pem: String,
    not_after_ms: u64,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("not_after_ms", &self.not_after_ms).finish_non_exhaustive()
    }
}

fn at(ms: u64) -> Result<time::OffsetDateTime, MeshError> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| MeshError::Certificate(format!("time {ms} ms: {e}")))
}

fn cert_err(what: &str) -> impl Fn(rcgen::Error) -> MeshError + '_ {
    move |e| MeshError::Certificate(format!("{what}: {e}"))
}

fn ca_name(environment: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "skiff mesh");
    dn.push(DnType::CommonName, format!("skiff mesh CA {environment}"));
    dn
}

impl Ca {
    /// A new CA for `environment`, valid from `now_ms` for [`CA_DAYS`].
    pub fn generate(environment: &str, now_ms: u64) -> Result<Ca, MeshError> {
        let key = KeyPair::generate().map_err(cert_err("a CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = ca_name(environment);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let not_after_ms = now_ms + CA_DAYS * 86_400_000;
        params.not_before = at(now_ms.saturating_sub(SKEW_MS))?;
        params.not_after = at(not_after_ms)?;
        let cert = params.self_signed(&key).map_err(cert_err("the CA certificate"))?;
        Ok(Ca { cert_pem: cert.pem(), key_pem: key.serialize_pem(), not_after_ms: not_after_ms / 1000 * 1000 })
    }

    /// The CA kept as PEM (certificate, key); refuses a pair that does not belong together.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, MeshError> {
        let key = KeyPair::from_pem(key_pem).map_err(cert_err("the CA key"))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| MeshError::Certificate(format!("the CA certificate is not PEM: {e}")))?;
        let cert = pem.parse_x509().map_err(|e| MeshError::Certificate(format!("the CA certificate: {e}")))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(MeshError::Certificate("the CA key does not belong to the CA certificate".to_owned()));
        }
        let not_after_ms = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0) * 1000;
        Ok(Ca { cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned(), not_after_ms })
    }

    /// The certificate, PEM: what every member trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The key, PEM: only the secret store and issuers hold it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// When the CA stops being valid, ms since the epoch.
    pub fn not_after_ms(&self) -> u64 {
        self.not_after_ms
    }

    /// A leaf for `who`, valid from `now_ms` for `ttl_ms` (never past the CA's own end).
    pub fn issue(&self, who: &Identity, now_ms: u64, ttl_ms: u64) -> Result<Issued, MeshError> {
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(cert_err("the CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key).map_err(cert_err("the CA certificate"))?;
        let key = KeyPair::generate().map_err(cert_err("a leaf key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, who.dns_name());
        let ia5 = |s: String| s.try_into().map_err(cert_err("a name"));
        params.subject_alt_names = vec![SanType::DnsName(ia5(who.dns_name())?), SanType::URI(ia5(who.uri())?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let mut serial = [0u8; 16];
        getrandom(&mut serial);
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let not_after_ms = (now_ms + ttl_ms).min(self.not_after_ms);
        params.not_before = at(now_ms.saturating_sub(SKEW_MS))?;
        params.not_after = at(not_after_ms)?;
        let cert = params.signed_by(&key, &issuer).map_err(cert_err("the leaf certificate"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
            issued_at_ms: now_ms,
            // X.509 keeps seconds.
            not_after_ms: not_after_ms / 1000 * 1000,
        })
    }
}

/// Random bytes for serial numbers, from the key generator's own source.
fn getrandom(out: &mut [u8]) {
    // aws-lc's generator does not fail on Linux; a zero serial would still be unique
    // enough for a leaf that lives an hour, and is what a failure leaves.
    let _ = rustls::crypto::aws_lc_rs::default_provider().secure_random.fill(out);
}

/// When the certificate in `pem` stops being valid, ms since the epoch.
pub fn not_after_ms(pem: &str) -> Result<u64, MeshError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| MeshError::Certificate(format!("not a PEM certificate: {e}")))?;
    let cert = pem.parse_x509().map_err(|e| MeshError::Certificate(e.to_string()))?;
    Ok(u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_780_000_000_000;

    #[test]
    fn a_ca_issues_leaves_naming_the_service_that_it_kept_as_pem_can_issue_again() {
        let ca = Ca::generate("prod", NOW).unwrap();
        let again = Ca::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        assert_eq!(again.not_after_ms(), ca.not_after_ms());
        let who = Identity::new("prod", "ledger-api");
        let leaf = again.issue(&who, NOW, 6_000).unwrap();
        assert_eq!(leaf.not_after_ms, NOW + 6_000);
        assert_eq!(not_after_ms(&leaf.cert_pem).unwrap(), NOW + 6_000);
        assert_eq!(leaf.renew_at_ms(), NOW + 4_000);
        assert_eq!(leaf.serial.len(), 32);
        assert_ne!(leaf.serial, again.issue(&who, NOW, 6_000).unwrap().serial);
        let (_, pem) = x509_parser::pem::parse_x509_pem(leaf.cert_pem.as_bytes()).unwrap();
        let text = format!("{:?}", pem.parse_x509().unwrap().subject_alternative_name().unwrap().unwrap().value);
        assert!(
            text.contains("ledger-api.prod.skiff.mesh") && text.contains("spiffe://skiff/prod/ledger-api"),
            "{text}"
        );
    }

    #[test]
    fn a_leaf_never_outlives_its_ca_and_a_mismatched_pair_is_refused() {
        let ca = Ca::generate("prod", NOW).unwrap();
        let late = ca.not_after_ms() - 1_000;
        let leaf = ca.issue(&Identity::new("prod", "a"), late, 3_600_000).unwrap();
        assert_eq!(leaf.not_after_ms, ca.not_after_ms());
        let other = Ca::generate("prod", NOW).unwrap();
        let e = Ca::from_pem(ca.cert_pem(), other.key_pem()).unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
        assert!(Ca::from_pem("garbage", ca.key_pem()).is_err());
    }
}
