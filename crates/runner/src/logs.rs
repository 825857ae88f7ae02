//! Log capture: each line of the program's stdout and stderr, and the runner's own
//! notes, go to `service.log` with a UTC timestamp; the file rotates at 10 MiB,
//! keeping three old files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use skiff_clock::{Clock, SystemClock, Utc};

const MAX_BYTES: u64 = 10 * 1024 * 1024;
const KEEP: usize = 3;

/// The runner's own diagnostics when no log file is open.
pub(crate) fn stderr(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "skiff-runner: {message}");
}

struct Inner {
    path: PathBuf,
    file: File,
    written: u64,
    /// The trace of the operation that started this runner, on its own notes.
    trace: Option<String>,
}

/// A rotating log file, shared by the tasks that write to it.
#[derive(Clone)]
pub(crate) struct Log(Arc<Mutex<Inner>>);

impl Log {
    pub(crate) fn open(dir: &Path, trace: Option<String>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("service.log");
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let written = file.metadata()?.len();
        Ok(Log(Arc::new(Mutex::new(Inner { path, file, written, trace }))))
    }

    /// Writes one line with a timestamp.
    pub(crate) fn line(&self, text: &str) {
        let stamp = Utc::from_ms(SystemClock.now_ms()).rfc3339();
        let mut inner = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let record = format!("{stamp} {}\n", text.trim_end_matches(['\n', '\r']));
        if inner.written + record.len() as u64 > MAX_BYTES {
            rotate(&mut inner);
        }
        if inner.file.write_all(record.as_bytes()).is_ok() {
            inner.written += record.len() as u64;
        }
    }

    /// A note from the runner itself.
    pub(crate) fn runner(&self, text: &str) {
        let trace = self.0.lock().map(|i| i.trace.clone()).unwrap_or_default();
        match trace {
            Some(id) => self.line(&format!("[skiff-runner] {text} trace_id={id}")),
            None => self.line(&format!("[skiff-runner] {text}")),
        }
    }
}

fn rotate(inner: &mut Inner) {
    for i in (1..KEEP).rev() {
        let _ = std::fs::rename(
            inner.path.with_extension(format!("log.{i}")),
            inner.path.with_extension(format!("log.{}", i + 1)),
        );
    }
    let _ = std::fs::rename(&inner.path, inner.path.with_extension("log.1"));
    if let Ok(f) = OpenOptions::new().create(true).append(true).open(&inner.path) {
        inner.file = f;
        inner.written = 0;
    }
}
