//! The tracer provider: always present (ids for intents and log lines), exporting over
//! OTLP/HTTP only when the standard `OTEL_*` variables ask for it; and the bounded
//! shutdown.

use std::time::Duration;

use opentelemetry_otlp::{RetryPolicy, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Where spans go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exporting {
    /// Nowhere: no endpoint is set (or the SDK is disabled).
    Off,
    /// OTLP over HTTP/protobuf to the collector the variables name.
    Otlp,
    /// An endpoint is set but the exporter could not be built (why); nothing is exported.
    Refused(String),
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn wanted() -> bool {
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let none = var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    let endpoint = var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
    endpoint && !disabled && !none
}

/// Whether the variables ask for OTLP over gRPC, which this build does not speak (it
/// would otherwise send HTTP to a gRPC port and lose every span without a word).
fn grpc_asked() -> bool {
    ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"]
        .iter()
        .find_map(|k| var(k))
        .is_some_and(|p| p.eq_ignore_ascii_case("grpc"))
}

/// The provider for `service`, with a batch exporter when one is wanted.
pub(crate) fn provider(service: &'static str) -> (SdkTracerProvider, Exporting) {
    let resource = Resource::builder().with_service_name(service).build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    if !wanted() {
        return (builder.build(), Exporting::Off);
    }
    if grpc_asked() {
        let why = "OTEL_EXPORTER_OTLP_PROTOCOL asks for grpc; Skiff exports OTLP over http/protobuf: set it to \
                   http/protobuf and point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port (4318)";
        return (builder.build(), Exporting::Refused(why.to_owned()));
    }
    match opentelemetry_otlp::SpanExporter::builder().with_http().with_retry_policy(retries()).build() {
        Ok(exporter) => (builder.with_batch_exporter(exporter).build(), Exporting::Otlp),
        Err(e) => (
            builder.build(),
            Exporting::Refused(format!(
                "{e} (Skiff exports OTLP over http/protobuf, e.g. OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318)"
            )),
        ),
    }
}

/// Two quick retries (50 ms, then up to 200 ms): a collector that blinks is retried, a
/// collector that is gone costs a command about a quarter of a second at exit, not the
/// recommended policy's second and more per exporter.
fn retries() -> RetryPolicy {
    RetryPolicy::recommended()
        .with_max_retries(2)
        .with_initial_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_millis(200))
}

/// The meter provider exporting Skiff's metrics over OTLP/HTTP every
/// `OTEL_METRIC_EXPORT_INTERVAL` (60 s) and at shutdown, when spans are exported and
/// `OTEL_METRICS_EXPORTER` is not `none`.
pub(crate) fn meters(service: &'static str) -> Option<SdkMeterProvider> {
    if !wanted() || grpc_asked() || var("OTEL_METRICS_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")) {
        return None;
    }
    let exporter =
        opentelemetry_otlp::MetricExporter::builder().with_http().with_retry_policy(retries()).build().ok()?;
    let resource = Resource::builder().with_service_name(service).build();
    Some(SdkMeterProvider::builder().with_resource(resource).with_periodic_exporter(exporter).build())
}

/// Shuts `provider` down on a thread of its own and waits at most `bound` for it: a
/// collector that does not answer never holds the process.
pub(crate) fn shutdown(provider: SdkTracerProvider, meters: Option<SdkMeterProvider>, bound: Duration) {
    let (done, wait) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().name("otel-shutdown".into()).spawn(move || {
        // Side by side: each exporter's wait counts once, not twice.
        let metrics = meters.map(|m| std::thread::spawn(move || m.shutdown_with_timeout(bound)));
        let _ = provider.shutdown_with_timeout(bound);
        if let Some(m) = metrics {
            let _ = m.join();
        }
        let _ = done.send(());
    });
    if spawned.is_err() {
        return;
    }
    // Waits on the system clock (skiff-clock owns real waiting), a few ms at a time.
    use skiff_clock::Clock as _;
    let clock = skiff_clock::SystemClock;
    let deadline = clock.now_ms().saturating_add(u64::try_from(bound.as_millis()).unwrap_or(u64::MAX));
    while matches!(wait.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)) && clock.now_ms() < deadline {
        skiff_clock::SystemClock::block_for(Duration::from_millis(5));
    }
}
