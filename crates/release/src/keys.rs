//! Signing keys: ECDSA P-256 key pairs in cosign's formats (an encrypted
//! `SIGSTORE PRIVATE KEY` PEM and an SPKI `PUBLIC KEY` PEM), via the `sigstore`
//! crate. Signatures are base64 ASN.1 DER over the exact bytes signed, as
//! `cosign sign-blob` writes them, so `cosign verify-blob --key` checks them too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};

use crate::ReleaseError;

const SCHEME: SigningScheme = SigningScheme::ECDSA_P256_SHA256_ASN1;

/// A new key pair as PEM text.
#[derive(Clone, Debug)]
pub struct GeneratedKeys {
    /// The private key, encrypted with the password (cosign format).
    pub private_pem: String,
    /// The public key.
    pub public_pem: String,
}

/// Generates an ECDSA P-256 key pair; the private key is encrypted with `password`.
pub fn generate(password: &[u8]) -> Result<GeneratedKeys, ReleaseError> {
    let signer = SCHEME.create_signer().map_err(|e| ReleaseError::Key(e.to_string()))?;
    let pair = signer.to_sigstore_keypair().map_err(|e| ReleaseError::Key(e.to_string()))?;
    Ok(GeneratedKeys {
        private_pem: pair
            .private_key_to_encrypted_pem(password)
            .map_err(|e| ReleaseError::Key(e.to_string()))?
            .to_string(),
        public_pem: pair.public_key_to_pem().map_err(|e| ReleaseError::Key(e.to_string()))?,
    })
}

/// A private key ready to sign.
pub struct Signer {
    pair: SigStoreKeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(ECDSA P-256)")
    }
}

impl Signer {
    /// Opens an encrypted private key.
    pub fn from_encrypted_pem(pem: &[u8], password: &[u8]) -> Result<Self, ReleaseError> {
        let pair = SigStoreKeyPair::from_encrypted_pem(pem, password)
            .map_err(|e| ReleaseError::Key(format!("cannot open the private key ({e}); check SKIFF_KEY_PASSWORD")))?;
        Ok(Signer { pair })
    }

    /// Signs `bytes`; the base64 DER signature.
    pub fn sign(&self, bytes: &[u8]) -> Result<String, ReleaseError> {
        let signer = self.pair.to_sigstore_signer(&SCHEME).map_err(|e| ReleaseError::Key(e.to_string()))?;
        let der = signer.sign(bytes).map_err(|e| ReleaseError::Key(e.to_string()))?;
        Ok(B64.encode(der))
    }

    /// The matching public key.
    pub fn public_pem(&self) -> Result<String, ReleaseError> {
        self.pair.public_key_to_pem().map_err(|e| ReleaseError::Key(e.to_string()))
    }
}

/// A public key ready to verify.
pub struct Verifier {
    key: CosignVerificationKey,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(ECDSA P-256)")
    }
}

impl Verifier {
    /// Reads a PEM public key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, ReleaseError> {
        let key = CosignVerificationKey::from_pem(pem, &SCHEME)
            .map_err(|e| ReleaseError::Key(format!("not an ECDSA P-256 public key: {e}")))?;
        Ok(Verifier { key })
    }

    /// Checks a base64 signature over `bytes`.
    pub fn verify(&self, bytes: &[u8], signature_b64: &[u8]) -> bool {
        self.key.verify_signature(Signature::Base64Encoded(signature_b64), bytes).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_with_a_generated_pair() {
        let keys = generate(b"pw").unwrap();
        assert!(keys.private_pem.contains("ENCRYPTED SIGSTORE PRIVATE KEY"));
        assert!(keys.public_pem.contains("BEGIN PUBLIC KEY"));
        let signer = Signer::from_encrypted_pem(keys.private_pem.as_bytes(), b"pw").unwrap();
        let sig = signer.sign(b"manifest").unwrap();
        let verifier = Verifier::from_pem(keys.public_pem.as_bytes()).unwrap();
        assert!(verifier.verify(b"manifest", sig.as_bytes()));
        assert!(!verifier.verify(b"manifest!", sig.as_bytes()), "changed content fails");
        let other = Verifier::from_pem(generate(b"").unwrap().public_pem.as_bytes()).unwrap();
        assert!(!other.verify(b"manifest", sig.as_bytes()), "another key fails");
        assert!(Signer::from_encrypted_pem(keys.private_pem.as_bytes(), b"wrong").is_err());
    }
}
