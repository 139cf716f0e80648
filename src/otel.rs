//! OTLP export of the spans PySaaS makes (an API request, a job attempt), when
//! `otlp_endpoint` is set: OpenTelemetry's SDK with its OTLP/HTTP (protobuf) exporter, batched
//! on a background thread. Spans keep the ids PySaaS logs and propagates (`jobs::trace`), so an
//! exported trace joins the JSON log lines and the `traceparent` headers of webhooks and emails.

use anyhow::{Context as _, Result};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig as _;
use pysaas_jobs::trace::{FinishedSpan, SpanExporter, SpanKind};

/// Flushes the batched spans when dropped (at the end of `main`).
#[must_use = "spans are flushed when the guard is dropped"]
#[derive(Debug)]
pub struct OtlpGuard {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "OTLP: spans not all flushed");
        }
    }
}

struct Otlp {
    tracer: opentelemetry_sdk::trace::SdkTracer,
}

thread_local! {
    /// The ids the next span started on this thread gets (set around `start_with_context`).
    static GIVEN: std::cell::Cell<Option<(TraceId, SpanId)>> = const { std::cell::Cell::new(None) };
}

/// Sets the ids the next span on this thread gets; clears them when dropped (also on unwind).
struct Given;

impl Given {
    fn set(trace: TraceId, span: SpanId) -> Given {
        GIVEN.set(Some((trace, span)));
        Given
    }
}

impl Drop for Given {
    fn drop(&mut self) {
        GIVEN.set(None);
    }
}

/// The SDK asks its id generator for a span's ids while starting it, on the starting thread:
/// this one answers with the ids PySaaS already gave the span (falling back to random ones).
#[derive(Debug, Default)]
struct GivenIds(opentelemetry_sdk::trace::RandomIdGenerator);

impl opentelemetry_sdk::trace::IdGenerator for GivenIds {
    fn new_trace_id(&self) -> TraceId {
        GIVEN
            .get()
            .map_or_else(|| self.0.new_trace_id(), |(trace, _)| trace)
    }

    fn new_span_id(&self) -> SpanId {
        GIVEN
            .get()
            .map_or_else(|| self.0.new_span_id(), |(_, span)| span)
    }
}

impl SpanExporter for Otlp {
    fn export(&self, span: FinishedSpan) {
        // The caller decided not to sample this trace: its spans stay unexported.
        if !span.context.sampled() {
            return;
        }
        let (Ok(trace_id), Ok(span_id)) = (
            TraceId::from_hex(span.context.trace_id()),
            SpanId::from_hex(span.context.span_id()),
        ) else {
            return;
        };
        let parent = match span
            .parent_span_id
            .as_deref()
            .and_then(|p| SpanId::from_hex(p).ok())
        {
            Some(parent) => {
                opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
                    trace_id,
                    parent,
                    TraceFlags::SAMPLED,
                    true,
                    TraceState::default(),
                ))
            }
            None => opentelemetry::Context::new(),
        };
        let builder = self
            .tracer
            .span_builder(span.name)
            .with_kind(match span.kind {
                SpanKind::Server => opentelemetry::trace::SpanKind::Server,
                SpanKind::Consumer => opentelemetry::trace::SpanKind::Consumer,
            })
            .with_start_time(span.start)
            .with_attributes(
                span.attributes
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, v)),
            );
        let mut exported = {
            let _given = Given::set(trace_id, span_id);
            builder.start_with_context(&self.tracer, &parent)
        };
        if let Some(error) = span.error {
            exported.set_status(Status::error(error));
        }
        exported.end_with_timestamp(span.end);
    }
}

/// Installs the exporter when `endpoint` is set (`http(s)://collector:4318`; spans go to
/// `<endpoint>/v1/traces`), naming the service `service`.
pub fn install(endpoint: Option<&str>, service: &str) -> Result<Option<OtlpGuard>> {
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url.clone())
        .build()
        .with_context(|| format!("the OTLP exporter for {}", crate::config::redact(&url)))?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_id_generator(GivenIds::default())
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("pysaas");
    if pysaas_jobs::trace::install_exporter(Box::new(Otlp { tracer })) {
        tracing::info!(endpoint = %crate::config::redact(&url), service, "exporting spans over OTLP");
    }
    Ok(Some(OtlpGuard { provider }))
}
