//! Before anything starts: verify the release (signature, then every digest), write
//! the artifact, resolve secrets, and work out the command and environment.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use skiff_ir::HealthIr;
use skiff_release::{ReleaseError, Verifier};

use skiff_state::docs::MemberHealth;

use crate::logs::Log;
use crate::member::Member;
use crate::{Config, exit};

/// Everything needed to start the program.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    /// Program and arguments, placeholders filled in.
    pub(crate) command: Vec<String>,
    /// Environment.
    pub(crate) env: Vec<(String, String)>,
    /// Working directory.
    pub(crate) dir: PathBuf,
    /// HTTP health check, for services.
    pub(crate) health: Option<HealthIr>,
    /// Time the program gets to finish after SIGTERM.
    pub(crate) drain_ms: u64,
    /// The release's schema migration, its programs resolved like the command's.
    pub(crate) migration: Option<skiff_ir::MigrationIr>,
    /// The mesh, for a service with `network.mtls` (its variables taken out of `env`).
    pub(crate) mesh: Option<crate::mesh::Settings>,
}

async fn refuse(member: &Member, log: &Log, code: &str, reason: String) {
    log.runner(&format!("refusing to start: {code}: {reason}"));
    let _ = member
        .set(MemberHealth::Refused, |d| {
            d.phase = "refused".to_owned();
            d.code = Some(code.to_owned());
            d.reason = Some(reason);
        })
        .await;
}

fn verifier(config: &Config) -> Result<Verifier, String> {
    let pem = match (&config.public_key_pem, &config.public_key) {
        (Some(pem), _) => pem.clone().into_bytes(),
        (None, Some(path)) => {
            std::fs::read(path).map_err(|e| format!("cannot read the trusted public key {}: {e}", path.display()))?
        }
        (None, None) => return Err("no trusted public key: set SKIFF_PUBLIC_KEY or SKIFF_PUBLIC_KEY_PEM".to_owned()),
    };
    Verifier::from_pem(&pem).map_err(|e| e.to_string())
}

/// Replaces `${PORT}`, `${SERVICE}`, `${RELEASE}` and `${INSTANCE}`.
fn fill(arg: &str, config: &Config) -> String {
    arg.replace("${PORT}", &config.port.to_string())
        .replace("${SERVICE}", &config.service)
        .replace("${RELEASE}", &config.release)
        .replace("${INSTANCE}", &config.instance)
}

pub(crate) async fn prepare(config: &Config, member: &Member, log: &Log) -> Result<Prepared, u8> {
    log.runner(&format!("verifying release {}/{}", config.service, config.release));
    let verifier = match verifier(config) {
        Ok(v) => v,
        Err(reason) => {
            refuse(member, log, "SIGNATURE_INVALID", reason).await;
            return Err(exit::SIGNATURE_INVALID);
        }
    };
    let verified = match skiff_release::verify(member.ledger(), &verifier, &config.service, &config.release).await {
        Ok(v) => v,
        Err(e) => {
            let (code, exit_code) = match &e {
                ReleaseError::SignatureInvalid { .. } => ("SIGNATURE_INVALID", exit::SIGNATURE_INVALID),
                ReleaseError::DigestMismatch { .. } => ("DIGEST_MISMATCH", exit::DIGEST_MISMATCH),
                _ => (e.code().as_str(), exit::SETUP),
            };
            refuse(member, log, code, e.to_string()).await;
            return Err(exit_code);
        }
    };
    let manifest = &verified.manifest;
    let ir = match member.ledger().get_spec(&manifest.spec_digest).await {
        Ok(ir) => ir,
        Err(e) => {
            refuse(member, log, "DIGEST_MISMATCH", e.to_string()).await;
            return Err(exit::DIGEST_MISMATCH);
        }
    };
    let program = config.dir.join(&manifest.artifact.name);
    if let Err(e) = write_program(&program, &verified.artifact) {
        refuse(member, log, "IO_ERROR", format!("cannot write {}: {e}", program.display())).await;
        return Err(exit::SETUP);
    }
    log.runner(&format!(
        "verified {} ({}), signature and digests good",
        manifest.artifact.name, manifest.artifact.digest
    ));

    let mut env: Vec<(String, String)> = manifest.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut versions = std::collections::BTreeMap::new();
    if !manifest.secrets.is_empty() {
        let resolver = config.secrets.as_deref().and_then(skiff_secrets::resolver);
        for (name, reference) in &manifest.secrets {
            let reference = reference.to_string();
            let from = config.secret_map.iter().find(|(a, _)| *a == reference).map_or(&reference, |(_, b)| b);
            let value = match &resolver {
                Some(r) => r.resolve(from).map_err(|e| e.to_string()),
                None => Err(format!("no secret store configured for {reference} (set SKIFF_SECRETS)")),
            };
            match value {
                Ok(v) => {
                    versions.insert(reference.clone(), skiff_secrets::version(&v));
                    env.push((name.clone(), v));
                }
                Err(reason) => {
                    log.runner(&format!("cannot resolve secret for {name}: {reason}"));
                    let _ = member
                        .set(MemberHealth::Unhealthy, |d| {
                            d.phase = "refused".to_owned();
                            d.code = Some("NOT_FOUND".to_owned());
                            d.reason = Some(format!("secret for {name}: {reason}"));
                        })
                        .await;
                    return Err(exit::SECRET_MISSING);
                }
            }
        }
    }
    member.note(|d| d.secrets = versions).await;
    let mesh = match crate::mesh::take(&config.service, &mut env) {
        Ok(m) => m,
        Err(reason) => {
            refuse(member, log, "CONFIG_INVALID", format!("the mesh: {reason}")).await;
            return Err(exit::SETUP);
        }
    };
    env.extend([
        ("PORT".to_owned(), config.port.to_string()),
        ("HOST".to_owned(), config.host.clone()),
        ("SKIFF_SERVICE".to_owned(), config.service.clone()),
        ("SKIFF_RELEASE".to_owned(), config.release.clone()),
        ("SKIFF_INSTANCE".to_owned(), config.instance.clone()),
    ]);
    let stem = std::path::Path::new(ir.artifact.path.as_deref().unwrap_or_default())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let resolve = |args: &[String]| {
        let mut command: Vec<String> = args.iter().map(|a| fill(a, config)).collect();
        if command.first().is_some_and(|c| *c == manifest.artifact.name || *c == stem) {
            command[0] = program.display().to_string();
        }
        command
    };
    let migration = ir.database.as_ref().and_then(|d| d.migrations.clone()).map(|mut m| {
        m.command = resolve(&m.command);
        m.down = m.down.as_deref().map(resolve);
        m
    });
    Ok(Prepared {
        command: resolve(&ir.run.command),
        migration,
        env,
        mesh,
        dir: config.dir.clone(),
        health: ir.network.as_ref().map(|n| n.health.clone()),
        drain_ms: ir.rollout.drain_timeout.as_millis(),
    })
}

/// Writes the verified program atomically and makes it executable.
fn write_program(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    let mut perms = f.metadata()?.permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(&tmp, perms)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_filled_from_the_instance() {
        let env = |k: &str| {
            let v = match k {
                "SKIFF_STATE" => "memory://",
                "SKIFF_SERVICE" => "web",
                "SKIFF_RELEASE" => "2026.11.23.4",
                "SKIFF_INSTANCE" => "i-1",
                "PORT" => "18080",
                "SKIFF_RUNNER_DIR" => "/tmp",
                _ => return None,
            };
            Some(v.to_owned())
        };
        let config = crate::Config::from_env(env).unwrap();
        let filled = super::fill("--listen=127.0.0.1:${PORT} ${SERVICE}/${RELEASE}/${INSTANCE} $HOME", &config);
        assert_eq!(filled, "--listen=127.0.0.1:18080 web/2026.11.23.4/i-1 $HOME");
    }
}
