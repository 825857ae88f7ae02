//! Test support shared by the crates' integration tests and benchmarks: free ports on
//! 127.0.0.1, waiting on a condition with a deadline (never a bare sleep), and real
//! servers — moto's AWS server, a PostgreSQL ([`postgres`]) — started on loopback and
//! stopped with their guard, even if the test process is killed — and an in-memory provider ([`memory`]) for logic
//! tests and the deterministic simulation; for the benchmarks, nginx and wrk ([`bench`]).

pub mod bench;
pub mod memory;
pub mod otlp;
pub mod postgres;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// # Panics
/// If the OS has no free port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

/// Polls `cond` every few milliseconds until it holds or `timeout` passes.
/// Returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        skiff_clock::SystemClock::block_for(Duration::from_millis(20));
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// The workspace root.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// Builds (once per test process) and returns the path of a binary of this workspace,
/// e.g. `skiff-runner` or `hello`, in the same target directory and debug profile.
///
/// # Panics
/// If the build fails.
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    built_bin(name, false)
}

/// [`workspace_bin`] in the release profile, for benchmarks that measure footprint.
///
/// # Panics
/// If the build fails.
pub fn workspace_release_bin(name: &str) -> std::path::PathBuf {
    built_bin(name, true)
}

fn built_bin(name: &str, release: bool) -> std::path::PathBuf {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static BUILT: OnceLock<Mutex<HashMap<(String, bool), std::path::PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(p) = built.get(&(name.to_owned(), release)) {
        return p.clone();
    }
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), std::path::PathBuf::from);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut args = vec!["build", "--quiet", "--workspace", "--bin", name];
    if release {
        args.push("--release");
    }
    let status = Command::new(cargo)
        .args(&args)
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --bin {name} failed");
    let path = target.join(if release { "release" } else { "debug" }).join(name);
    built.insert((name.to_owned(), release), path.clone());
    path
}

/// A process that is stopped when the guard drops, and also when the test process
/// dies: a watchdog shell polls the owner and terminates the child.
#[derive(Debug)]
pub struct Guarded {
    child: Child,
}

impl Guarded {
    /// Starts `command` (a shell command line) under a watchdog bound to this process.
    ///
    /// # Panics
    /// If `sh` cannot be started.
    pub fn spawn(command: &str, log: &std::path::Path) -> Self {
        let owner = std::process::id();
        let script = format!(
            "{command} & child=$!; trap 'kill $child 2>/dev/null; wait $child 2>/dev/null' EXIT INT TERM; \
             while kill -0 {owner} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.3; done"
        );
        let log = std::fs::File::create(log).expect("create log file");
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start sh");
        Guarded { child }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SIGTERM to the watchdog runs its trap, which stops the child; wait for it.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// `python3 -m moto.server`'s own application and server, with one change: requests
/// are handled one at a time. moto checks `If-Match`/`If-None-Match` and then writes
/// in two steps, so two threads can both pass the check; S3 itself makes a
/// conditional write atomic. Serialising requests gives the tests S3's guarantee.
const MOTO_SERIAL: &str = r#"
import sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

inner = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()

def app(environ, start_response):
    with lock:
        return list(inner(environ, start_response))

run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=True)
"#;

/// moto's AWS server on 127.0.0.1, for S3 and the other AWS APIs.
#[derive(Debug)]
pub struct Moto {
    port: u16,
    _process: Guarded,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed on drop.
    #[derive(Debug)]
    pub(crate) struct Dir(pub(crate) std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    ///
    /// # Panics
    /// If moto is not installed (`pip install 'moto[server]'`) or does not start within 60 s.
    pub fn start() -> Self {
        for _ in 0..3 {
            let port = free_port();
            let dir = tempdir::Dir(std::env::temp_dir().join(format!("skiff-moto-{}-{port}", std::process::id())));
            std::fs::create_dir_all(&dir.0).expect("moto log dir");
            let log = dir.0.join("moto.log");
            let launcher = dir.0.join("moto_serial.py");
            std::fs::write(&launcher, MOTO_SERIAL).expect("moto launcher");
            let process = Guarded::spawn(&format!("exec python3 {} {port}", launcher.display()), &log);
            let moto = Moto { port, _process: process, _dir: dir };
            if wait_until(Duration::from_secs(60), || moto.request("GET", "/moto-api/data.json", b"").is_ok()) {
                return moto;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("No module named") {
                panic!("moto is not installed: pip install 'moto[server]'\n{text}");
            }
        }
        panic!("moto did not start on 127.0.0.1 within 60 s");
    }

    /// The port moto listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment an AWS client needs to talk to this moto.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        ]
    }

    /// Creates an S3 bucket.
    ///
    /// # Panics
    /// If moto refuses.
    pub fn create_bucket(&self, name: &str) {
        let status = self.request("PUT", &format!("/{name}"), b"").expect("reach moto");
        assert!(status == 200, "create bucket {name}: HTTP {status}");
    }

    /// Sends one HTTP/1.1 request to moto and returns the status code.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )?;
        stream.write_all(body)?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad response: {response:.80}")))
    }
}

/// Makes, with `openssl` in `dir`: a CA (`ca.pem`), a server certificate for
/// `server_san` (`server.pem`, `server.key`; such as `IP:127.0.0.1` or `DNS:db.example`)
/// and a client certificate for 127.0.0.1 (`client.pem`, `client.key`).
///
/// # Panics
/// If `openssl` fails.
pub fn certificates(dir: &std::path::Path, server_san: &str) {
    let sh = |script: &str| {
        let ok = Command::new("sh").arg("-ec").arg(script).current_dir(dir).stderr(Stdio::null()).status();
        assert!(ok.is_ok_and(|s| s.success()), "{script}");
    };
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=skiff-test-ca",
    );
    for (name, san, usage) in [("server", server_san, "serverAuth"), ("client", "IP:127.0.0.1", "clientAuth")] {
        sh(&format!(
            "printf 'subjectAltName={san}\\nbasicConstraints=CA:FALSE\\nkeyUsage=digitalSignature\\nextendedKeyUsage={usage}\\n' > {name}.ext\n\
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {name}.key -out {name}.csr -subj /CN={name}\n\
             openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem -days 2 -extfile {name}.ext"
        ));
    }
}
