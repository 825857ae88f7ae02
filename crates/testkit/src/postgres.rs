//! A real PostgreSQL on 127.0.0.1 for tests that need an engine no emulator runs —
//! the stand-in for an RDS instance's engine behind moto, say. Its server runs in the
//! foreground under a [`Guarded`] watchdog, as the `postgres` user when the tests run
//! as root, and its data directory is removed when it drops.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{Guarded, free_port, port_open, wait_until};

/// A running PostgreSQL cluster with one password user and one database.
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    server: Option<Guarded>,
}

/// The directory of `initdb`: `SKIFF_PG_BIN`, or Debian's newest `/usr/lib/postgresql/*/bin`.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SKIFF_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).filter(|b| b.join("initdb").exists()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().expect("PostgreSQL is installed (/usr/lib/postgresql/*/bin or SKIFF_PG_BIN)")
}

/// `setpriv` arguments that drop root to the `postgres` user (empty when not root).
fn as_postgres() -> Vec<String> {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"].map(str::to_owned).to_vec()
    } else {
        Vec::new()
    }
}

fn run(args: &[String], dir: &Path) {
    let out = Command::new(&args[0]).args(&args[1..]).current_dir(dir).output().expect("run a PostgreSQL tool");
    assert!(out.status.success(), "{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl Postgres {
    /// Starts a cluster whose superuser `user` logs in over TCP with `password`
    /// (SCRAM), with database `database`.
    ///
    /// # Panics
    /// If PostgreSQL is missing or does not start within a minute.
    pub fn start(user: &str, password: &str, database: &str) -> Self {
        Self::launch(user, password, database, None)
    }

    /// [`Postgres::start`] with TLS from `cert` and `key` (PEM), and password logins
    /// over TCP only with TLS (`hostssl`).
    ///
    /// # Panics
    /// As [`Postgres::start`].
    pub fn start_tls(user: &str, password: &str, database: &str, cert: &Path, key: &Path) -> Self {
        Self::launch(user, password, database, Some((cert, key)))
    }

    fn launch(user: &str, password: &str, database: &str, tls: Option<(&Path, &Path)>) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("skiff-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        std::fs::write(dir.join("pw"), password).expect("write the password file");
        if let Some((cert, key)) = tls {
            std::fs::copy(cert, dir.join("server.pem")).expect("copy the certificate");
            std::fs::copy(key, dir.join("server.key")).expect("copy the key");
            let _ = Command::new("chmod").arg("600").arg(dir.join("server.key")).status();
        }
        let sudo = as_postgres();
        if !sudo.is_empty() {
            let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status();
        }
        let bin = bin_dir();
        let tool = |name: &str, rest: &[&str]| {
            let mut args = sudo.clone();
            args.push(bin.join(name).display().to_string());
            args.extend(rest.iter().map(|s| (*s).to_owned()));
            args
        };
        let data = dir.join("data").display().to_string();
        let pw = dir.join("pw").display().to_string();
        run(
            &tool(
                "initdb",
                &["-D", &data, "-U", user, "--auth-host=scram-sha-256", "--auth-local=trust", "--pwfile", &pw],
            ),
            &dir,
        );
        let port = free_port();
        let sock = dir.display().to_string();
        let port_s = port.to_string();
        let mut options: Vec<String> =
            ["-D", &data, "-p", &port_s, "-k", &sock, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
                .map(str::to_owned)
                .to_vec();
        if tls.is_some() {
            let hba = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n";
            std::fs::write(dir.join("data/pg_hba.conf"), hba).expect("write pg_hba.conf");
            for (k, f) in [("ssl_cert_file", "server.pem"), ("ssl_key_file", "server.key")] {
                options.extend(["-c".to_owned(), format!("{k}={}", dir.join(f).display())]);
            }
            options.extend(["-c".to_owned(), "ssl=on".to_owned()]);
        }
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        let server = tool("postgres", &options);
        let guard = Guarded::spawn(&server.join(" "), &dir.join("server.log"));
        assert!(
            wait_until(Duration::from_secs(60), || port_open(port)),
            "PostgreSQL did not start: see {sock}/server.log"
        );
        run(&tool("createdb", &["-h", &sock, "-p", &port.to_string(), "-U", user, database]), &dir);
        Postgres { dir, port, server: Some(guard) }
    }

    /// `psql` as `user` over TCP, one statement; its output, or its error.
    ///
    /// # Errors
    /// psql's error output when the statement or the login fails.
    pub fn psql(&self, user: &str, password: &str, database: &str, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(bin_dir().join("psql"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", user, "-d", database, "-XAt", "-c", sql])
            .env("PGPASSWORD", password);
        run_psql(&mut cmd)
    }
}

/// `psql URL`, one statement, no psqlrc, unaligned tuples only; its output, or its error.
///
/// # Errors
/// psql's error output when the statement or the login fails.
pub fn psql_url(url: &str, sql: &str) -> Result<String, String> {
    run_psql(Command::new(bin_dir().join("psql")).args([url, "-XAt", "-c", sql]))
}

/// Runs a `psql` command (5 s to connect): its trimmed output, or its error output.
fn run_psql(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.env("PGCONNECT_TIMEOUT", "5").output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        drop(self.server.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
