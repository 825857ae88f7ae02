//! Prometheus metrics: requests by route and status, latency histograms by route,
//! and the index's size and age.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Counters and histograms.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    /// Counts one request.
    pub fn observe(&self, route: &str, status: u16, took: Duration) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((route.to_owned(), status)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(route.to_owned()).or_default();
            if h.counts.is_empty() {
                h.counts = vec![0; BUCKETS.len()];
            }
            let s = took.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if s <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += s;
            h.count += 1;
        }
    }

    /// The text exposition format.
    pub fn render(&self, index: &crate::index::Snapshot, now_ms: u64) -> String {
        let mut out = String::new();
        out.push_str("# HELP skiffd_requests_total Requests answered, by route and HTTP status.\n");
        out.push_str("# TYPE skiffd_requests_total counter\n");
        if let Ok(r) = self.requests.lock() {
            for ((route, status), n) in r.iter() {
                let _ = writeln!(out, "skiffd_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
            }
        }
        out.push_str("# HELP skiffd_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE skiffd_request_duration_seconds histogram\n");
        if let Ok(l) = self.latency.lock() {
            for (route, h) in l.iter() {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "skiffd_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "skiffd_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(out, "skiffd_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
                let _ = writeln!(out, "skiffd_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
            }
        }
        let gauges = [
            ("skiffd_index_services", "Services in the index.", index.services.len() as f64),
            ("skiffd_index_operations", "Operations in the index.", index.operations.len() as f64),
            ("skiffd_index_build_seconds", "How long the last index build took.", index.build_ms as f64 / 1000.0),
            (
                "skiffd_index_age_seconds",
                "Seconds since the index was built.",
                now_ms.saturating_sub(index.built_at_ms) as f64 / 1000.0,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}
