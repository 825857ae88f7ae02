//! hello: a small real HTTP service for Skiff's quickstart and canary tests.
//!
//! Serves `/` and `/healthz` on `HOST:PORT` (default 127.0.0.1:8080). Environment
//! switches make a bad release on purpose: `HELLO_ERROR_RATE` (0..=1, share of `/`
//! answered 500), `HELLO_UNHEALTHY=1` (`/healthz` answers 500), `HELLO_LATENCY_MS`
//! (delay on `/`), `HELLO_CRASH_AFTER_MS` (exit 1 after that long). `HELLO_CONFIG`,
//! when set (typically from a secret reference), must be a JSON object: anything else
//! makes hello exit 2 at start, as a service with a broken configuration does.
//! `HELLO_UPSTREAM=NAME` makes `/` call service NAME first, at the URL the mesh gives
//! in `SKIFF_UPSTREAM_<NAME>` (`network.upstreams`), and answer with what it said (502
//! when it fails): the mTLS example's two services.
#![expect(
    clippy::disallowed_methods,
    reason = "an example application, not Skiff: it really sleeps to act slow or crash late"
)]
#![expect(clippy::print_stdout, clippy::print_stderr, reason = "a service logs its requests to stdout")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Config {
    message: String,
    error_rate: f64,
    unhealthy: bool,
    latency: Duration,
    release: String,
    instance: String,
    /// The upstream's name and its URL (`http://HOST:PORT`).
    upstream: Option<(String, String)>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn main() {
    if let Some(c) = env("HELLO_CONFIG")
        && !(c.trim_start().starts_with('{') && c.trim_end().ends_with('}'))
    {
        eprintln!("hello: HELLO_CONFIG is not a JSON object; refusing to start");
        std::process::exit(2);
    }
    let host = env("HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = env("PORT").unwrap_or_else(|| "8080".to_owned());
    let config = Arc::new(Config {
        message: env("HELLO_MESSAGE").unwrap_or_else(|| "hello from skiff".to_owned()),
        error_rate: env("HELLO_ERROR_RATE").and_then(|v| v.parse().ok()).unwrap_or(0.0f64).clamp(0.0, 1.0),
        unhealthy: env("HELLO_UNHEALTHY").is_some_and(|v| v == "1" || v == "true"),
        latency: Duration::from_millis(env("HELLO_LATENCY_MS").and_then(|v| v.parse().ok()).unwrap_or(0)),
        release: env("SKIFF_RELEASE").unwrap_or_else(|| "dev".to_owned()),
        instance: env("SKIFF_INSTANCE").unwrap_or_else(|| "local".to_owned()),
        upstream: env("HELLO_UPSTREAM").map(|name| {
            let var = format!("SKIFF_UPSTREAM_{}", name.to_ascii_uppercase().replace('-', "_"));
            let url = env(&var).unwrap_or_default();
            (name, url)
        }),
    });
    if let Some(ms) = env("HELLO_CRASH_AFTER_MS").and_then(|v| v.parse::<u64>().ok()) {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            eprintln!("hello: crashing on purpose after {ms}ms (HELLO_CRASH_AFTER_MS)");
            std::process::exit(1);
        });
    }
    let listener = match TcpListener::bind(format!("{host}:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hello: cannot listen on {host}:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("hello: listening on {host}:{port} release={} instance={}", config.release, config.instance);
    let served = Arc::new(AtomicU64::new(0));
    for stream in listener.incoming().flatten() {
        let (config, served) = (Arc::clone(&config), Arc::clone(&served));
        std::thread::spawn(move || {
            let _ = serve(stream, &config, &served);
        });
    }
}

/// Serves requests on one connection until the client closes it or asks to.
fn serve(stream: TcpStream, config: &Config, served: &AtomicU64) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/").to_owned());
        let http10 = parts.next() == Some("HTTP/1.0");
        let (mut length, mut close) = (0usize, http10);
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_ascii_lowercase());
                match name.as_str() {
                    "content-length" => length = value.parse().unwrap_or(0),
                    "connection" if value == "close" => close = true,
                    "connection" if value == "keep-alive" => close = false,
                    _ => {}
                }
            }
        }
        std::io::copy(&mut (&mut reader).take(length as u64), &mut std::io::sink())?;
        let (status, body) = respond(method, &path, config, served);
        println!("hello: {method} {path} {status}");
        let reason = if status == 200 {
            "OK"
        } else if status == 404 {
            "Not Found"
        } else {
            "Internal Server Error"
        };
        // One write per response: `write!` on a bare socket sends every fragment as its own segment.
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-skiff-release: {}\r\n{}\r\n{body}",
            body.len(),
            config.release,
            if close { "connection: close\r\n" } else { "" }
        );
        writer.write_all(response.as_bytes())?;
        if close {
            return Ok(());
        }
    }
}

fn respond(method: &str, path: &str, config: &Config, served: &AtomicU64) -> (u16, String) {
    match (method, path) {
        ("GET", "/healthz") if config.unhealthy => (500, "unhealthy (HELLO_UNHEALTHY)\n".to_owned()),
        ("GET", "/healthz") => (200, "ok\n".to_owned()),
        ("GET" | "HEAD", "/") => {
            std::thread::sleep(config.latency);
            // Deterministic error share: request n fails when floor(n * rate) steps up.
            let n = served.fetch_add(1, Ordering::Relaxed) as f64;
            if ((n + 1.0) * config.error_rate).floor() > (n * config.error_rate).floor() {
                (500, "failing on purpose (HELLO_ERROR_RATE)\n".to_owned())
            } else {
                let me = format!("{} (release {}, instance {})", config.message, config.release, config.instance);
                match &config.upstream {
                    None => (200, format!("{me}\n")),
                    Some((name, url)) => match call(url) {
                        Ok(said) => (200, format!("{me}; {name} said: {}\n", said.trim_end())),
                        Err(e) => (502, format!("{me}; {name} at `{url}` failed: {e}\n")),
                    },
                }
            }
        }
        _ => (404, "not found\n".to_owned()),
    }
}

/// One GET of `/` at `url` (`http://HOST:PORT`): its body when it answered 200.
fn call(url: &str) -> std::io::Result<String> {
    let addr = url.strip_prefix("http://").unwrap_or(url).trim_end_matches('/');
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer.as_str(), ""));
    if head.split_whitespace().nth(1) == Some("200") {
        Ok(body.to_owned())
    } else {
        Err(std::io::Error::other(head.lines().next().unwrap_or("no answer").to_owned()))
    }
}
