//! Heap allocations per propagation step, counted rather than timed: the direct path's claims in
//! numbers that do not move with the machine (`benches/propagation.rs` has the times).
//!
//! `allocation_counter` counts the current thread's allocations through Rust's allocator, so
//! librdkafka's own copy of a Kafka header (C `malloc`) is not among them.

use std::hint::black_box;

use allocation_counter::measure;
use http::{HeaderMap, HeaderValue};
use lapin::types::{AMQPValue, FieldTable};
use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use rdkafka::message::{Header, OwnedHeaders};
use tb_telemetry::W3cPropagator;
use tb_telemetry::carrier::http::HeaderExtractor;
use tb_telemetry::carrier::kafka::KafkaExtractor;
use tb_telemetry::carrier::{amqp, http as http_carrier, kafka};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn allocations(f: impl FnOnce()) -> u64 {
    measure(f).count_total
}

fn http_headers(traceparent: Option<&'static str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("127.0.0.1:8000"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(tp) = traceparent {
        headers.insert("traceparent", HeaderValue::from_static(tp));
    }
    headers
}

fn amqp_headers(traceparent: Option<&str>) -> FieldTable {
    let mut table = FieldTable::default();
    table.insert("task".into(), AMQPValue::LongString("scan.process".into()));
    if let Some(tp) = traceparent {
        table.insert("traceparent".into(), AMQPValue::LongString(tp.into()));
    }
    table
}

fn kafka_headers(traceparent: Option<&str>) -> OwnedHeaders {
    let headers = OwnedHeaders::new().insert(Header {
        key: "event-type",
        value: Some("scan.completed"),
    });
    match traceparent {
        Some(tp) => headers.insert(Header {
            key: "traceparent",
            value: Some(tp),
        }),
        None => headers,
    }
}

fn sampled() -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
        SpanId::from(0x00f0_67aa_0ba9_02b7),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    ))
}

#[test]
fn extracting_no_context_allocates_nothing() {
    let p = W3cPropagator::new();
    let root = Context::new();
    let (http, table, kafka) = (http_headers(None), amqp_headers(None), kafka_headers(None));
    assert_eq!(
        allocations(|| drop(black_box(p.extract_from(&root, &http)))),
        0
    );
    assert_eq!(
        allocations(|| drop(black_box(p.extract_from(&root, &table)))),
        0
    );
    assert_eq!(
        allocations(|| {
            drop(black_box(p.extract_from(
                &root,
                &KafkaExtractor::new(kafka.as_borrowed()),
            )));
        }),
        0
    );
}

#[test]
fn extracting_a_parent_allocates_only_the_sdk_context() {
    let p = W3cPropagator::new();
    let root = Context::new();
    let (http, table, kafka) = (
        http_headers(Some(TP)),
        amqp_headers(Some(TP)),
        kafka_headers(Some(TP)),
    );
    // The one allocation is the SDK's: `with_remote_span_context` puts the span in an `Arc`.
    let sc = sampled().span().span_context().clone();
    let sdk = allocations(|| drop(black_box(root.with_remote_span_context(sc))));
    assert_eq!(sdk, 1);
    let direct = [
        allocations(|| assert!(p.extract_from(&root, &http).has_active_span())),
        allocations(|| assert!(p.extract_from(&root, &table).has_active_span())),
        allocations(|| {
            let extractor = KafkaExtractor::new(kafka.as_borrowed());
            assert!(p.extract_from(&root, &extractor).has_active_span());
        }),
    ];
    assert_eq!(direct, [sdk; 3], "http, amqp, kafka");
    // The trait path is no worse here (no list header to collect into a `Vec`).
    let by_trait = allocations(|| {
        drop(black_box(
            p.extract_with_context(&root, &HeaderExtractor(&http)),
        ))
    });
    assert_eq!(by_trait, sdk);
}

#[test]
fn a_tracestate_is_read_in_place_by_the_direct_path() {
    let p = W3cPropagator::new();
    let root = Context::new();
    let mut http = http_headers(Some(TP));
    http.insert("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE"));
    let direct = allocations(|| drop(black_box(p.extract_from(&root, &http))));
    let by_trait = allocations(|| {
        drop(black_box(
            p.extract_with_context(&root, &HeaderExtractor(&http)),
        ))
    });
    // The `Extractor` answers a list header with a `Vec`; the direct path borrows the value
    // from the header map. (Both parse it in place: the propagator no longer copies a single
    // value into a `String` first.)
    assert_eq!(by_trait, direct + 1);
}

#[test]
fn injecting_allocates_only_what_the_carrier_keeps() {
    let p = W3cPropagator::new();
    let cx = sampled();
    // HTTP: the header value's own buffer, on either path (the `Injector`'s `String` becomes it).
    let mut http = http_headers(Some(TP));
    let direct = allocations(|| http_carrier::inject_with(&p, &cx, &mut http));
    assert_eq!(direct, 1);
    let mut http = http_headers(Some(TP));
    let by_trait = allocations(|| {
        p.inject_context(&cx, &mut http_carrier::HeaderInjector(&mut http));
    });
    assert_eq!(by_trait, 1);
    // AMQP: the entry's key and value, on either path.
    let mut table = amqp_headers(Some(TP));
    assert_eq!(allocations(|| amqp::inject_with(&p, &cx, &mut table)), 2);
    // Kafka: none of Rust's (librdkafka copies the bytes), where the `Injector` needs a `String`.
    let headers = kafka_headers(None);
    let mut out = None;
    assert_eq!(
        allocations(|| out = Some(kafka::inject_with(&p, &cx, headers))),
        0
    );
    let mut injector = kafka::KafkaInjector::new(kafka_headers(None));
    assert_eq!(allocations(|| p.inject_context(&cx, &mut injector)), 1);
}
