//! Telemetry setup for one service, the equivalent of the seed's `setup_tracing`: resource,
//! sampler, batch processor and OTLP exporter, the W3C propagator, and JSON logs.
//!
//! [`init`] installs everything process-wide and returns a [`TelemetryGuard`] that flushes and
//! shuts the provider down when dropped. [`tracer_provider`] builds the provider alone, for
//! tests and benchmarks that install their own subscriber.

use std::fmt;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler,
    SdkTracerProvider, SpanExporter,
};
use opentelemetry_semantic_conventions::resource::{
    DEPLOYMENT_ENVIRONMENT_NAME, SERVICE_INSTANCE_ID, SERVICE_NAMESPACE,
};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::log::JsonLogLayer;
use crate::processors::{
    Counted, CountingExporter, DiscardExporter, Routed, SpanCounts, SpanStats,
};
use crate::propagator::{InvalidContexts, W3cPropagator};
use crate::sampling::Sampling;

/// The legacy resource key the seed's design uses; written beside the current
/// `deployment.environment.name` so dashboards of either generation find it.
const DEPLOYMENT_ENVIRONMENT: &str = "deployment.environment";

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (port 4317 by convention). Needs a Tokio runtime when the exporter is built.
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318 by convention).
    HttpProtobuf,
}

/// Where finished spans go.
#[derive(Clone, Debug, PartialEq)]
pub enum Exporter {
    /// Through the batch processor to an exporter that discards them: all of tracing's cost but
    /// the network, for overhead measurements.
    Discard,
    /// OTLP to a collector, Tempo or the harness's sink.
    Otlp {
        /// Transport.
        protocol: Protocol,
        /// Base endpoint such as `http://127.0.0.1:4318`; `None` reads
        /// `OTEL_EXPORTER_OTLP_ENDPOINT` and then the protocol's default.
        endpoint: Option<String>,
        /// Per-export timeout.
        timeout: Duration,
    },
    /// Into memory, for tests (the `testing` feature).
    #[cfg(feature = "testing")]
    Memory(crate::testing::MemorySpans),
}

/// Batch span processor settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchSettings {
    /// Spans that may wait for export; beyond it, spans are dropped and counted.
    pub max_queue_size: usize,
    /// Spans per export call.
    pub max_export_batch_size: usize,
    /// Longest wait before a partial batch is exported.
    pub scheduled_delay: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            // The SDK's 2048 and 512 dropped 29 % of spans at 2000 scans/s (≈ 25 spans a scan,
            // 50 k spans/s): a 200 ms tick then brings 10 k spans. 64 Ki spans hold more than a
            // second of that; bigger batches need fewer exports per tick.
            max_queue_size: 65_536,
            max_export_batch_size: 4096,
            // The SDK's 5 s default would hold a finished scan's spans back for seconds; a short
            // delay keeps verdicts quick at the cost of smaller batches under light load.
            scheduled_delay: Duration::from_millis(200),
        }
    }
}

/// Log output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line with `trace_id` and `span_id` (the default).
    Json,
    /// No log output.
    None,
}

/// Everything [`init`] needs besides the service name. Build it directly; nothing here reads the
/// environment except the documented OTLP endpoint fallback and `RUST_LOG` when
/// [`TelemetryConfig::log_filter`] is `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct TelemetryConfig {
    /// `service.namespace` (the seed's `eco2`).
    pub service_namespace: String,
    /// `deployment.environment`.
    pub deployment_environment: String,
    /// `service.instance.id`; `None` draws a random one.
    pub service_instance_id: Option<String>,
    /// Sampler.
    pub sampling: Sampling,
    /// Exporter.
    pub exporter: Exporter,
    /// Batch processor settings.
    pub batch: BatchSettings,
    /// Log output.
    pub log_format: LogFormat,
    /// Log filter in `EnvFilter` syntax; `None` uses `RUST_LOG`, then `info`.
    pub log_filter: Option<String>,
    /// CPU burnt for every sampled span as it ends, on the thread that ends it: a known cost
    /// the overhead bench must find again (`tracing.synthetic_span_cost_us`). Zero outside that
    /// self-test.
    pub synthetic_span_cost: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            service_namespace: "eco2".to_owned(),
            deployment_environment: "dev".to_owned(),
            service_instance_id: None,
            sampling: Sampling::AlwaysOn,
            exporter: Exporter::Otlp {
                protocol: Protocol::Grpc,
                endpoint: None,
                timeout: Duration::from_secs(10),
            },
            batch: BatchSettings::default(),
            log_format: LogFormat::Json,
            log_filter: None,
            synthetic_span_cost: Duration::ZERO,
        }
    }
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The OTLP exporter could not be built (bad endpoint, or gRPC outside a Tokio runtime).
    #[error("building the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A multi-service provider was asked for with no service.
    #[error("no service named")]
    NoService,
    /// A sampling ratio outside 0.0–1.0.
    #[error("sampling ratio {0} is outside 0.0..=1.0")]
    Ratio(f64),
    /// The log filter does not parse.
    #[error("log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// A global subscriber was already installed in this process.
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
}

/// The SDK sampler for a [`Sampling`] choice: parent-based around the root decision.
///
/// # Errors
///
/// Fails on a ratio outside 0.0–1.0.
pub fn sampler(sampling: Sampling) -> Result<Sampler, InitError> {
    let root = match sampling {
        Sampling::Off | Sampling::AlwaysOn => Sampler::AlwaysOn,
        Sampling::AlwaysOff => Sampler::AlwaysOff,
        Sampling::Ratio(r) if (0.0..=1.0).contains(&r) => Sampler::TraceIdRatioBased(r),
        Sampling::Ratio(r) => return Err(InitError::Ratio(r)),
    };
    Ok(Sampler::ParentBased(Box::new(root)))
}

fn resource(service_name: &str, config: &TelemetryConfig) -> Resource {
    let instance_id = config
        .service_instance_id
        .clone()
        .unwrap_or_else(|| RandomIdGenerator::default().new_trace_id().to_string());
    Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attributes([
            KeyValue::new(SERVICE_NAMESPACE, config.service_namespace.clone()),
            KeyValue::new(SERVICE_INSTANCE_ID, instance_id),
            KeyValue::new(
                DEPLOYMENT_ENVIRONMENT_NAME,
                config.deployment_environment.clone(),
            ),
            KeyValue::new(
                DEPLOYMENT_ENVIRONMENT,
                config.deployment_environment.clone(),
            ),
        ])
        .build()
}

fn otlp_exporter(
    protocol: Protocol,
    endpoint: Option<&str>,
    timeout: Duration,
) -> Result<opentelemetry_otlp::SpanExporter, InitError> {
    let exporter = match protocol {
        Protocol::Grpc => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_timeout(timeout);
            if let Some(endpoint) = endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            builder.build()?
        }
        Protocol::HttpProtobuf => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_timeout(timeout)
                .with_headers(Default::default());
            if let Some(endpoint) = endpoint {
                // An explicit endpoint is used as-is by the exporter, while the environment
                // variable is a base URL; take a base URL in both places.
                let endpoint = endpoint.trim_end_matches('/');
                builder = builder.with_endpoint(if endpoint.ends_with("/v1/traces") {
                    endpoint.to_owned()
                } else {
                    format!("{endpoint}/v1/traces")
                });
            }
            builder.build()?
        }
    };
    Ok(exporter)
}

fn batch_processor<E: SpanExporter + 'static>(
    services: &[String],
    mut exporter: impl FnMut() -> Result<E, InitError>,
    stats: &SpanStats,
    settings: BatchSettings,
) -> Result<BatchSpanProcessor, InitError> {
    let routes = services
        .iter()
        .map(|s| Ok((s.clone(), exporter()?)))
        .collect::<Result<Vec<_>, InitError>>()?;
    let config = BatchConfigBuilder::default()
        .with_max_queue_size(settings.max_queue_size)
        .with_max_export_batch_size(settings.max_export_batch_size)
        .with_scheduled_delay(settings.scheduled_delay)
        .build();
    Ok(BatchSpanProcessor::builder(CountingExporter {
        inner: Routed { routes },
        stats: stats.clone(),
    })
    .with_batch_config(config)
    .build())
}

/// Builds a tracer provider for `service_name`, or `None` for [`Sampling::Off`].
///
/// # Errors
///
/// Fails on a sampling ratio outside 0.0–1.0, or when the OTLP exporter cannot be built (for
/// gRPC, when called outside a Tokio runtime).
pub fn tracer_provider(
    service_name: &str,
    config: &TelemetryConfig,
) -> Result<Option<(SdkTracerProvider, SpanStats)>, InitError> {
    provider_for(service_name, &[], config)
}

/// Builds one provider for several services sharing a process: spans are exported under the
/// `service.name` of the [`crate::service::scope`] they started in, and under `services[0]`
/// outside any scope. `None` for [`Sampling::Off`].
///
/// # Errors
///
/// As [`tracer_provider`].
pub fn multi_service_provider(
    services: &[&'static str],
    config: &TelemetryConfig,
) -> Result<Option<(SdkTracerProvider, SpanStats)>, InitError> {
    let Some(first) = services.first() else {
        return Err(InitError::NoService);
    };
    provider_for(first, services, config)
}

/// `routes` empty: one service, nothing stamped.
fn provider_for(
    service_name: &str,
    routes: &[&'static str],
    config: &TelemetryConfig,
) -> Result<Option<(SdkTracerProvider, SpanStats)>, InitError> {
    if config.sampling == Sampling::Off {
        return Ok(None);
    }
    let stats = SpanStats::default();
    // A single service gets one route under its own name (the exporter never compares it).
    let services: Vec<String> = if routes.is_empty() {
        vec![service_name.to_owned()]
    } else {
        routes.iter().map(|s| (*s).to_owned()).collect()
    };
    let services = services.as_slice();
    let processor = match &config.exporter {
        Exporter::Discard => {
            batch_processor(services, || Ok(DiscardExporter), &stats, config.batch)?
        }
        Exporter::Otlp {
            protocol,
            endpoint,
            timeout,
        } => batch_processor(
            services,
            || otlp_exporter(*protocol, endpoint.as_deref(), *timeout),
            &stats,
            config.batch,
        )?,
        #[cfg(feature = "testing")]
        Exporter::Memory(spans) => batch_processor(
            services,
            || {
                Ok(crate::testing::MemoryExporter {
                    spans: spans.clone(),
                    service: service_name.to_owned(),
                })
            },
            &stats,
            config.batch,
        )?,
    };
    let provider = SdkTracerProvider::builder()
        .with_resource(resource(service_name, config))
        .with_sampler(sampler(config.sampling)?)
        .with_span_processor(Counted {
            inner: processor,
            stats: stats.clone(),
            stamp: routes.first().copied(),
            synthetic: config.synthetic_span_cost,
        })
        .build();
    Ok(Some((provider, stats)))
}

/// Keeps telemetry alive; flushes and shuts the provider down when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    stats: SpanStats,
    propagator: W3cPropagator,
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("sdk", &self.provider.is_some())
            .field("spans", &self.stats.counts())
            .finish()
    }
}

impl TelemetryGuard {
    /// Exports everything finished so far; call it before asserting on exported traces.
    ///
    /// # Errors
    ///
    /// Fails when the exporter reports an error or times out.
    pub fn flush(&self) -> OTelSdkResult {
        match &self.provider {
            Some(provider) => provider.force_flush(),
            None => Ok(()),
        }
    }

    /// Span counts of this service's provider (all zero with [`Sampling::Off`]).
    pub fn span_counts(&self) -> SpanCounts {
        self.stats.counts()
    }

    /// Invalid incoming context rejected by the global propagator.
    pub fn invalid_contexts(&self) -> InvalidContexts {
        self.propagator.invalid_contexts()
    }

    /// The provider, when an SDK is installed.
    pub fn provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Shutdown flushes the batch processor first; an error here has nowhere to go but
            // stderr, since the log pipeline is being torn down with it.
            if let Err(e) = provider.shutdown() {
                eprintln!("telemetry shutdown: {e}");
            }
        }
    }
}

fn env_filter(config: &TelemetryConfig) -> Result<EnvFilter, InitError> {
    Ok(match &config.log_filter {
        Some(filter) => EnvFilter::try_new(filter)?,
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info"))?,
    })
}

/// The tracing-opentelemetry layer as every service installs it, leaner than the crate's
/// defaults: no source-location (`code.*`), thread (`thread.*`) or `target` attributes, no
/// busy/idle timing (`busy_ns`, `idle_ns`, two clock reads per enter and exit), and no
/// activation of OpenTelemetry's current context on every enter. Nothing reads them (not the
/// verifier, not the reports, not our code: a span's parent comes from `tracing`'s current
/// span), and together they were 44 % of a traced span's cost: see `benches/span_cost.rs`.
pub fn otel_layer<S>(
    tracer: opentelemetry_sdk::trace::SdkTracer,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
}

/// Which `tracing` spans become OpenTelemetry spans: ours and our dependencies' at `info` and
/// above, but never the transport crates' own spans, which would trace the exporter exporting
/// or a client's connection loop.
fn span_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("h2", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("tonic", LevelFilter::OFF)
        .with_target("tower", LevelFilter::OFF)
        .with_target("reqwest", LevelFilter::OFF)
        // lapin traces its own I/O loop at INFO: a span per connection that belongs to no request.
        .with_target("lapin", LevelFilter::OFF)
        .with_target("amq_protocol", LevelFilter::OFF)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF)
}

/// Sets up telemetry for `service_name` process-wide: the tracer provider (unless
/// [`Sampling::Off`]), the W3C propagator as the global propagator, and a global subscriber with
/// the OpenTelemetry layer and JSON logs.
///
/// # Errors
///
/// Fails as [`tracer_provider`] does, on a log filter that does not parse, or when a global
/// subscriber is already installed.
pub fn init(service_name: &str, config: TelemetryConfig) -> Result<TelemetryGuard, InitError> {
    init_with_writer(service_name, config, std::io::stdout)
}

/// [`init`] with JSON log lines written to `writer` instead of stdout (stdout and a file, say).
///
/// # Errors
///
/// As [`init`].
pub fn init_with_writer<W>(
    service_name: &str,
    config: TelemetryConfig,
    writer: W,
) -> Result<TelemetryGuard, InitError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let provider = tracer_provider(service_name, &config)?;
    install(service_name, provider, config, writer)
}

/// [`init`] for several services in one process (`tracebench service all`); see
/// [`multi_service_provider`] for how spans find their service.
///
/// # Errors
///
/// As [`init`], and when `services` is empty.
pub fn init_services(
    services: &[&'static str],
    config: TelemetryConfig,
) -> Result<TelemetryGuard, InitError> {
    init_services_with_writer(services, config, std::io::stdout)
}

/// [`init_services`] with JSON log lines written to `writer` instead of stdout (a test's
/// buffer, a file).
///
/// # Errors
///
/// As [`init_services`].
pub fn init_services_with_writer<W>(
    services: &[&'static str],
    config: TelemetryConfig,
    writer: W,
) -> Result<TelemetryGuard, InitError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let provider = multi_service_provider(services, &config)?;
    install("tracebench", provider, config, writer)
}

fn install<W>(
    service_name: &str,
    provider: Option<(SdkTracerProvider, SpanStats)>,
    config: TelemetryConfig,
    writer: W,
) -> Result<TelemetryGuard, InitError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // The log layer is always installed and switched off by its filter for `LogFormat::None`:
    // wrapped in an `Option`, it would not learn its dispatcher (tracing-subscriber's `Option`
    // layer does not forward `on_register_dispatch`) and would lose the trace ids.
    let filter = match config.log_format {
        LogFormat::Json => env_filter(&config)?,
        LogFormat::None => EnvFilter::new("off"),
    };
    let propagator = crate::propagator::install();
    global::set_text_map_propagator(propagator.clone());
    let logs = JsonLogLayer::new(writer);
    let (otel, provider, stats) = match provider {
        Some((provider, stats)) => {
            let tracer = provider.tracer(service_name.to_owned());
            global::set_tracer_provider(provider.clone());
            (
                Some(otel_layer(tracer).with_filter(span_filter())),
                Some(provider),
                stats,
            )
        }
        None => (None, None, SpanStats::default()),
    };
    Registry::default()
        .with(otel)
        .with(logs.with_filter(filter))
        .try_init()?;
    Ok(TelemetryGuard {
        provider,
        stats,
        propagator,
    })
}
