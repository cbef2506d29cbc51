//! Traces: one trace per request, from the admin API's HTTP span through the call, the
//! component's initialisation, the worker round trip and the plugin's own spans, exported
//! over OTLP (HTTP with protobuf or JSON, or gRPC) with `opentelemetry-otlp`.
//!
//! Off by default, and then a call's span costs one atomic load (no span is made) and
//! the other spans a disabled callsite each (the host's spans use target
//! [`SPAN_TARGET`] at trace level, which no log filter enables by default). On, a
//! `tracing-opentelemetry` layer turns the host's spans into OpenTelemetry spans, and the
//! spans a plugin records (plugin-api 0.1.3) are exported with the ids the plugin gave
//! them, as children of the host's span for their call.

use std::{
    cell::Cell,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, UNIX_EPOCH},
};

use opentelemetry::{
    trace::{
        Span as _, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
        Tracer as _, TracerProvider as _,
    },
    Context, KeyValue,
};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{filter::Targets, Layer};

mod settings;

pub use self::settings::{TelemetryError, TelemetrySettings};
use crate::call_context::Trace;
pub use crate::config::OtlpProtocol;

/// The target of the host's spans: only the OpenTelemetry layer listens to it.
pub const SPAN_TARGET: &str = "plugin_host::trace";

/// Whether spans are exported (a layer was installed).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported now.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The exporting pipeline; [`Self::shutdown`] (or dropping it) sends what is buffered.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    /// gRPC's: the runtime its channel lives on (the batch exporter's own thread waits
    /// on it).
    runtime: Option<tokio::runtime::Runtime>,
}

impl Telemetry {
    /// Starts exporting with `settings` and returns the pipeline and the layer that feeds
    /// it the host's spans (add it to the program's subscriber).
    ///
    /// # Errors
    ///
    /// The exporter could not be built.
    pub fn start<S>(settings: &TelemetrySettings) -> Result<(Self, impl Layer<S>), TelemetryError>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        // An https:// collector needs the TLS library's cryptography chosen.
        plugin_host_oci::install_tls_provider();
        let failed =
            |err: &dyn std::fmt::Display| TelemetryError(format!("{}: {err}", settings.traces_url));
        let runtime = match settings.protocol {
            OtlpProtocol::Grpc => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("otlp-grpc")
                    .enable_all()
                    .build()
                    .map_err(|err| failed(&err))?,
            ),
            OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => None,
        };
        // gRPC's channel is made on its runtime, and so the provider that holds it.
        let built = {
            let _on_runtime = runtime.as_ref().map(tokio::runtime::Runtime::enter);
            exporter(settings).map(|exporter| provider(settings, exporter))
        };
        let provider = match built {
            Ok(provider) => provider,
            Err(err) => {
                // Dropped on an async thread (an embedder's), a runtime would panic.
                if let Some(runtime) = runtime {
                    runtime.shutdown_background();
                }
                return Err(failed(&err));
            }
        };
        opentelemetry::global::set_tracer_provider(provider.clone());
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("plugin-host"))
            .with_filter(
                Targets::new()
                    .with_target(SPAN_TARGET, tracing::Level::TRACE)
                    .with_target(crate::PLUGIN_LOG_TARGET, tracing::Level::INFO),
            );
        ENABLED.store(true, Ordering::Relaxed);
        Ok((Self { provider, runtime }, layer))
    }

    /// Sends every span still buffered and stops exporting.
    pub fn shutdown(mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "telemetry: the last spans could not be sent");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Dropped on an async thread, a runtime would panic: let it go in the background.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The provider that samples as `settings` says and hands spans to `exporter` in batches.
fn provider(
    settings: &TelemetrySettings,
    exporter: opentelemetry_otlp::SpanExporter,
) -> SdkTracerProvider {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_id_generator(PluginIds)
        .with_resource(resource)
        .build()
}

/// The OTLP exporter `settings` asks for.
fn exporter(
    settings: &TelemetrySettings,
) -> Result<opentelemetry_otlp::SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    let timeout = Duration::from_secs(10);
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let protocol = match settings.protocol {
        OtlpProtocol::Grpc => {
            let mut grpc = builder
                .with_tonic()
                .with_endpoint(settings.traces_url.clone())
                .with_timeout(timeout);
            if settings.traces_url.starts_with("https://") {
                let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
                if let Some(pem) = &settings.certificate {
                    tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
                }
                grpc = grpc.with_tls_config(tls);
            }
            return grpc.build();
        }
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::HttpJson => Protocol::HttpJson,
    };
    let mut http = builder
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(settings.traces_url.clone())
        .with_timeout(timeout);
    if let Some(pem) = &settings.certificate {
        http = http.with_http_client(http_client(pem, timeout)?);
    }
    http.build()
}

/// A blocking HTTP client that trusts the certificates in `pem` beside the system's roots.
/// Built on a thread of its own, as the exporter builds its default one: the client runs
/// a runtime of its own, which cannot be made inside a caller's.
fn http_client(
    pem: &[u8],
    timeout: Duration,
) -> Result<reqwest::blocking::Client, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::ExporterBuildError;
    let certificates = reqwest::Certificate::from_pem_bundle(pem).map_err(|err| {
        ExporterBuildError::InvalidConfiguration(format!(
            "certificate: not PEM certificates: {err}"
        ))
    })?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                reqwest::blocking::Client::builder()
                    .timeout(timeout)
                    .tls_certs_merge(certificates)
                    .build()
            })
            .join()
    })
    .map_err(|_| ExporterBuildError::InternalFailure("building the HTTP client panicked".into()))?
    .map_err(|err| ExporterBuildError::InternalFailure(format!("the HTTP client: {err}")))
}

thread_local! {
    /// The id the next span built on this thread takes: a plugin's span keeps its own.
    static NEXT_SPAN_ID: Cell<Option<SpanId>> = const { Cell::new(None) };
}

/// Random ids, except for the plugin spans the host rebuilds, which keep the id the
/// plugin gave them (their children and log records already name it).
#[derive(Debug)]
struct PluginIds;

impl IdGenerator for PluginIds {
    fn new_trace_id(&self) -> TraceId {
        RandomIdGenerator::default().new_trace_id()
    }

    fn new_span_id(&self) -> SpanId {
        NEXT_SPAN_ID
            .with(Cell::take)
            .unwrap_or_else(|| RandomIdGenerator::default().new_span_id())
    }
}

/// The trace context of `span` as a `traceparent`, if it is exported.
pub(crate) fn trace_of(span: &tracing::Span) -> Option<Trace> {
    if !enabled() || span.is_disabled() {
        return None;
    }
    let context = span.context();
    let otel = context.span();
    let ids = otel.span_context();
    ids.is_valid().then(|| Trace {
        parent: format!(
            "00-{}-{}-{:02x}",
            ids.trace_id(),
            ids.span_id(),
            ids.trace_flags().to_u8()
        ),
        state: ids.trace_state().header(),
    })
}

/// Makes `span` a child of the caller's span `trace` (a remote parent).
pub(crate) fn adopt(span: &tracing::Span, trace: &Trace) {
    if !enabled() || span.is_disabled() {
        return;
    }
    let Some((trace_id, span_id)) = ids_of(&trace.parent) else {
        return;
    };
    let flags = if plugin_api::TraceContext::parse(&trace.parent, "").is_some_and(|t| t.sampled()) {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let state = trace
        .state
        .parse()
        .unwrap_or_else(|_| TraceState::default());
    let remote = SpanContext::new(trace_id, span_id, flags, true, state);
    let _ = span.set_parent(Context::new().with_remote_span_context(remote));
}

fn ids_of(traceparent: &str) -> Option<(TraceId, SpanId)> {
    let trace = plugin_api::TraceContext::parse(traceparent, "")?;
    let trace_id = TraceId::from_hex(trace.trace_id()).ok()?;
    let span_id = SpanId::from_hex(trace.parent_span_id()).ok()?;
    Some((trace_id, span_id))
}

/// The span of an admin API request, `route` its name (`POST
/// /components/{name}/call/{method}`), in the client's trace if it sent one.
pub fn request_span(route: &str, options: &crate::CallOptions) -> tracing::Span {
    let span = tracing::trace_span!(
        target: SPAN_TARGET,
        "http request",
        otel.name = route,
        otel.kind = "server",
        http.route = route
    );
    if let Some(trace) = &options.trace {
        adopt(&span, trace);
    }
    span
}

/// The span of one call: nothing but a null pointer when no exporter runs (the default,
/// one atomic load per call), else the exported span.
pub(crate) struct CallSpan(Option<Box<tracing::Span>>);

impl CallSpan {
    /// Runs `f` inside the span (on the thread that serves the call).
    #[inline]
    pub(crate) fn in_scope<T>(self, f: impl FnOnce() -> T) -> T {
        match self.0 {
            None => f(),
            Some(span) => span.in_scope(f),
        }
    }
}

/// The span of a call, and the trace its component sees: the span's own when it is
/// exported, else the caller's as it came.
#[inline]
pub(crate) fn call_span(
    component: &str,
    method: &str,
    options: &crate::CallOptions,
) -> (CallSpan, Option<Trace>) {
    if !enabled() {
        return (CallSpan(None), options.trace.clone());
    }
    exported_call_span(component, method, options)
}

#[cold]
fn exported_call_span(
    component: &str,
    method: &str,
    options: &crate::CallOptions,
) -> (CallSpan, Option<Trace>) {
    let span = tracing::trace_span!(target: SPAN_TARGET, "call", component, method);
    if span.is_disabled() {
        return (CallSpan(None), options.trace.clone());
    }
    if let Some(trace) = &options.trace {
        if tracing::Span::current().is_none() {
            adopt(&span, trace);
        }
    }
    let trace = trace_of(&span).or_else(|| options.trace.clone());
    (CallSpan(Some(Box::new(span))), trace)
}

/// One finished span of plugin code, as the host exports it.
pub(crate) struct PluginSpan<'a> {
    pub(crate) plugin: &'a str,
    pub(crate) component: &'a str,
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) parent_span_id: [u8; 8],
    pub(crate) name: &'a str,
    pub(crate) target: &'a str,
    pub(crate) start_unix_nanos: u64,
    pub(crate) end_unix_nanos: u64,
    pub(crate) fields: &'a str,
}

/// Exports `span`, with the ids the plugin gave it, as a child of its parent.
pub(crate) fn export_plugin_span(span: &PluginSpan<'_>) {
    if !enabled() {
        return;
    }
    let trace_id = TraceId::from_bytes(span.trace_id);
    let parent = SpanContext::new(
        trace_id,
        SpanId::from_bytes(span.parent_span_id),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    if !parent.is_valid() || span.span_id == [0; 8] {
        return;
    }
    let at = |nanos: u64| UNIX_EPOCH + Duration::from_nanos(nanos);
    let tracer = opentelemetry::global::tracer("plugin");
    let builder = tracer
        .span_builder(kept(span.name, SPAN_NAME_AT_MOST))
        .with_kind(SpanKind::Internal)
        .with_start_time(at(span.start_unix_nanos))
        .with_attributes([
            KeyValue::new("plugin", span.plugin.to_owned()),
            KeyValue::new("component", span.component.to_owned()),
            KeyValue::new("code.namespace", kept(span.target, SPAN_NAME_AT_MOST)),
            KeyValue::new("fields", kept(span.fields, SPAN_FIELDS_AT_MOST)),
        ]);
    NEXT_SPAN_ID.with(|next| next.set(Some(SpanId::from_bytes(span.span_id))));
    let mut built =
        tracer.build_with_context(builder, &Context::new().with_remote_span_context(parent));
    NEXT_SPAN_ID.with(Cell::take);
    built.end_with_timestamp(at(span.end_unix_nanos.max(span.start_unix_nanos)));
}

/// The most characters of a plugin span's name and target the host exports.
const SPAN_NAME_AT_MOST: usize = 256;

/// The most characters of a plugin span's fields the host exports: spans are not
/// rate-limited as log records are, and wait in the exporter's queue (2,048 of them).
const SPAN_FIELDS_AT_MOST: usize = 4096;

/// `text`, a plugin's, cut to `at_most` characters.
fn kept(text: &str, at_most: usize) -> String {
    crate::util::cut_to(text, at_most).into_owned()
}

/// A W3C `traceparent`'s trace id and span id as hex, for log fields.
pub(crate) fn hex_ids(trace_id: &[u8; 16], span_id: &[u8; 8]) -> (String, String) {
    (
        TraceId::from_bytes(*trace_id).to_string(),
        SpanId::from_bytes(*span_id).to_string(),
    )
}
