//! Propagation cost: `traceparent` parse/format, and inject/extract through our W3C propagator
//! for each carrier (HTTP headers, AMQP field table, Kafka headers), against the SDK's
//! `TraceContextPropagator` on a `HashMap` as the baseline.
//!
//! Goals (2-vCPU machine class): inject ≤ 60 ns and extract with strict validation ≤ 80 ns per
//! carrier.
//!
//! Last results — `cargo bench -p tb-benches --bench propagation`, criterion's median estimate,
//! 2 vCPU AMD EPYC VM (rust-svc kind), rustc 1.95.0, 2026-12-01. "w3c" is our propagator. The
//! "before" column is the same machine an hour earlier, before Level 2's random flag was kept
//! (this machine is faster than the 2026-11-24 one: the SDK baseline inject took 409 ns there).
//!
//! | benchmark                         | before   | now      | goal     |
//! |-----------------------------------|----------|----------|----------|
//! | traceparent/parse                 |          | 14.4 ns  |          |
//! | traceparent/format                |          | 10.5 ns  |          |
//! | inject/baseline_sdk_hashmap       | 221.5 ns | 227.0 ns |          |
//! | inject/w3c_hashmap                | 64.0 ns  | 64.0 ns  |          |
//! | inject/http_headermap             | 58.7 ns  | 68.9 ns  | ≤ 60 ns  |
//! | inject/amqp_fieldtable            | 61.8 ns  | 61.8 ns  | ≤ 60 ns  |
//! | inject/kafka_ownedheaders         | 41.1 ns  | 48.7 ns  | ≤ 60 ns  |
//! | extract/baseline_sdk_hashmap      | 220.3 ns | 228.5 ns |          |
//! | extract/w3c_hashmap               | 156.7 ns | 222.9 ns |          |
//! | extract/http_headermap            | 105.0 ns | 179.4 ns | ≤ 80 ns  |
//! | extract/http_headermap_random_flag|          | 103.5 ns | ≤ 80 ns  |
//! | extract/amqp_fieldtable           | 95.5 ns  | 187.7 ns | ≤ 80 ns  |
//! | extract/kafka_borrowedheaders     | 102.4 ns | 180.6 ns | ≤ 80 ns  |
//!
//! Repeated runs move inject by ±5 ns here, so the inject columns are within noise of each other.
//!
//! The goals are not met yet. Inject pays for the `String` that `Injector::set` demands plus the
//! carrier's own allocation (header value, AMQP short-string key, librdkafka's copy); extract
//! pays for three header lookups and the `Context` the SDK allocates for a remote span.
//!
//! Keeping Level 2's random flag costs extract about 80 ns when it arrives unset (`-01`, these
//! benches): the propagator must remember it in a `Context` entry (a map and two `Arc`s), since
//! the SDK gives a dropped span the flags `00` and a new root `01`. A Level 2 sender's `-03`,
//! which every hop after tracebench's first carries, needs no entry (`http_headermap_random_flag`).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use lapin::types::{AMQPValue, FieldTable};
use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rdkafka::message::{Header, OwnedHeaders};
use tb_telemetry::W3cPropagator;
use tb_telemetry::carrier::amqp::{FieldTableExtractor, FieldTableInjector};
use tb_telemetry::carrier::http::{HeaderExtractor, HeaderInjector};
use tb_telemetry::carrier::kafka::{KafkaExtractor, KafkaInjector};
use tb_telemetry::w3c::TraceParent;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACEPARENT_RANDOM: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03";
const TRACEPARENT_RANDOM_UNSAMPLED: &str =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02";

/// A context with a sampled remote span, as a service holds while handling a request.
fn active_context() -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
        SpanId::from(0x00f0_67aa_0ba9_02b7),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    ))
}

/// Request headers as an HTTP client sends them, plus `traceparent`.
fn http_headers() -> HeaderMap {
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
fn amqp_headers() -> FieldTable {
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
fn kafka_headers() -> OwnedHeaders {
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

fn traceparent_format(c: &mut Criterion) {
    let mut g = c.benchmark_group("traceparent");
    g.bench_function("parse", |b| {
        b.iter(|| TraceParent::parse(black_box(TRACEPARENT)))
    });
    let tp = TraceParent::parse(TRACEPARENT).expect("valid");
    g.bench_function("format", |b| b.iter(|| black_box(&tp).format()));
    g.finish();
}

fn inject(c: &mut Criterion) {
    let ours = W3cPropagator::new();
    let sdk = TraceContextPropagator::new();
    let cx = active_context();
    let mut g = c.benchmark_group("inject");

    g.bench_function("baseline_sdk_hashmap", |b| {
        let mut carrier: HashMap<String, String> = HashMap::new();
        b.iter(|| sdk.inject_context(black_box(&cx), &mut carrier));
    });
    g.bench_function("w3c_hashmap", |b| {
        let mut carrier: HashMap<String, String> = HashMap::new();
        b.iter(|| ours.inject_context(black_box(&cx), &mut carrier));
    });
    g.bench_function("http_headermap", |b| {
        let mut headers = http_headers();
        b.iter(|| ours.inject_context(black_box(&cx), &mut HeaderInjector(&mut headers)));
    });
    g.bench_function("amqp_fieldtable", |b| {
        let mut table = amqp_headers();
        b.iter(|| ours.inject_context(black_box(&cx), &mut FieldTableInjector(&mut table)));
    });
    // rdkafka's headers only grow, so each iteration gets fresh ones, made outside the timing.
    g.bench_function("kafka_ownedheaders", |b| {
        b.iter_batched(
            || KafkaInjector::new(OwnedHeaders::new_with_capacity(4)),
            |mut injector| {
                ours.inject_context(black_box(&cx), &mut injector);
                injector
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

fn extract(c: &mut Criterion) {
    let ours = W3cPropagator::new();
    let sdk = TraceContextPropagator::new();
    let root = Context::new();
    let mut g = c.benchmark_group("extract");

    let map = HashMap::from([("traceparent".to_owned(), TRACEPARENT.to_owned())]);
    g.bench_function("baseline_sdk_hashmap", |b| {
        b.iter(|| sdk.extract_with_context(&root, black_box(&map)))
    });
    g.bench_function("w3c_hashmap", |b| {
        b.iter(|| ours.extract_with_context(&root, black_box(&map)))
    });
    let headers = http_headers();
    g.bench_function("http_headermap", |b| {
        b.iter(|| ours.extract_with_context(&root, &HeaderExtractor(black_box(&headers))))
    });
    // A Level 2 sender's `-03` (as every hop after tracebench's first sends): nothing to note
    // beside the span context, as for `-01` (the SDK keeps the bit in a sampled child's flags).
    let mut random = http_headers();
    random.insert("traceparent", HeaderValue::from_static(TRACEPARENT_RANDOM));
    g.bench_function("http_headermap_random_flag", |b| {
        b.iter(|| ours.extract_with_context(&root, &HeaderExtractor(black_box(&random))))
    });
    // `-02`, random and not sampled: its children are dropped with flags `00`, so the bit is
    // noted in a context entry. The difference to `-03` is what a note costs.
    let mut unsampled = http_headers();
    unsampled.insert(
        "traceparent",
        HeaderValue::from_static(TRACEPARENT_RANDOM_UNSAMPLED),
    );
    g.bench_function("http_headermap_random_unsampled", |b| {
        b.iter(|| ours.extract_with_context(&root, &HeaderExtractor(black_box(&unsampled))))
    });
    // No trace context at all: three lookups that find nothing, and the context handed back.
    let mut absent = http_headers();
    absent.remove("traceparent");
    g.bench_function("http_headermap_absent", |b| {
        b.iter(|| ours.extract_with_context(&root, &HeaderExtractor(black_box(&absent))))
    });
    let table = amqp_headers();
    g.bench_function("amqp_fieldtable", |b| {
        b.iter(|| ours.extract_with_context(&root, &FieldTableExtractor(black_box(&table))))
    });
    let kafka = kafka_headers();
    g.bench_function("kafka_borrowedheaders", |b| {
        b.iter(|| {
            ours.extract_with_context(&root, &KafkaExtractor::new(black_box(kafka.as_borrowed())))
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = traceparent_format, inject, extract
}
criterion_main!(benches);
