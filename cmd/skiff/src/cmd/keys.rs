//! `skiff keys generate`, and where keys live: `$SKIFF_KEY` / `$SKIFF_PUBLIC_KEY`, else
//! `.skiff/keys/cosign.key` and `cosign.pub` under the working directory.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use skiff_sdk::{Code, Envelope, Safety};

use crate::cli::KeysAction;
use crate::{Ctx, Outcome};

pub(crate) fn private_key_path(ctx: &Ctx) -> PathBuf {
    (ctx.env)("SKIFF_KEY").map_or_else(|| ctx.cwd.join(".skiff/keys/cosign.key"), |p| ctx.cwd.join(p))
}

pub(crate) fn public_key_path(ctx: &Ctx) -> PathBuf {
    (ctx.env)("SKIFF_PUBLIC_KEY").map_or_else(|| ctx.cwd.join(".skiff/keys/cosign.pub"), |p| ctx.cwd.join(p))
}

pub(crate) fn password(ctx: &Ctx) -> Vec<u8> {
    (ctx.env)("SKIFF_KEY_PASSWORD").unwrap_or_default().into_bytes()
}

pub(super) fn run(ctx: &Ctx, action: KeysAction) -> Outcome {
    match action {
        KeysAction::Generate { force } => generate(ctx, force),
    }
}

fn generate(ctx: &Ctx, force: bool) -> Outcome {
    let (private, public) = (private_key_path(ctx), public_key_path(ctx));
    if private.exists() && !force {
        return Envelope::failure(
            Code::AlreadyExists,
            format!("a signing key already exists at {}", private.display()),
        )
        .fact("nothing was written; replacing the key means runners must trust the new public key")
        .action("replace", "skiff keys generate --force", true, Safety::Irreversible, 0.3)
        .into();
    }
    match write_pair(ctx, &private, &public) {
        Ok(public_pem) => {
            let protected = !password(ctx).is_empty();
            Envelope::ok(format!("generated a signing key pair in {}", private.parent().map_or_else(String::new, |p| p.display().to_string())))
                .fact(format!("private key: {} (mode 0600)", private.display()))
                .fact(format!("public key: {}", public.display()))
                .fact(if protected { "the private key is encrypted with $SKIFF_KEY_PASSWORD" } else { "the private key has an empty password; set SKIFF_KEY_PASSWORD to protect it" })
                .data(serde_json::json!({"private_key": private.display().to_string(), "public_key": public.display().to_string(), "public_key_pem": public_pem, "password_protected": protected}))
                .action("release", "skiff release create --yes", true, Safety::Reversible, 0.5)
                .into()
        }
        Err(e) => Envelope::failure(Code::IoError, "cannot write the key pair").fact(e).into(),
    }
}

/// Generates and writes a key pair; the public key PEM.
pub(crate) fn write_pair(ctx: &Ctx, private: &std::path::Path, public: &std::path::Path) -> Result<String, String> {
    use std::io::Write;
    let keys = skiff_release::generate(&password(ctx)).map_err(|e| e.to_string())?;
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
    super::init::atomic_write(public, keys.public_pem.as_bytes()).map_err(|e| format!("{}: {e}", public.display()))?;
    Ok(keys.public_pem)
}
