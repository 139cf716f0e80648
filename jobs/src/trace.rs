//! W3C Trace Context (`traceparent`, version `00`): the API accepts one from the request (or
//! starts a trace), stores its own span's in the job row, the worker runs the job in a child
//! span, and webhooks, emails and events carry it on.

use std::fmt;

/// A parsed `traceparent`: `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: String,
    span_id: String,
    flags: String,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn random_hex(len: usize) -> String {
    let mut hex = String::with_capacity(len);
    while hex.len() < len {
        hex.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    hex.truncate(len);
    hex
}

impl TraceParent {
    /// Parses a header value; `None` for anything the spec says to ignore (wrong lengths,
    /// upper-case hex, the all-zero ids, version `ff`).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four fields; later versions may append more.
        if (version == "00" && parts.next().is_some()) || !is_hex(version, 2) || version == "ff" {
            return None;
        }
        if !is_hex(trace_id, 32) || !is_hex(span_id, 16) || !is_hex(flags, 2) {
            return None;
        }
        if trace_id.bytes().all(|b| b == b'0') || span_id.bytes().all(|b| b == b'0') {
            return None;
        }
        Some(TraceParent {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            flags: flags.to_owned(),
        })
    }

    /// A new trace (sampled), for a request or job that arrived without one.
    pub fn new_root() -> Self {
        TraceParent {
            trace_id: random_hex(32),
            span_id: random_hex(16),
            flags: "01".into(),
        }
    }

    /// A span of the same trace whose parent is this one (of the flags, only `sampled` carries
    /// on: the spec has a child zero the bits it does not know).
    pub fn child(&self) -> Self {
        let sampled = u8::from_str_radix(&self.flags, 16).unwrap_or(0) & 0x01;
        TraceParent {
            trace_id: self.trace_id.clone(),
            span_id: random_hex(16),
            flags: format!("{sampled:02x}"),
        }
    }

    /// The trace id (32 lower-case hex digits).
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// This span's id (16 lower-case hex digits).
    pub fn span_id(&self) -> &str {
        &self.span_id
    }

    /// Whether the trace is sampled (the caller's decision, kept by every child).
    pub fn sampled(&self) -> bool {
        u8::from_str_radix(&self.flags, 16).is_ok_and(|f| f & 0x01 == 0x01)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

/// What a span was: a request the API served, or a job attempt a worker ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// An HTTP request served.
    Server,
    /// A job attempt run (a consumer of the queue).
    Consumer,
}

/// A span that has ended, for an exporter: its ids are the ones logged and propagated, so an
/// exported trace joins the log lines and the outgoing `traceparent` headers.
#[derive(Debug, Clone)]
pub struct FinishedSpan {
    /// This span (trace id, span id, flags).
    pub context: TraceParent,
    /// The span it is a child of, if any (the caller's, or the submitting request's).
    pub parent_span_id: Option<String>,
    /// Its name, e.g. `POST` or `job notification.webhook`.
    pub name: String,
    /// Server or consumer.
    pub kind: SpanKind,
    /// When it started.
    pub start: std::time::SystemTime,
    /// When it ended.
    pub end: std::time::SystemTime,
    /// Its attributes (OpenTelemetry semantic names where there are some).
    pub attributes: Vec<(&'static str, String)>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Where finished spans go: the binary installs an OTLP exporter when one is configured.
pub trait SpanExporter: Send + Sync + 'static {
    /// Takes one span; must not block (exporters batch in the background).
    fn export(&self, span: FinishedSpan);
}

static EXPORTER: std::sync::OnceLock<Box<dyn SpanExporter>> = std::sync::OnceLock::new();

/// Installs the process's exporter; `false` if one is installed already.
pub fn install_exporter(exporter: Box<dyn SpanExporter>) -> bool {
    EXPORTER.set(exporter).is_ok()
}

/// Whether spans are exported (build a [`FinishedSpan`] only then).
pub fn exporting() -> bool {
    EXPORTER.get().is_some()
}

/// Hands `span` to the installed exporter, if any.
pub fn export(span: FinishedSpan) {
    if let Some(exporter) = EXPORTER.get() {
        exporter.export(span);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_spec_example() {
        let t = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id(), "00f067aa0ba902b7");
        assert_eq!(t.to_string(), EXAMPLE);
    }

    #[test]
    fn refuses_what_the_spec_says_to_ignore() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        // A later version may carry more fields.
        assert!(TraceParent::parse(&format!("01{}-more", &EXAMPLE[2..])).is_some());
    }

    #[test]
    fn children_keep_the_trace_and_get_a_new_span() {
        let parent = TraceParent::parse(EXAMPLE).unwrap();
        let child = parent.child();
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
        assert!(TraceParent::parse(&child.to_string()).is_some());
        let unknown_bits = TraceParent::parse(&EXAMPLE.replace("-01", "-ff")).unwrap();
        assert!(unknown_bits.child().to_string().ends_with("-01"));
        assert!(parent.sampled() && child.sampled());
        let unsampled = TraceParent::parse(&EXAMPLE.replace("-01", "-00")).unwrap();
        assert!(
            !unsampled.child().sampled(),
            "a caller's unsampled decision carries on"
        );
        let root = TraceParent::new_root();
        assert!(TraceParent::parse(&root.to_string()).is_some());
        assert_ne!(root.trace_id(), TraceParent::new_root().trace_id());
    }
}
