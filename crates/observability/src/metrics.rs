//! Skiff's own metrics, recorded once and read two ways: as OpenTelemetry instruments
//! (exported over OTLP with the spans when `OTEL_EXPORTER_OTLP_ENDPOINT` is set) and
//! as Prometheus text ([`prometheus`]) for skiffd's `/metrics` and skiff-worker's
//! `--metrics-listen`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock, PoisonError};

use opentelemetry::KeyValue;

/// Upper bounds of the step duration histogram, seconds.
const BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];

/// Counted events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counter {
    /// A compare-and-swap write lost to another writer and was tried again.
    CasConflicts,
    /// A store request retried after a transient failure.
    StoreRetries,
    /// A lease taken over from a holder that let it lapse.
    LeaseTakeovers,
    /// A canary analysis verdict (`verdict`: pass, fail, inconclusive).
    CanaryVerdicts,
    /// A reconcile verdict (`status`: IN_SYNC, DRIFTED).
    ReconcileVerdicts,
}

impl Counter {
    fn name(self) -> &'static str {
        match self {
            Counter::CasConflicts => "skiff_cas_conflicts_total",
            Counter::StoreRetries => "skiff_store_retries_total",
            Counter::LeaseTakeovers => "skiff_lease_takeovers_total",
            Counter::CanaryVerdicts => "skiff_canary_verdicts_total",
            Counter::ReconcileVerdicts => "skiff_reconcile_verdicts_total",
        }
    }

    fn otel(self) -> &'static str {
        match self {
            Counter::CasConflicts => "skiff.state.cas_conflicts",
            Counter::StoreRetries => "skiff.store.retries",
            Counter::LeaseTakeovers => "skiff.lease.takeovers",
            Counter::CanaryVerdicts => "skiff.canary.verdicts",
            Counter::ReconcileVerdicts => "skiff.reconcile.verdicts",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Counter::CasConflicts => "Compare-and-swap writes that lost to another writer and were tried again.",
            Counter::StoreRetries => "Object store requests retried after a transient failure.",
            Counter::LeaseTakeovers => "Leases taken over from a holder that let them lapse.",
            Counter::CanaryVerdicts => "Canary analysis verdicts, by verdict.",
            Counter::ReconcileVerdicts => "Reconcile verdicts, by status.",
        }
    }
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Registry {
    counters: BTreeMap<(Counter, Labels), u64>,
    steps: BTreeMap<Labels, Histogram>,
    gauges: BTreeMap<(&'static str, Labels), (f64, &'static str)>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Mutex::default)
}

fn meter() -> opentelemetry::metrics::Meter {
    opentelemetry::global::meter("skiff")
}

fn attributes(labels: &[(&'static str, String)]) -> Vec<KeyValue> {
    labels.iter().map(|(k, v)| KeyValue::new(*k, v.clone())).collect()
}

fn owned(labels: &[(&'static str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// Counts one `counter` event with `labels`.
pub fn count(counter: Counter, labels: &[(&'static str, &str)]) {
    let labels = owned(labels);
    meter().u64_counter(counter.otel()).build().add(1, &attributes(&labels));
    *registry().lock().unwrap_or_else(PoisonError::into_inner).counters.entry((counter, labels)).or_default() += 1;
}

/// Records how long one step attempt took (`skiff.step.duration`, seconds) by kind
/// and outcome.
pub fn step(kind: &str, outcome: &str, seconds: f64) {
    let labels = owned(&[("kind", kind), ("outcome", outcome)]);
    meter().f64_histogram("skiff.step.duration").with_unit("s").build().record(seconds, &attributes(&labels));
    let mut r = registry().lock().unwrap_or_else(PoisonError::into_inner);
    let h = r.steps.entry(labels).or_default();
    if h.counts.is_empty() {
        h.counts = vec![0; BUCKETS.len()];
    }
    for (i, b) in BUCKETS.iter().enumerate() {
        if seconds <= *b {
            h.counts[i] += 1;
        }
    }
    h.sum += seconds;
    h.count += 1;
}

/// Sets a gauge (e.g. the runner's `skiff_runner_rss_bytes`); `name` is the Prometheus
/// name, the OpenTelemetry name is the same with dots.
pub fn gauge(name: &'static str, help: &'static str, value: f64, labels: &[(&'static str, &str)]) {
    let labels = owned(labels);
    meter().f64_gauge(name.replace('_', ".")).build().record(value, &attributes(&labels));
    registry().lock().unwrap_or_else(PoisonError::into_inner).gauges.insert((name, labels), (value, help));
}

fn render_labels(labels: &[(&'static str, String)], extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    parts.extend(extra.map(|(k, v)| format!("{k}=\"{v}\"")));
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Everything recorded in this process, in the Prometheus text format.
pub fn prometheus() -> String {
    let r = registry().lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = String::new();
    let _ = writeln!(out, "# HELP skiff_step_duration_seconds Step attempts, by kind and outcome.");
    let _ = writeln!(out, "# TYPE skiff_step_duration_seconds histogram");
    for (labels, h) in &r.steps {
        for (i, b) in BUCKETS.iter().enumerate() {
            let l = render_labels(labels, Some(("le", b.to_string())));
            let _ = writeln!(out, "skiff_step_duration_seconds_bucket{l} {}", h.counts[i]);
        }
        let l = render_labels(labels, Some(("le", "+Inf".to_owned())));
        let _ = writeln!(out, "skiff_step_duration_seconds_bucket{l} {}", h.count);
        let l = render_labels(labels, None);
        let _ = writeln!(out, "skiff_step_duration_seconds_sum{l} {}", h.sum);
        let _ = writeln!(out, "skiff_step_duration_seconds_count{l} {}", h.count);
    }
    let mut last = None;
    for ((counter, labels), n) in &r.counters {
        if last != Some(*counter) {
            let _ = writeln!(out, "# HELP {} {}\n# TYPE {} counter", counter.name(), counter.help(), counter.name());
            last = Some(*counter);
        }
        let _ = writeln!(out, "{}{} {n}", counter.name(), render_labels(labels, None));
    }
    let mut last = None;
    for ((name, labels), (v, help)) in &r.gauges {
        if last != Some(*name) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            last = Some(*name);
        }
        let _ = writeln!(out, "{name}{} {v}", render_labels(labels, None));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_recorded_renders_as_prometheus_text() {
        step("deploy.shift", "succeeded", 0.2);
        step("deploy.shift", "succeeded", 3.0);
        count(Counter::CanaryVerdicts, &[("verdict", "pass")]);
        count(Counter::CanaryVerdicts, &[("verdict", "pass")]);
        count(Counter::CasConflicts, &[]);
        gauge("skiff_runner_rss_bytes", "Resident memory.", 1024.0, &[("instance", "i-1")]);
        let text = prometheus();
        assert!(
            text.contains(
                "skiff_step_duration_seconds_bucket{kind=\"deploy.shift\",outcome=\"succeeded\",le=\"0.25\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("skiff_step_duration_seconds_count{kind=\"deploy.shift\",outcome=\"succeeded\"} 2"),
            "{text}"
        );
        assert!(text.contains("skiff_canary_verdicts_total{verdict=\"pass\"} 2"), "{text}");
        assert!(text.contains("skiff_cas_conflicts_total 1"), "{text}");
        assert!(
            text.contains("# TYPE skiff_runner_rss_bytes gauge\nskiff_runner_rss_bytes{instance=\"i-1\"} 1024"),
            "{text}"
        );
    }
}
