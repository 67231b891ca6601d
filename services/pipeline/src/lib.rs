//! The scan pipeline as one system (Jaeger HotROD's "all"): the one home of the seed design's
//! defaults, the wiring between the services, and starting any subset of them in this process.
//! `tracebench service` and the harness both start the pipeline through [`Pipeline::start`].
//!
//! | module     | what                                                                        |
//! |------------|-----------------------------------------------------------------------------|
//! | [`config`] | [`seed`](config::seed) figures, [`Wiring`] (who talks to whom), [`PipelineConfig`] |
//! | [`start`]  | [`Pipeline::start`], its shutdown, and why a service stopped                 |
//! | [`events`] | the structured line a service process writes for each scan a consumer finished |
//!
//! # Following one scan
//!
//! The files a newcomer opens to follow one scan from `POST /scan` to the last consumer, in
//! the order the scan meets them. Every hop has the same shape: the receiver extracts the
//! context from its carrier where it handles the request or message, and starts its span from
//! it; the sender injects its span's context into the carrier.
//!
//! 1. `services/web/src/trace.rs` — every HTTP request's SERVER span, from the context its
//!    headers carry.
//! 2. `services/scan-api/src/lib.rs` — `POST /scan`: validate, create the task, publish it.
//! 3. `services/telemetry/src/spans.rs` — the span of each kind, named and attributed as the
//!    semantic conventions say.
//! 4. `services/messaging/src/celery.rs` — the task as a Celery protocol v2 message.
//! 5. `services/messaging/src/amqp.rs` — publishing with confirms; the traced publish.
//! 6. `services/telemetry/src/carrier/amqp.rs` — the trace context in the AMQP headers.
//! 7. `services/worker/src/lib.rs` — consume, call Vision and LLM, save, announce, ack.
//! 8. `services/telemetry/src/carrier/http.rs` — the trace context in the HTTP headers.
//! 9. `services/mocks/src/vision.rs` and `services/mocks/src/llm.rs` — the mock APIs.
//! 10. `services/messaging/src/kafka.rs` — `scan.completed` on Kafka.
//! 11. `services/telemetry/src/carrier/kafka.rs` — the trace context in the Kafka headers.
//! 12. `services/consumers/src/lib.rs` — the character and my consumers.
//!
//! Thirteen files in seven crates (the two mocks are one step). The strip faults
//! (`services/telemetry/src/fault.rs`) still reach the senders through scan-api's and the
//! worker's state rather than through the carriers.

pub mod config;
pub mod events;
pub mod start;

pub use config::{KafkaChoice, PipelineConfig, Wiring, seed};
pub use events::{ProcessedLine, SpansLine};
pub use start::{Pipeline, ServiceError, StartError};

/// The services `tracebench service` knows, by the name their spans carry.
pub const SERVICES: [&str; 6] = [
    tb_scan_api::SERVICE,
    tb_worker::SERVICE,
    tb_mocks::vision::SERVICE,
    tb_mocks::llm::SERVICE,
    tb_consumers::CHARACTER,
    tb_consumers::MY,
];
