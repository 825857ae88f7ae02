//! What the benchmarks compare Skiff with, on the same machine and in the same run:
//! nginx (as a keep-alive reverse proxy, or serving static files — the floor of
//! "answer a small document over HTTP") and wrk, the load generator a user would
//! reach for. Both come from the distribution's packages (`cargo xtask bench` installs
//! them when missing); each constructor answers `None` when its program is not
//! installed, and the benchmark says it skipped that row.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, tempdir, wait_until};

const NGINX: [&str; 3] = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"];

/// An nginx master (and its workers) on a free loopback port, stopped on drop.
#[derive(Debug)]
pub struct Nginx {
    /// The port it listens on.
    pub port: u16,
    child: Child,
    _dir: tempdir::Dir,
}

impl Nginx {
    /// nginx as a reverse proxy to 127.0.0.1:`upstream`, set up as its documentation
    /// sets one up for keep-alive upstreams (`keepalive 32`, HTTP/1.1, no `Connection`).
    pub fn proxy(upstream: u16) -> Option<Nginx> {
        Self::start(&format!(
            "upstream app {{ server 127.0.0.1:{upstream}; keepalive 32; }}\n\
             server {{\n  listen 127.0.0.1:PORT;\n  location / {{\n    proxy_pass http://app;\n\
               proxy_http_version 1.1;\n    proxy_set_header Connection \"\";\n  }}\n}}\n"
        ))
    }

    /// nginx serving the files under `root` as `application/json` (`/a/b` is `root/a/b`).
    pub fn static_files(root: &Path) -> Option<Nginx> {
        Self::start(&format!(
            "server {{\n  listen 127.0.0.1:PORT;\n  root {};\n  default_type application/json;\n}}\n",
            root.display()
        ))
    }

    /// Whether nginx is installed.
    pub fn installed() -> bool {
        Self::binary().is_some()
    }

    /// The installed nginx's version (`nginx/1.22.1`).
    pub fn version() -> Option<String> {
        let bin = Self::binary()?;
        let out = Command::new(bin).arg("-v").output().ok()?;
        String::from_utf8_lossy(&out.stderr).trim().strip_prefix("nginx version: ").map(str::to_owned)
    }

    fn binary() -> Option<&'static str> {
        NGINX.into_iter().find(|p| Path::new(p).exists())
    }

    /// `server` is an http-block fragment with `PORT` where the listen port goes.
    fn start(server: &str) -> Option<Nginx> {
        let bin = Self::binary()?;
        let port = free_port();
        let dir = tempdir::Dir(std::env::temp_dir().join(format!("skiff-nginx-{}-{port}", std::process::id())));
        std::fs::create_dir_all(&dir.0).ok()?;
        let d = dir.0.display();
        let conf = format!(
            "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 1000000;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n{}}}\n",
            server.replace("PORT", &port.to_string())
        );
        let path = dir.0.join("nginx.conf");
        std::fs::write(&path, conf).ok()?;
        let child = Command::new(bin).arg("-p").arg(&dir.0).arg("-c").arg(&path).stderr(Stdio::null()).spawn().ok()?;
        let nginx = Nginx { port, child, _dir: dir };
        wait_until(Duration::from_secs(10), || crate::port_open(port)).then_some(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, so the master stops its workers too (SIGKILL would orphan them).
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// One wrk run's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkRun {
    /// Requests completed.
    pub requests: u64,
    /// Requests per second over the run.
    pub requests_per_s: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Socket errors and non-2xx/3xx answers.
    pub errors: u64,
}

/// wrk, when installed.
#[derive(Debug, Clone)]
pub struct Wrk {
    bin: PathBuf,
}

impl Wrk {
    /// The installed wrk, if any.
    pub fn find() -> Option<Wrk> {
        ["/usr/bin/wrk", "/usr/local/bin/wrk"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .map(|bin| Wrk { bin })
    }

    /// The installed wrk's version line (`wrk 4.1.0 …`).
    pub fn version(&self) -> Option<String> {
        let out = Command::new(&self.bin).arg("-v").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        text.lines().next().map(|l| l.split(" [").next().unwrap_or(l).trim().to_owned())
    }

    /// `wrk --latency -t THREADS -c CONNECTIONS -d SECONDS URL`, with `headers`.
    ///
    /// # Panics
    /// If wrk cannot be started or prints no figures.
    pub fn run(&self, url: &str, threads: u32, connections: u32, seconds: u32, headers: &[&str]) -> WrkRun {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--latency", "-t", &threads.to_string(), "-c", &connections.to_string()])
            .args(["-d", &format!("{seconds}s")]);
        for h in headers {
            cmd.args(["-H", h]);
        }
        let out = cmd.arg(url).output().expect("start wrk");
        let text = String::from_utf8_lossy(&out.stdout);
        parse_wrk(&text).unwrap_or_else(|| panic!("wrk printed no figures:\n{text}"))
    }
}

/// The figures of wrk's `--latency` report.
pub fn parse_wrk(text: &str) -> Option<WrkRun> {
    let mut run = WrkRun { requests: 0, requests_per_s: 0.0, p50_us: 0.0, p99_us: 0.0, errors: 0 };
    let mut seen = 0;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => (run.p50_us, seen) = (duration_us(v)?, seen + 1),
            ["99%", v] => (run.p99_us, seen) = (duration_us(v)?, seen + 1),
            ["Requests/sec:", v] => (run.requests_per_s, seen) = (v.parse().ok()?, seen + 1),
            [n, "requests", "in", ..] => run.requests = n.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => run.errors += n.parse::<u64>().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                run.errors += rest.iter().filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok()).sum::<u64>();
            }
            _ => {}
        }
    }
    (seen == 3).then_some(run)
}

/// wrk's `812.00us`, `1.23ms`, `2.00s` in µs.
fn duration_us(v: &str) -> Option<f64> {
    let (n, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1_000.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        return None;
    };
    n.parse::<f64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_are_read() {
        let text = "Running 3s test @ http://127.0.0.1:8080/\n  2 threads and 8 connections\n\
            \x20 Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   201.33us  101.12us   4.01ms   90.00%\n\
            \x20 Latency Distribution\n     50%  180.00us\n     75%  220.00us\n     90%  300.00us\n     99%    1.10ms\n\
            \x20 90123 requests in 3.00s, 10.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n\
            \x20 Non-2xx or 3xx responses: 4\nRequests/sec:  30041.00\nTransfer/sec:      3.33MB\n";
        let run = parse_wrk(text).unwrap();
        assert_eq!(run, WrkRun { requests: 90123, requests_per_s: 30041.0, p50_us: 180.0, p99_us: 1100.0, errors: 7 });
        assert_eq!(parse_wrk("unable to connect to 127.0.0.1:1"), None);
    }
}
