//! Signing keys: `skiff keys generate`, and where keys live (`$SKIFF_KEY` /
//! `$SKIFF_PUBLIC_KEY`, else `.skiff/keys/cosign.key` and `cosign.pub` under the
//! working directory).

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use skiff_release::{Signer, Verifier};
use skiff_sdk::{Answer, Code, Envelope, Safety};

use crate::context::Context;
use crate::error::{Error, Result};

/// `skiff keys generate [--force]`.
pub(crate) fn generate(ctx: &Context, force: bool) -> Result<Answer> {
    let (private, public) = (ctx.private_key_path(), ctx.public_key_path());
    if private.exists() && !force {
        return Err(Envelope::failure(
            Code::AlreadyExists,
            format!("a signing key already exists at {}", private.display()),
        )
        .fact("nothing was written; replacing the key means runners must trust the new public key")
        .action("replace", "skiff keys generate --force", true, Safety::Irreversible, 0.3)
        .into());
    }
    let public_pem = write_pair(ctx, &private, &public)
        .map_err(|e| Error::from(Envelope::failure(Code::IoError, "cannot write the key pair").fact(e)))?;
    let protected = !ctx.key_password().is_empty();
    let dir = private.parent().map_or_else(String::new, |p| p.display().to_string());
    Ok(Envelope::ok(format!("generated a signing key pair in {dir}"))
        .fact(format!("private key: {} (mode 0600)", private.display()))
        .fact(format!("public key: {}", public.display()))
        .fact(if protected {
            "the private key is encrypted with $SKIFF_KEY_PASSWORD"
        } else {
            "the private key has an empty password; set SKIFF_KEY_PASSWORD to protect it"
        })
        .data(
            serde_json::json!({"private_key": private.display().to_string(), "public_key": public.display().to_string(),
            "public_key_pem": public_pem, "password_protected": protected}),
        )
        .action("release", "skiff release create --yes", true, Safety::Reversible, 0.5)
        .into())
}

/// Generates and writes a key pair; the public key PEM.
pub(crate) fn write_pair(ctx: &Context, private: &Path, public: &Path) -> Result<String, String> {
    use std::io::Write;
    let keys = skiff_release::generate(&ctx.key_password()).map_err(|e| e.to_string())?;
    if let Some(dir) = private.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(private)
        .map_err(|e| format!("{}: {e}", private.display()))?;
    f.write_all(keys.private_pem.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", private.display()))?;
    crate::init::atomic_write(public, keys.public_pem.as_bytes()).map_err(|e| format!("{}: {e}", public.display()))?;
    Ok(keys.public_pem)
}

/// Opens the private key, or answers how to get one.
pub(crate) fn signer(ctx: &Context) -> Result<Signer> {
    let path = ctx.private_key_path();
    let pem = std::fs::read(&path).map_err(|_| {
        Error::from(
            Envelope::failure(Code::SignatureInvalid, format!("no signing key at {}", path.display()))
                .fact("releases must be signed; generate a key pair first")
                .action("keys", "skiff keys generate", true, Safety::Reversible, 0.9),
        )
    })?;
    Signer::from_encrypted_pem(&pem, &ctx.key_password()).map_err(|e| crate::error::release(&e))
}

/// The signer, creating a key pair on first use of the embedded default.
pub(crate) fn signer_or_generate(ctx: &Context, embedded: bool, notes: &mut Vec<String>) -> Result<Signer> {
    let private = ctx.private_key_path();
    if embedded && !private.exists() {
        write_pair(ctx, &private, &ctx.public_key_path())
            .map_err(|e| Error::from(Envelope::failure(Code::IoError, "cannot write a signing key").fact(e)))?;
        notes.push(format!("generated a signing key pair in {}", private.parent().unwrap_or(Path::new(".")).display()));
    }
    signer(ctx)
}

/// The trusted public key's PEM.
pub(crate) fn public_key(ctx: &Context) -> Result<String> {
    let path = ctx.public_key_path();
    std::fs::read_to_string(&path).map_err(|e| {
        Error::from(
            Envelope::failure(Code::SignatureInvalid, format!("cannot read the public key {}", path.display()))
                .fact(e.to_string())
                .action("keys", "skiff keys generate", true, Safety::Reversible, 0.6),
        )
    })
}

/// The verifier for a public key file (default: the context's trusted key).
pub(crate) fn verifier(ctx: &Context, path: Option<&Path>) -> Result<Verifier> {
    let path = path.map_or_else(|| ctx.public_key_path(), |p| ctx.cwd.join(p));
    let pem = std::fs::read(&path).map_err(|e| {
        Error::from(
            Envelope::failure(Code::SignatureInvalid, format!("cannot read the trusted public key {}", path.display()))
                .fact(e.to_string()),
        )
    })?;
    Verifier::from_pem(&pem).map_err(|e| crate::error::release(&e))
}
