//! `file://` backend: a directory tree of objects with real compare-and-swap across
//! processes. Conditional writes take a per-key lock (`flock` on a lock file under
//! `.skiff-locks/`), compare the current version, write a temporary file, fsync it,
//! rename it into place and fsync the directory, so a crash leaves either the old or
//! the new document, never a torn one. Create-only writes link a fsynced file into
//! place (an unnamed `O_TMPFILE` where the kernel offers one), and `link(2)` fails
//! atomically when the key exists. Readers take no lock: a rename is atomic.
//!
//! Directories known to exist are kept open (a bounded cache): their handles are
//! what gets fsynced, and a directory removed behind the store's back is made again
//! by the next write that misses it.
//!
//! Versions are the first 128 bits of the content's SHA-256, like S3's content ETag:
//! equal content gives equal versions. Skiff's mutable documents carry a generation
//! bumped on every write, so an A→B→A history never repeats bytes.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    dirs: Arc<Mutex<HashMap<PathBuf, Arc<File>>>>,
}

/// Directory handles kept open at most; the cache starts over when full.
const OPEN_DIRS: usize = 256;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);
/// This machine cannot make unnamed files (`O_TMPFILE`, or `/proc` is missing).
static NO_TMPFILE: AtomicBool = AtomicBool::new(false);

fn version_of(bytes: &[u8]) -> Version {
    Version(hex::encode(&Sha256::digest(bytes)[..16]))
}

impl FileStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        Ok(FileStore { root, dirs: Arc::default() })
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

    fn cached(&self, dir: &Path) -> Option<Arc<File>> {
        self.dirs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(dir).cloned()
    }

    /// An open handle on `dir` (which exists), cached.
    fn dir_handle(&self, dir: &Path) -> std::io::Result<Arc<File>> {
        if let Some(f) = self.cached(dir) {
            return Ok(f);
        }
        let f = Arc::new(File::open(dir)?);
        let mut dirs = self.dirs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if dirs.len() >= OPEN_DIRS {
            dirs.clear();
        }
        dirs.insert(dir.to_path_buf(), f.clone());
        Ok(f)
    }

    /// Forgets `dir` (it was removed behind the store's back).
    fn forget(&self, dir: &Path) {
        self.dirs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|d, _| !d.starts_with(dir));
    }

    /// Makes the new entries of `dir` durable.
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.dir_handle(dir)?.sync_all()
    }

    /// Creates `dir` and any missing parents, fsyncing each parent after a mkdir so
    /// the new directory entries survive a crash.
    fn ensure_dir(&self, key: &str, dir: &Path) -> Result<()> {
        if self.cached(dir).is_some() {
            return Ok(());
        }
        if dir.is_dir() {
            return self.dir_handle(dir).map(drop).map_err(|e| self.io(key, &e));
        }
        if let Some(parent) = dir.parent() {
            self.ensure_dir(key, parent)?;
        }
        match fs::create_dir(dir) {
            Ok(()) => self.sync_dir(dir.parent().unwrap_or(dir)).map_err(|e| self.io(key, &e)),
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
        let written = match write() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.forget(&dir);
                self.ensure_dir(key, &dir)?;
                write()
            }
            other => other,
        };
        written.map_err(|e| {
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

    /// Writes `bytes` to an unnamed file in `dir` (`O_TMPFILE`), fsyncs it, and links
    /// it at `target`: one name made, none removed. `None` where the file system or
    /// kernel cannot (the caller then uses a named temporary file).
    fn create_unnamed(&self, dir: &Path, target: &Path, bytes: &[u8]) -> Option<std::io::Result<()>> {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;
        if NO_TMPFILE.load(Ordering::Relaxed) {
            return None;
        }
        let opened =
            File::options().write(true).custom_flags(nix::fcntl::OFlag::O_TMPFILE.bits()).mode(0o644).open(dir);
        let mut f = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Some(Err(e)),
            Err(_) => {
                NO_TMPFILE.store(true, Ordering::Relaxed);
                return None;
            }
        };
        if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
            return Some(Err(e));
        }
        let proc_path = format!("/proc/self/fd/{}", f.as_raw_fd());
        let at = nix::fcntl::AT_FDCWD;
        match nix::unistd::linkat(at, proc_path.as_str(), at, target, nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW) {
            Ok(()) => Some(Ok(())),
            Err(nix::errno::Errno::EEXIST) => Some(Err(ErrorKind::AlreadyExists.into())),
            Err(nix::errno::Errno::ENOENT) if !Path::new("/proc/self/fd").exists() => {
                NO_TMPFILE.store(true, Ordering::Relaxed);
                None
            }
            Err(e) => Some(Err(e.into())),
        }
    }

    fn create(&self, key: &str, bytes: &[u8]) -> Result<Version> {
        let target = self.root.join(key);
        let parent = target.parent().expect("a key has a parent directory");
        self.ensure_dir(key, parent)?;
        let unnamed = match self.create_unnamed(parent, &target, bytes) {
            Some(Err(e)) if e.kind() == ErrorKind::NotFound => {
                self.forget(parent);
                self.ensure_dir(key, parent)?;
                self.create_unnamed(parent, &target, bytes)
            }
            other => other,
        };
        match unnamed {
            Some(Ok(())) => {
                self.sync_dir(parent).map_err(|e| self.io(key, &e))?;
                return Ok(version_of(bytes));
            }
            Some(Err(e)) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(StoreError::AlreadyExists { key: key.to_owned(), maybe_applied: false });
            }
            Some(Err(e)) => return Err(self.io(key, &e)),
            None => {}
        }
        let tmp = self.temp(key, bytes)?;
        let linked = match fs::hard_link(&tmp, &target) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.forget(parent);
                self.ensure_dir(key, parent)?;
                fs::hard_link(&tmp, &target)
            }
            other => other,
        };
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                self.sync_dir(parent).map_err(|e| self.io(key, &e))?;
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
            self.sync_dir(target.parent().expect("a key has a parent")).map_err(|e| self.io(key, &e))?;
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
            self.sync_dir(target.parent().expect("a key has a parent")).map_err(|e| self.io(key, &e))
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

/// Objects up to this size are read in place on a single-threaded runtime.
const IN_PLACE_MAX: u64 = 1 << 20;

/// Whether this task runs on a single-threaded runtime (the CLI's). There a small read
/// (a document, a directory listing) is done in place: handing it to the blocking pool
/// — a thread to wake, often one to start — costs more than the read, and `skiff
/// status` makes hundreds. Writes still go to the pool: an fsync may take
/// milliseconds the runtime's other tasks (a lease's renewal) must not wait for.
fn single_threaded() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

#[async_trait]
impl Store for FileStore {
    async fn get(&self, key: &str) -> Result<Option<Object>> {
        validate_key(key)?;
        if single_threaded() && !fs::metadata(self.root.join(key)).is_ok_and(|m| m.len() > IN_PLACE_MAX) {
            return self.read(key);
        }
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
        if single_threaded() {
            return self.walk(prefix);
        }
        let (this, prefix) = (self.clone(), prefix.to_owned());
        blocking(move || this.walk(&prefix)).await
    }

    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }
}
