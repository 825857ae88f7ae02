//! Request mirroring on the local load balancer: a share of a service's GET and HEAD
//! requests (those safe to repeat) is copied to a target group that takes no traffic of its own (a shadow release). The
//! copy goes out after the primary's request, its answer is read and discarded, and
//! both answers' status and latency are compared in a [`MirrorReport`]. Which requests
//! are copied is exact and deterministic (an accumulator, not a coin flip). Bodies
//! over 1 MiB, and copies while 64 are still in flight, are skipped and counted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Request;
use skiff_pluginapi::{LATENCY_BUCKETS_MS, Mirror, MirrorReport, TrafficStats};

use super::lb::{Balancers, Body, Upstream};

/// The largest body a mirrored request may carry (it is buffered to be sent twice).
pub(crate) const MAX_BODY: u64 = 1 << 20;
/// Copies in flight beyond which new ones are skipped.
const MAX_IN_FLIGHT: usize = 64;
/// Mismatch samples kept.
const SAMPLES: usize = 10;

/// A service's mirroring: what it copies, the accumulator and what it saw.
pub(crate) struct MirrorState {
    pub(crate) spec: Mirror,
    acc: u32,
    in_flight: usize,
    pub(crate) report: MirrorReport,
    next: usize,
}

impl MirrorState {
    pub(crate) fn new(spec: Mirror) -> Self {
        let empty = || TrafficStats { requests: 0, errors: 0, latency_buckets: vec![0; LATENCY_BUCKETS_MS.len()] };
        let report = MirrorReport { primary: empty(), mirror: empty(), ..MirrorReport::default() };
        MirrorState { spec, acc: 0, in_flight: 0, report, next: 0 }
    }

    /// Whether this request is one of the share to copy.
    pub(crate) fn due(&mut self) -> bool {
        self.acc += self.spec.percent.min(100);
        if self.acc >= 100 {
            self.acc -= 100;
            return true;
        }
        false
    }

    /// Takes a slot for a copy to `healthy` targets (round-robin), or counts a skip.
    pub(crate) fn take(&mut self, healthy: &[SocketAddr]) -> Option<SocketAddr> {
        if healthy.is_empty() || self.in_flight >= MAX_IN_FLIGHT {
            self.report.skipped += 1;
            return None;
        }
        self.in_flight += 1;
        let addr = healthy[self.next % healthy.len()];
        self.next = self.next.wrapping_add(1);
        Some(addr)
    }

    pub(crate) fn skip(&mut self) {
        self.report.skipped += 1;
    }

    /// Records one compared pair (status 502 stands for a failed connection).
    fn record(&mut self, what: &str, primary: (u16, Duration), mirror: (u16, Duration)) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let r = &mut self.report;
        r.mirrored += 1;
        add(&mut r.primary, primary);
        add(&mut r.mirror, mirror);
        if primary.0 != mirror.0 {
            r.status_mismatches += 1;
            if r.mismatch_samples.len() < SAMPLES {
                r.mismatch_samples.push(format!("{what}: primary {}, mirror {}", primary.0, mirror.0));
            }
        }
    }

    fn abandon(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.report.skipped += 1;
    }
}

fn add(stats: &mut TrafficStats, (status, elapsed): (u16, Duration)) {
    stats.requests += 1;
    if status >= 500 {
        stats.errors += 1;
    }
    let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    let i = LATENCY_BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(LATENCY_BUCKETS_MS.len() - 1);
    stats.latency_buckets[i] += 1;
}

/// Whether a request's body is small enough to buffer (by its declared length; a
/// chunked body of unknown length is not copied).
pub(crate) fn bufferable(parts: &hyper::http::request::Parts) -> bool {
    let declared = parts.headers.get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(n) => n <= MAX_BODY,
        None => !parts.headers.contains_key(hyper::header::TRANSFER_ENCODING),
    }
}

/// A copy of the request for `addr`, with the buffered body.
pub(crate) fn copy(parts: &hyper::http::request::Parts, addr: SocketAddr, body: Bytes) -> Option<Request<Body>> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut b = Request::builder().method(parts.method.clone()).uri(format!("http://{addr}{path}"));
    for (k, v) in &parts.headers {
        if k != hyper::header::CONNECTION {
            b = b.header(k, v);
        }
    }
    b.body(super::lb::full(body)).ok()
}

/// Sends the copy, waits for the primary's answer, and records the pair.
pub(crate) fn send(
    bal: Balancers,
    service: String,
    client: Upstream,
    what: String,
    copy: Request<Body>,
    primary: tokio::sync::oneshot::Receiver<(u16, Duration)>,
) {
    tokio::spawn(async move {
        let start = Instant::now();
        let mirrored = match client.request(copy).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let elapsed = start.elapsed();
                // The answer is read to the end (keeping the connection reusable), then dropped.
                let _ = resp.into_body().collect().await;
                (status, elapsed)
            }
            Err(_) => (502, start.elapsed()),
        };
        match primary.await {
            Ok(p) => bal.with_mirror(&service, |m| m.record(&what, p, mirrored)),
            Err(_) => bal.with_mirror(&service, MirrorState::abandon),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_copied_is_exact() {
        for percent in [1, 10, 25, 33, 50, 100] {
            let mut m = MirrorState::new(Mirror { target_group: "tg".into(), percent });
            let copied = (0..1000).filter(|_| m.due()).count();
            assert_eq!(copied, percent as usize * 10, "{percent}%");
        }
    }

    #[test]
    fn mismatches_and_latency_are_compared() {
        let mut m = MirrorState::new(Mirror { target_group: "tg".into(), percent: 100 });
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(m.take(&[addr]), Some(addr));
        }
        m.record("GET /a", (200, Duration::from_millis(3)), (200, Duration::from_millis(40)));
        m.record("GET /b", (200, Duration::from_millis(3)), (500, Duration::from_millis(4)));
        m.abandon();
        assert_eq!(m.take(&[]), None);
        let r = &m.report;
        assert_eq!((r.mirrored, r.skipped, r.status_mismatches), (2, 2, 1));
        assert_eq!(r.mismatch_samples, ["GET /b: primary 200, mirror 500"]);
        assert_eq!((r.primary.errors, r.mirror.errors), (0, 1));
        assert!(r.mirror.percentile_ms(0.95) > r.primary.percentile_ms(0.95));
    }
}
