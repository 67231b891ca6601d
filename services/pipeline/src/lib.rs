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
//! the order the scan meets them:
//!
//! 1. `services/scan-api/src/lib.rs` — `POST /scan`: validate, create the task, publish it.
//! 2. `services/messaging/src/celery.rs` — the task as a Celery protocol v2 message.
//! 3. `services/messaging/src/amqp.rs` — publishing with confirms; the traced publish.
//! 4. `services/telemetry/src/carrier/amqp.rs` — the trace context in the AMQP headers.
//! 5. `services/worker/src/lib.rs` — consume, call Vision and LLM, save, announce, ack.
//! 6. `services/mocks/src/vision.rs` and `services/mocks/src/llm.rs` — the mock APIs.
//! 7. `services/telemetry/src/carrier/http.rs` — the trace context in the HTTP headers.
//! 8. `services/messaging/src/kafka.rs` — `scan.completed` on Kafka.
//! 9. `services/telemetry/src/carrier/kafka.rs` — the trace context in the Kafka headers.
//! 10. `services/consumers/src/lib.rs` — the character and my consumers.

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
