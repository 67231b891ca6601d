//! tracebench's telemetry: the one crate that touches OpenTelemetry.
//!
//! - [`w3c`] and [`baggage`]: the W3C formats, parsed strictly and formatted without allocation.
//! - [`propagator`]: those formats behind OpenTelemetry's `TextMapPropagator`, counting what it
//!   rejects.
//! - [`carrier`]: how context rides on HTTP headers, AMQP field tables and Kafka record headers.
//! - [`spans`]: helpers for SERVER/CLIENT/PRODUCER/CONSUMER spans with semantic-convention
//!   attributes.
//! - [`sampling`]: the sampler choices and their one spelling.
//! - [`setup`]: provider, sampler, exporter and JSON logs for one service ([`init`]).
//! - [`processors`]: the counting, routing and discarding pieces setup wires together.
//! - [`service`]: which service a span belongs to when several share a process.
//! - [`log`]: the JSON log format that carries `trace_id` and `span_id`.
//! - `testing` (feature `testing`): an in-memory exporter for tests.

pub mod baggage;
pub mod carrier;
pub mod fault;
pub mod log;
pub mod processors;
pub mod propagator;
pub mod sampling;
pub mod service;
pub mod setup;
pub mod spans;
#[cfg(feature = "testing")]
pub mod testing;
pub mod w3c;

pub use processors::{SpanCounts, SpanStats};
pub use propagator::{InvalidContexts, W3cPropagator};
pub use sampling::{Sampling, UnknownSampling};
pub use service::FinishedSpan;
pub use setup::{
    BatchSettings, Exporter, InitError, LogFormat, Protocol, TelemetryConfig, TelemetryGuard, init,
    init_services, init_services_with_writer, init_with_writer, multi_service_provider,
    tracer_provider,
};
