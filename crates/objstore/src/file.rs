//! `file://` backend: a directory tree of objects with real compare-and-swap across
//! processes. Conditional writes take a per-key lock (`flock` on a lock file under
//! `.skiff-locks/`), compare the current version, write a temporary file, fsync it,
//! rename it into place and fsync the directory, so a crash leaves either the old or
//! the new document, never a torn one. Create-only writes use `link(2)`, which fails
//! atomically when the key exists. Readers take no lock: a rename is atomic.
//!
//! Versions are the first 128 bits of the content's SHA-256, like S3's content ETag:
//! equal content gives equal versions. Skiff's mutable documents carry a generation
//! bumped on every write, so an A→B→A history never repeats bytes.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::key::{validate_key, validate_prefix};
use crate::{Listed, Object, Result, Store, StoreError, Version};

const LOCKS: &str = ".skiff-locks";
const TMP: &str = ".skiff-tmp";

/// A bucket in a local directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn version_of(bytes: &[u8]) -> Version {
    Version(hex::encode(&Sha256::digest(bytes)[..16]))
}

impl FileStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        Ok(FileStore { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io(&self, key: &str, e: &std::io::Error) -> StoreError {
        match e.kind() {
            ErrorKind::Interrupted | ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                StoreError::Transient { key: key.to_owned(), message: e.to_string() }
            }
            _ => StoreError::Unavailable {
                url: self.url(),
                message: format!("{e} (key `{key}`); check the directory exists, is writable and has space"),
            },
        }
    }

    fn read(&self, key: &str) -> Result<Option<Object>> {
        let path = self.root.join(key);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => return Ok(None),
            Err(e) => return Err(self.io(key, &e)),
        };
        if file.metadata().map_err(|e| self.io(key, &e))?.is_dir() {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| self.io(key, &e))?;
        let version = version_of(&bytes);
        Ok(Some(Object { bytes, version }))
    }

    /// Creates `dir` and any missing parents, fsyncing each parent after a mkdir so
    /// the new directory entries survive a crash.
    fn ensure_dir(&self, key: &str, dir: &Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.ensure_dir(key, parent)?;
        }
        match fs::create_dir(dir) {
            Ok(()) => sync_dir(dir.parent().unwrap_or(dir)).map_err(|e| self.io(key, &e)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(self.io(key, &e)),
        }
    }

    /// Writes `bytes` to a fresh temporary file and fsyncs it.
    fn temp(&self, key: &str, bytes: &[u8]) -> Result<PathBuf> {
        let dir = self.root.join(TMP);
        self.ensure_dir(key, &dir)?;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{n}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = File::options().write(true).create_new(true).open(&path)?;
            f.write_all(bytes)?;
            f.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&path);
            self.io(key, &e)
        })?;
        Ok(path)
    }

    /// Holds the key's exclusive lock while `f` runs.
    fn locked<T>(&self, key: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let dir = self.root.join(LOCKS);
        self.ensure_dir(key, &dir)?;
        let name = hex::encode(Sha256::digest(key.as_bytes()));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{name}.lock")))
            .map_err(|e| self.io(key, &e))?;
        lock.lock().map_err(|e| self.io(key, &e))?;
        let out = f();
        drop(lock.unlock());
        out
    }

    fn create(&self, key: &str, bytes: &[u8]) -> Result<Version> {
        let target = self.root.join(key);
        let parent = target.parent().expect("a key has a parent directory");
        self.ensure_dir(key, parent)?;
        let tmp = self.temp(key, bytes)?;
        let linked = fs::hard_link(&tmp, &target);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(parent).map_err(|e| self.io(key, &e))?;
                Ok(version_of(bytes))
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Err(StoreError::AlreadyExists { key: key.to_owned(), maybe_applied: false })
            }
            Err(e) => Err(self.io(key, &e)),
        }
    }

    fn replace(&self, key: &str, bytes: &[u8], expected: &Version) -> Result<Version> {
        self.locked(key, || {
            let current = self.read(key)?;
            if current.as_ref().map(|o| &o.version) != Some(expected) {
                return Err(StoreError::PreconditionFailed { key: key.to_owned(), maybe_applied: false });
            }
            let target = self.root.join(key);
            let tmp = self.temp(key, bytes)?;
            fs::rename(&tmp, &target).map_err(|e| {
                let _ = fs::remove_file(&tmp);
                self.io(key, &e)
            })?;
            sync_dir(target.parent().expect("a key has a parent")).map_err(|e| self.io(key, &e))?;
            Ok(version_of(bytes))
        })
    }

    fn remove(&self, key: &str, expected: &Version) -> Result<()> {
        self.locked(key, || {
            let current = self.read(key)?;
            if current.as_ref().map(|o| &o.version) != Some(expected) {
                return Err(StoreError::PreconditionFailed { key: key.to_owned(), maybe_applied: false });
            }
            let target = self.root.join(key);
            fs::remove_file(&target).map_err(|e| self.io(key, &e))?;
            sync_dir(target.parent().expect("a key has a parent")).map_err(|e| self.io(key, &e))
        })
    }

    fn walk(&self, prefix: &str) -> Result<Vec<Listed>> {
        let base = match prefix.rfind('/') {
            Some(i) => self.root.join(&prefix[..i]),
            None => self.root.clone(),
        };
        let mut out = Vec::new();
        let mut stack = vec![base];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => continue,
                Err(e) => return Err(self.io(prefix, &e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.io(prefix, &e))?;
                let name = entry.file_name();
                if name.to_string_lossy().starts_with(".skiff") {
                    continue;
                }
                let path = entry.path();
                let meta = entry.metadata().map_err(|e| self.io(prefix, &e))?;
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&self.root) else { continue };
                let key = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                if key.starts_with(prefix) {
                    out.push(Listed { key, size: meta.len() });
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Runs blocking file-system work without stalling the async runtime: in place on a
/// multi-threaded runtime (other tasks move to other workers), on the blocking pool
/// otherwise.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi {
        return tokio::task::block_in_place(f);
    }
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Transient { key: String::new(), message: format!("file worker stopped: {e}") })
    })
}

#[async_trait]
impl Store for FileStore {
    async fn get(&self, key: &str) -> Result<Option<Object>> {
        validate_key(key)?;
        let (this, key) = (self.clone(), key.to_owned());
        blocking(move || this.read(&key)).await
    }

    async fn put_create(&self, key: &str, bytes: Vec<u8>) -> Result<Version> {
        validate_key(key)?;
        let (this, key) = (self.clone(), key.to_owned());
        blocking(move || this.create(&key, &bytes)).await
    }

    async fn put_if_match(&self, key: &str, bytes: Vec<u8>, expected: &Version) -> Result<Version> {
        validate_key(key)?;
        let (this, key, expected) = (self.clone(), key.to_owned(), expected.clone());
        blocking(move || this.replace(&key, &bytes, &expected)).await
    }

    async fn delete_if_match(&self, key: &str, expected: &Version) -> Result<()> {
        validate_key(key)?;
        let (this, key, expected) = (self.clone(), key.to_owned(), expected.clone());
        blocking(move || this.remove(&key, &expected)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        validate_prefix(prefix)?;
        let (this, prefix) = (self.clone(), prefix.to_owned());
        blocking(move || this.walk(&prefix)).await
    }

    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }
}
