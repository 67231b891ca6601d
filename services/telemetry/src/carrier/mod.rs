//! Carriers: how trace context rides on each transport. One file per carrier, each a small
//! [`Injector`](opentelemetry::propagation::Injector) / [`Extractor`](opentelemetry::propagation::Extractor)
//! pair plus `inject` / `extract` helpers that use the global propagator.
//!
//! Every carrier answers [`Extractor::get`](opentelemetry::propagation::Extractor::get) by its
//! transport's rule for a repeated key (HTTP: no single value; AMQP: keys cannot repeat; Kafka:
//! the last header wins) and hands out a value that is not text as `""`, which no W3C parser
//! accepts, so such a value is counted as invalid instead of silently ignored.

pub mod amqp;
pub mod http;
pub mod kafka;
