//! W3C trace context across processes: an operation's intent records where its trace
//! is, a resumed operation continues it, child processes get `TRACEPARENT`.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A span's place in a trace, as W3C trace context headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Carrier {
    /// `00-<trace id>-<span id>-<flags>`.
    pub traceparent: String,
    /// Vendor state, often empty.
    pub tracestate: Option<String>,
}

impl Carrier {
    /// The trace id (32 hex digits) of a well-formed `traceparent`.
    pub fn trace_id(&self) -> Option<&str> {
        let mut parts = self.traceparent.split('-');
        let (_version, id) = (parts.next()?, parts.next()?);
        (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
    }

    /// The context of `TRACEPARENT`/`TRACESTATE` in this process's environment (set by
    /// whoever started it: a CI system, the local supervisor, a launch template).
    pub fn from_env() -> Option<Self> {
        let traceparent = std::env::var("TRACEPARENT").ok().filter(|v| !v.trim().is_empty())?;
        let carrier = Self { traceparent, tracestate: std::env::var("TRACESTATE").ok().filter(|v| !v.is_empty()) };
        carrier.trace_id().is_some().then_some(carrier)
    }
}

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.traceparent = value,
            "tracestate" if !value.is_empty() => self.tracestate = Some(value),
            _ => {}
        }
    }
}

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(&self.traceparent),
            "tracestate" => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// Where `span` is in its trace; `None` when it is not traced (no subscriber, or a span
/// filtered out).
pub fn of_span(span: &tracing::Span) -> Option<Carrier> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = Carrier::default();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    (!carrier.traceparent.is_empty()).then_some(carrier)
}

/// Where the current span is.
pub fn current() -> Option<Carrier> {
    of_span(&tracing::Span::current())
}

/// The trace id (hex) of `span`.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Makes `span` a child of `carrier`'s span: the trace continues in this process.
/// Call it before the span is entered.
pub fn continue_trace(span: &tracing::Span, carrier: &Carrier) {
    let parent = TraceContextPropagator::new().extract(carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// `TRACEPARENT` (and `TRACESTATE`) of the current span, for a child process's
/// environment; empty when the current span is not traced.
pub fn child_env() -> Vec<(&'static str, String)> {
    let Some(c) = current() else { return Vec::new() };
    let mut env = vec![("TRACEPARENT", c.traceparent)];
    env.extend(c.tracestate.map(|s| ("TRACESTATE", s)));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_names_its_trace() {
        let c =
            Carrier { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(), tracestate: None };
        assert_eq!(c.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(Carrier { traceparent: "garbage".into(), tracestate: None }.trace_id(), None);
    }
}
