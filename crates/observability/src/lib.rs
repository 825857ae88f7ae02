//! One logging and tracing setup for `skiff`, `skiffd`, `skiff-worker` and
//! `skiff-runner`.
//!
//! - Every log line goes through `tracing`: the `SKIFF_LOG` filter (`info`,
//!   `warn,skiff_saga=debug` …), text or JSON lines on stderr ([`LogFormat`]).
//! - Spans of Skiff's crates (targets starting with `skiff`) become OpenTelemetry spans.
//!   Trace and span ids always exist, so an operation records its trace in its intent
//!   and log lines carry it; spans leave the process only when the standard variables
//!   ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//!   OTLP over HTTP/protobuf, the specification's default; `OTEL_SDK_DISABLED=true` and
//!   `OTEL_TRACES_EXPORTER=none` turn it off).
//! - [`metrics`]: step durations, CAS conflicts, store retries, lease takeovers,
//!   canary and reconcile verdicts, the runner's gauges — OTLP metrics beside the
//!   spans, and Prometheus text for skiffd's `/metrics`.
//! - [`Telemetry::shutdown`] flushes what is buffered within [`FLUSH_BOUND`], whatever
//!   the collector does, on any runtime flavour (it waits on a thread of its own).
//! - W3C trace context ([`Carrier`]) crosses processes: the intent of an operation, the
//!   `TRACEPARENT`/`TRACESTATE` environment of child processes ([`child_env`]).

mod context;
mod export;
pub mod metrics;

use std::io::IsTerminal;
use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter::Targets};

pub use context::{Carrier, child_env, continue_trace, current, of_span, trace_id};
pub use export::Exporting;

/// How long [`Telemetry::shutdown`] waits for buffered spans to reach the collector.
pub const FLUSH_BOUND: Duration = Duration::from_secs(2);

/// The shape of log lines on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-12-07T10:00:00.000Z  INFO skiffd: listening addr=…`, with span context.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, fields and the spans' fields
    /// (`op`, `trace_id` …).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("log format `{other}`: write `text` or `json`")),
        }
    }
}

/// What a binary asks of [`init`].
#[derive(Clone, Debug)]
pub struct Setup {
    /// `service.name` of the exported spans: `skiff`, `skiffd`, `skiff-worker`, `skiff-runner`.
    pub service: &'static str,
    /// The filter when `SKIFF_LOG` is unset, e.g. `skiff=warn` or `info`.
    pub default_filter: &'static str,
    /// Text or JSON lines.
    pub format: LogFormat,
}

/// The installed setup; [`Telemetry::shutdown`] (or dropping it) flushes the spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    meters: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
    exporting: Exporting,
}

/// Installs the global subscriber: the log layer (filtered by `SKIFF_LOG`) and the
/// OpenTelemetry layer (Skiff's spans). A second call in the same process (tests)
/// keeps the first subscriber and returns a setup that exports nothing.
pub fn init(setup: &Setup) -> Telemetry {
    let (filter, bad_filter) = match skiff_settings::LOG.from_process() {
        Some(text) => match EnvFilter::builder().parse(&text) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new(setup.default_filter), Some(format!("SKIFF_LOG `{text}`: {e}"))),
        },
        None => (EnvFilter::new(setup.default_filter), None),
    };
    let (provider, exporting) = export::provider(setup.service);
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, setup.service);
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        // Skiff's spans, and the AWS SDK's one span per API call (`EC2.DescribeInstances`,
        // at debug level) as the provider calls under a step.
        .with_filter(
            Targets::new().with_target("skiff", tracing::Level::INFO).with_target("aws_sdk_", tracing::Level::DEBUG),
        );
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let lines = match setup.format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(false)
            .with_span_list(true)
            .flatten_event(true)
            .boxed(),
    };
    let installed = tracing_subscriber::registry().with(spans).with(lines.with_filter(filter)).try_init().is_ok();
    if let Some(why) = bad_filter {
        tracing::warn!(target: "skiff", "{why}; using `{}`", setup.default_filter);
    }
    if !installed {
        let _ = provider.shutdown();
        return Telemetry { provider: None, meters: None, exporting: Exporting::Off };
    }
    if let Exporting::Refused(why) = &exporting {
        tracing::warn!(target: "skiff", "OpenTelemetry export is off: {why}");
    }
    let meters = export::meters(setup.service);
    if let Some(m) = &meters {
        opentelemetry::global::set_meter_provider(m.clone());
    }
    Telemetry { provider: Some(provider), meters, exporting }
}

impl Telemetry {
    /// Where spans go.
    pub fn exporting(&self) -> &Exporting {
        &self.exporting
    }

    /// Flushes buffered spans and stops the exporter, waiting at most [`FLUSH_BOUND`].
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            export::shutdown(provider, self.meters.take(), FLUSH_BOUND);
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}
