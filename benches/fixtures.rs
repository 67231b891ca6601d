//! What the propagation benches share: the trace context a service holds, and each carrier's
//! headers as they arrive, with and without a `traceparent`.

use http::{HeaderMap, HeaderValue};
use lapin::types::{AMQPValue, FieldTable};
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use rdkafka::message::{Header, OwnedHeaders};

pub(crate) const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A context with a sampled remote span, as a service holds while handling a request.
pub(crate) fn active_context() -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
        SpanId::from(0x00f0_67aa_0ba9_02b7),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    ))
}

/// Request headers as an HTTP client sends them, plus `traceparent`.
pub(crate) fn http_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("127.0.0.1:8000"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("content-length", HeaderValue::from_static("64"));
    h.insert("user-agent", HeaderValue::from_static("tracebench"));
    h.insert("accept", HeaderValue::from_static("*/*"));
    h.insert("traceparent", HeaderValue::from_static(TRACEPARENT));
    h
}

/// Celery protocol v2 headers, plus `traceparent`.
pub(crate) fn amqp_headers() -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in [
        ("lang", "py"),
        ("task", "scan.process_image"),
        ("id", "6b1d1c4e-4c55-4c1e-9d7e-0c1b9c7f6a21"),
        ("root_id", "6b1d1c4e-4c55-4c1e-9d7e-0c1b9c7f6a21"),
        ("parent_id", ""),
        ("argsrepr", "('6b1d', 'https://img/1.jpg')"),
        ("kwargsrepr", "{'user_id': 'u-1'}"),
        ("origin", "gen1@scan-api"),
        ("traceparent", TRACEPARENT),
    ] {
        t.insert(k.into(), AMQPValue::LongString(v.into()));
    }
    t.insert("retries".into(), AMQPValue::LongLongInt(0));
    t
}

/// Kafka record headers, plus `traceparent`.
pub(crate) fn kafka_headers() -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: "content-type",
            value: Some("application/json"),
        })
        .insert(Header {
            key: "event-type",
            value: Some("scan.completed"),
        })
        .insert(Header {
            key: "traceparent",
            value: Some(TRACEPARENT),
        })
}
