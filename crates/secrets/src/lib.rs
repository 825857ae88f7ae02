//! Secrets by reference (`secret://name/key`). Skiff's ledger holds references only;
//! values live in a secret store and are resolved on the instance. This crate has the
//! local store: one file of values encrypted with XChaCha20-Poly1305 (the reference is
//! the associated data) under a master key kept beside it with mode 0600, written
//! atomically under a lock. It protects against accidental disclosure (a copied state
//! directory, a log), not against someone who can read the key file.
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use skiff_spec::values::SecretRef;

pub mod keys;
pub mod logins;

/// Why a secret operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The reference is malformed.
    #[error("`{0}` is not a secret reference; write secret://NAME/KEY")]
    BadReference(String),
    /// Nothing is stored under the reference.
    #[error("no value for {0}; store one with `skiff secrets set {0}`")]
    Missing(String),
    /// The store or key cannot be read or written.
    #[error("secret store {path}: {message}")]
    Store {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// A value does not decrypt (wrong key, or tampered).
    #[error("value of {0} does not decrypt: the store was changed or the master key replaced")]
    Tampered(String),
}

/// The result of a secret operation.
pub type Result<T, E = SecretError> = std::result::Result<T, E>;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    kind: String,
    schema_version: u32,
    entries: BTreeMap<String, Sealed>,
    /// Key versions and aliases; empty for a store that never rotated its key.
    #[serde(default, skip_serializing_if = "keys::KeyRing::is_empty")]
    keyring: keys::KeyRing,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    nonce: String,
    ciphertext: String,
    /// The key version it is sealed with; none for the first (`master.key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

/// The version of a secret value: `sv-` and the first twelve hex digits of its SHA-256.
/// Consumers report it in their heartbeats and rotations compare it, so nobody needs
/// the value itself to tell whether an instance has picked a new one up (48 bits of a
/// hash of a random password reveal nothing usable).
pub fn version(value: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(value.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("sv-{hex}")
}

/// Resolves references to values; the runner uses one on the instance.
pub trait Resolver: Send + Sync {
    /// The value of `reference`.
    fn resolve(&self, reference: &str) -> Result<String>;
}

/// Secrets an instance fetched at boot from the cloud's secret manager: one JSON
/// object per secret name (`DIR/NAME.json`, `{"KEY": "value"}`), readable by the
/// runner only. The AWS launch template's user data writes them.
#[derive(Clone, Debug)]
pub struct FetchedSecrets {
    dir: PathBuf,
}

impl FetchedSecrets {
    /// The directory holding `NAME.json` files.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FetchedSecrets { dir: dir.into() }
    }
}

impl Resolver for FetchedSecrets {
    fn resolve(&self, reference: &str) -> Result<String> {
        let r = parse(reference)?;
        let path = self.dir.join(format!("{}.json", r.name()));
        let store = |message: String| SecretError::Store { path: path.display().to_string(), message };
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SecretError::Missing(reference.to_owned()));
            }
            Err(e) => return Err(store(e.to_string())),
        };
        let map: BTreeMap<String, String> =
            serde_json::from_str(&text).map_err(|e| store(format!("not a JSON object of strings: {e}")))?;
        // `secret://NAME` without a key is the key `value`, as the providers store it.
        map.get(r.key().unwrap_or("value")).cloned().ok_or_else(|| SecretError::Missing(reference.to_owned()))
    }
}

/// The resolver a runner's `--secrets` setting names: `local:DIR` (the local
/// provider's encrypted store) or `dir:DIR` ([`FetchedSecrets`]).
pub fn resolver(setting: &str) -> Option<Box<dyn Resolver>> {
    if let Some(dir) = setting.strip_prefix("local:") {
        return Some(Box::new(LocalSecrets::new(dir)));
    }
    setting.strip_prefix("dir:").map(|dir| Box::new(FetchedSecrets::new(dir)) as Box<dyn Resolver>)
}

/// The local encrypted store in a directory.
#[derive(Clone, Debug)]
pub struct LocalSecrets {
    dir: PathBuf,
}

fn parse(reference: &str) -> Result<SecretRef> {
    reference.parse::<SecretRef>().map_err(|_| SecretError::BadReference(reference.to_owned()))
}

impl LocalSecrets {
    /// The store in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalSecrets { dir: dir.into() }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn err(&self, file: &Path, e: impl std::fmt::Display) -> SecretError {
        SecretError::Store { path: file.display().to_string(), message: e.to_string() }
    }

    fn ensure_dir(&self) -> Result<()> {
        fs::create_dir_all(&self.dir).map_err(|e| self.err(&self.dir, e))?;
        let mut perms = fs::metadata(&self.dir).map_err(|e| self.err(&self.dir, e))?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
        fs::set_permissions(&self.dir, perms).map_err(|e| self.err(&self.dir, e))
    }

    /// Reads key version `id` (`master.key` for the first), creating it (mode 0600) when
    /// asked to and missing.
    fn cipher(&self, id: &str, create: bool) -> Result<Option<XChaCha20Poly1305>> {
        let path = self.key_path(id);
        match fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => {
                Ok(Some(XChaCha20Poly1305::new_from_slice(&bytes).map_err(|e| self.err(&path, e))?))
            }
            Ok(_) => Err(self.err(&path, "master key is not 32 bytes")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                self.ensure_dir()?;
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| self.err(&path, e))?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| self.err(&path, e))?;
                f.write_all(&key).and_then(|()| f.sync_all()).map_err(|e| self.err(&path, e))?;
                drop(f);
                // Another process may have won the race: use whatever key is on disk.
                self.cipher(id, false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(&path, e)),
        }
    }

    fn load(&self) -> Result<StoreFile> {
        let path = self.dir.join("secrets.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| self.err(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoreFile {
                kind: "skiff.local_secrets".to_owned(),
                schema_version: 1,
                entries: BTreeMap::new(),
                keyring: keys::KeyRing::default(),
            }),
            Err(e) => Err(self.err(&path, e)),
        }
    }

    fn save(&self, store: &StoreFile) -> Result<()> {
        let path = self.dir.join("secrets.json");
        let tmp = self.dir.join(format!(".secrets.json.{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(store).map_err(|e| self.err(&path, e))?;
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.err(&path, e)
        })
    }

    /// Runs `f` on the store under the directory's lock.
    fn locked<T>(&self, f: impl FnOnce(&mut StoreFile) -> Result<(T, bool)>) -> Result<T> {
        self.ensure_dir()?;
        let lock_path = self.dir.join(".lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.err(&lock_path, e))?;
        lock.lock().map_err(|e| self.err(&lock_path, e))?;
        let mut store = self.load()?;
        let (out, changed) = f(&mut store)?;
        if changed {
            self.save(&store)?;
        }
        drop(lock.unlock());
        Ok(out)
    }

    /// Seals `value` for `reference` under key version `id`.
    fn seal(&self, id: &str, reference: &str, value: &str) -> Result<Sealed> {
        let key = self.cipher(id, id == keys::FIRST)?.ok_or_else(|| self.err(&self.key_path(id), "missing"))?;
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| self.err(&self.dir, e))?;
        let ciphertext = key
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: value.as_bytes(), aad: reference.as_bytes() })
            .map_err(|_| self.err(&self.dir, "encryption failed"))?;
        let key = (id != keys::FIRST).then(|| id.to_owned());
        Ok(Sealed { nonce: B64.encode(nonce), ciphertext: B64.encode(ciphertext), key })
    }

    /// Stores `value` under `reference`, sealed with the key `alias/skiff` names.
    pub fn put(&self, reference: &str, value: &str) -> Result<()> {
        let r = parse(reference)?;
        self.locked(|s| {
            let id = s.keyring.current(keys::DEFAULT_ALIAS);
            let sealed = self.seal(&id, r.as_str(), value)?;
            s.entries.insert(r.as_str().to_owned(), sealed);
            Ok(((), true))
        })
    }

    /// The value of `reference`, if stored.
    pub fn get(&self, reference: &str) -> Result<Option<String>> {
        let r = parse(reference)?;
        let store = self.load()?;
        let Some(sealed) = store.entries.get(r.as_str()) else { return Ok(None) };
        self.open(r.as_str(), sealed).map(Some)
    }

    /// The value sealed in `sealed`.
    fn open(&self, reference: &str, sealed: &Sealed) -> Result<String> {
        let id = sealed.key.as_deref().unwrap_or(keys::FIRST);
        let key = self.cipher(id, false)?.ok_or_else(|| SecretError::Tampered(reference.to_owned()))?;
        let tampered = || SecretError::Tampered(reference.to_owned());
        let nonce = B64.decode(&sealed.nonce).map_err(|_| tampered())?;
        let ciphertext = B64.decode(&sealed.ciphertext).map_err(|_| tampered())?;
        if nonce.len() != 24 {
            return Err(tampered());
        }
        let plain = key
            .decrypt(XNonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: reference.as_bytes() })
            .map_err(|_| tampered())?;
        String::from_utf8(plain).map_err(|_| tampered())
    }

    /// Whether `reference` has a value.
    pub fn exists(&self, reference: &str) -> Result<bool> {
        let r = parse(reference)?;
        Ok(self.load()?.entries.contains_key(r.as_str()))
    }

    /// References stored under the secret `name`.
    pub fn list(&self, name: &str) -> Result<Vec<String>> {
        let prefix = format!("secret://{name}");
        Ok(self
            .load()?
            .entries
            .keys()
            .filter(|k| k.as_str() == prefix || k.starts_with(&format!("{prefix}/")))
            .cloned()
            .collect())
    }

    /// Every stored reference.
    pub fn all(&self) -> Result<Vec<String>> {
        Ok(self.load()?.entries.keys().cloned().collect())
    }

    /// Removes `reference` (idempotent).
    pub fn delete(&self, reference: &str) -> Result<()> {
        let r = parse(reference)?;
        if !self.dir.join("secrets.json").exists() {
            return Ok(());
        }
        self.locked(|s| {
            let changed = s.entries.remove(r.as_str()).is_some();
            Ok(((), changed))
        })
    }
}

impl Resolver for LocalSecrets {
    fn resolve(&self, reference: &str) -> Result<String> {
        self.get(reference)?.ok_or_else(|| SecretError::Missing(reference.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetched_secrets_resolve_keys_of_their_json_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db.json"), r#"{"url": "postgres://u:p@h/db"}"#).unwrap();
        let r = resolver(&format!("dir:{}", dir.path().display())).unwrap();
        assert_eq!(r.resolve("secret://db/url").unwrap(), "postgres://u:p@h/db");
        assert!(matches!(r.resolve("secret://db/password"), Err(SecretError::Missing(_))));
        assert!(matches!(r.resolve("secret://other/url"), Err(SecretError::Missing(_))));
        assert!(matches!(r.resolve("db/url"), Err(SecretError::BadReference(_))));
        assert!(resolver("vault:x").is_none());
    }

    #[test]
    fn versions_are_short_stable_and_differ_by_value() {
        let v = super::version("postgres://a:b@h/db");
        assert_eq!(v, super::version("postgres://a:b@h/db"));
        assert_ne!(v, super::version("postgres://a:c@h/db"));
        assert_eq!(v.len(), 15);
        assert!(v.starts_with("sv-"));
    }

    #[test]
    fn round_trip_never_stores_plaintext_and_detects_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalSecrets::new(dir.path().join("secrets"));
        assert_eq!(s.get("secret://db/url").unwrap(), None);
        s.put("secret://db/url", "postgres://app:hunter2@localhost/db").unwrap();
        s.put("secret://db/user", "app").unwrap();
        assert_eq!(s.resolve("secret://db/url").unwrap(), "postgres://app:hunter2@localhost/db");
        assert_eq!(s.list("db").unwrap(), vec!["secret://db/url", "secret://db/user"]);
        let raw = fs::read_to_string(dir.path().join("secrets/secrets.json")).unwrap();
        assert!(!raw.contains("hunter2"), "values are encrypted at rest");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(dir.path().join("secrets/master.key")).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        // Moving a ciphertext to another reference does not decrypt (reference is bound).
        let mut store: StoreFile = serde_json::from_str(&raw).unwrap();
        let url = store.entries["secret://db/url"].clone();
        store.entries.insert("secret://db/user".into(), url);
        fs::write(dir.path().join("secrets/secrets.json"), serde_json::to_vec(&store).unwrap()).unwrap();
        assert!(matches!(s.get("secret://db/user"), Err(SecretError::Tampered(_))));
        s.delete("secret://db/url").unwrap();
        s.delete("secret://db/url").unwrap();
        assert!(!s.exists("secret://db/url").unwrap());
        assert!(matches!(s.resolve("secret://db/url"), Err(SecretError::Missing(_))));
        assert!(matches!(s.put("not-a-ref", "x"), Err(SecretError::BadReference(_))));
    }
}
