//! Propagation cost: `traceparent` parse/format, and inject/extract through our W3C propagator
//! for each carrier (HTTP headers, AMQP field table, Kafka headers), against the SDK's
//! `TraceContextPropagator` on a `HashMap` as the baseline.
//!
//! Goals (2-vCPU machine class): inject ≤ 60 ns and extract with strict validation ≤ 80 ns per
//! carrier.
//!
//! Each carrier is measured in three steps: `_global` is what a service paid before the direct
//! path (the global propagator's lock and dynamic dispatch, then the `Injector`'s `String`s or
//! the `Extractor`'s lookups), the plain name is our propagator through `Injector`/`Extractor`,
//! and `_direct` is the path the services now take (`inject_with`, `extract_from`).
//!
//! Last results — `cargo bench -p tb-benches --bench propagation`, criterion's median estimate,
//! 2 vCPU AMD EPYC VM (rust-svc kind), rustc 1.95.0, 2026-12-02, with the other work on the
//! machine stopped for the run. This VM is about three times slower than the 2026-12-01 one
//! (the SDK's inject took 227 ns there, 675 here) and noisy: `-01` and `-03` take the same
//! code path (neither needs a note), yet their extracts measured 314 and 224 ns in one run. So the goals cannot be
//! judged here in nanoseconds; `propagation_steps.rs` has the same steps in instructions, which
//! do not move with the machine.
//!
//! | benchmark                   | global   | trait    | direct   | goal    |
//! |-----------------------------|----------|----------|----------|---------|
//! | traceparent/parse           |          |          | 37.6 ns  |         |
//! | traceparent/format          |          |          | 31.5 ns  |         |
//! | inject, SDK on a HashMap    |          | 675.4 ns |          |         |
//! | inject, HTTP                | 186.7 ns | 178.1 ns | 172.3 ns | ≤ 60 ns |
//! | inject, AMQP                | 215.8 ns | 207.9 ns | 200.7 ns | ≤ 60 ns |
//! | inject, Kafka               | 169.1 ns | 154.6 ns | 104.5 ns | ≤ 60 ns |
//! | extract, SDK on a HashMap   |          | 561.4 ns |          |         |
//! | extract `-01`, HTTP         | 335.9 ns | 339.3 ns | 314.3 ns | ≤ 80 ns |
//! | extract `-03`, HTTP         |          |          | 223.6 ns | ≤ 80 ns |
//! | extract `-02`, HTTP (noted) |          |          | 365.3 ns |         |
//! | extract, HTTP, no context   |          | 113.8 ns | 59.9 ns  |         |
//! | extract `-01`, AMQP         | 348.4 ns | 332.1 ns | 411.6 ns | ≤ 80 ns |
//! | extract `-01`, Kafka        | 277.2 ns | 269.2 ns | 235.9 ns | ≤ 80 ns |
//!
//! The AMQP extract's direct figure is noise (it runs 3 % fewer instructions than the trait
//! path). Against the SDK on the same machine our inject is 3.4–6.5 times and our extract 1.4–2.4
//! times faster. An extract's floor is the SDK's own: `with_remote_span_context` allocates the
//! `Context`'s span, which no path can avoid; without a context nothing is allocated at all.
//!
//! A `-02` parent (random, not sampled) costs a note in the `Context` (a map and two `Arc`s),
//! since the SDK gives a dropped span the flags `00`; `-01` and `-03` need none.

mod fixtures;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main};
use http::HeaderValue;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::{Context, global};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rdkafka::message::OwnedHeaders;
use tb_telemetry::W3cPropagator;
use tb_telemetry::carrier;
use tb_telemetry::carrier::amqp::{FieldTableExtractor, FieldTableInjector};
use tb_telemetry::carrier::http::{HeaderExtractor, HeaderInjector};
use tb_telemetry::carrier::kafka::{KafkaExtractor, KafkaInjector};
use tb_telemetry::w3c::TraceParent;

use fixtures::{TRACEPARENT, active_context, amqp_headers, http_headers, kafka_headers};

const TRACEPARENT_RANDOM: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03";
const TRACEPARENT_RANDOM_UNSAMPLED: &str =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02";

fn traceparent_format(c: &mut Criterion) {
    let mut g = c.benchmark_group("traceparent");
    g.bench_function("parse", |b| {
        b.iter(|| TraceParent::parse(black_box(TRACEPARENT)))
    });
    let tp = TraceParent::parse(TRACEPARENT).expect("valid");
    g.bench_function("format", |b| b.iter(|| black_box(&tp).format()));
    g.finish();
}

/// Inject, three steps per carrier: `_global` is what a service paid before the direct path (the
/// global propagator's lock and dynamic dispatch, then the `Injector`'s `String`s), the plain name
/// is our propagator through the `Injector`, `_direct` writes the carrier's native values
/// (`inject_with`), as the services now do.
fn inject(c: &mut Criterion) {
    let ours = W3cPropagator::new();
    let sdk = TraceContextPropagator::new();
    let cx = active_context();
    global::set_text_map_propagator(ours.clone());
    let mut g = c.benchmark_group("inject");

    g.bench_function("baseline_sdk_hashmap", |b| {
        let mut carrier: HashMap<String, String> = HashMap::new();
        b.iter(|| sdk.inject_context(black_box(&cx), &mut carrier));
    });
    g.bench_function("w3c_hashmap", |b| {
        let mut carrier: HashMap<String, String> = HashMap::new();
        b.iter(|| ours.inject_context(black_box(&cx), &mut carrier));
    });
    let mut headers = http_headers();
    g.bench_function("http_headermap_global", |b| {
        b.iter(|| {
            global::get_text_map_propagator(|p| {
                p.inject_context(black_box(&cx), &mut HeaderInjector(&mut headers));
            })
        });
    });
    g.bench_function("http_headermap", |b| {
        b.iter(|| ours.inject_context(black_box(&cx), &mut HeaderInjector(&mut headers)));
    });
    g.bench_function("http_headermap_direct", |b| {
        b.iter(|| carrier::http::inject_with(&ours, black_box(&cx), &mut headers));
    });
    let mut table = amqp_headers();
    g.bench_function("amqp_fieldtable_global", |b| {
        b.iter(|| {
            global::get_text_map_propagator(|p| {
                p.inject_context(black_box(&cx), &mut FieldTableInjector(&mut table));
            })
        });
    });
    g.bench_function("amqp_fieldtable", |b| {
        b.iter(|| ours.inject_context(black_box(&cx), &mut FieldTableInjector(&mut table)));
    });
    g.bench_function("amqp_fieldtable_direct", |b| {
        b.iter(|| carrier::amqp::inject_with(&ours, black_box(&cx), &mut table));
    });
    // rdkafka's headers only grow, so each iteration gets fresh ones, made outside the timing.
    let fresh = || OwnedHeaders::new_with_capacity(4);
    g.bench_function("kafka_ownedheaders_global", |b| {
        b.iter_batched(
            || KafkaInjector::new(fresh()),
            |mut injector| {
                global::get_text_map_propagator(|p| {
                    p.inject_context(black_box(&cx), &mut injector);
                });
                injector
            },
            BatchSize::SmallInput,
        );
    });
    g.bench_function("kafka_ownedheaders", |b| {
        b.iter_batched(
            || KafkaInjector::new(fresh()),
            |mut injector| {
                ours.inject_context(black_box(&cx), &mut injector);
                injector
            },
            BatchSize::SmallInput,
        );
    });
    g.bench_function("kafka_ownedheaders_direct", |b| {
        b.iter_batched(
            fresh,
            |headers| carrier::kafka::inject_with(&ours, black_box(&cx), headers),
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

/// Extract, in the same three steps as [`inject`], on `-01` (what a Level 1 SDK sends) and on
/// the cases that cost more or less: `-03` and `-02` (what a note costs), and no context at all.
fn extract(c: &mut Criterion) {
    let ours = W3cPropagator::new();
    let sdk = TraceContextPropagator::new();
    let root = Context::new();
    global::set_text_map_propagator(ours.clone());
    let mut g = c.benchmark_group("extract");
    extract_http(&mut g, &ours, &sdk, &root);
    extract_brokers(&mut g, &ours, &root);
    g.finish();
}

/// [`extract`] from a map and from HTTP headers.
fn extract_http(
    g: &mut Group<'_>,
    ours: &W3cPropagator,
    sdk: &TraceContextPropagator,
    root: &Context,
) {
    let map = HashMap::from([("traceparent".to_owned(), TRACEPARENT.to_owned())]);
    g.bench_function("baseline_sdk_hashmap", |b| {
        b.iter(|| sdk.extract_with_context(root, black_box(&map)))
    });
    g.bench_function("w3c_hashmap", |b| {
        b.iter(|| ours.extract_with_context(root, black_box(&map)))
    });
    let headers = http_headers();
    g.bench_function("http_headermap_global", |b| {
        b.iter(|| {
            global::get_text_map_propagator(|p| {
                p.extract_with_context(root, &HeaderExtractor(black_box(&headers)))
            })
        })
    });
    g.bench_function("http_headermap", |b| {
        b.iter(|| ours.extract_with_context(root, &HeaderExtractor(black_box(&headers))))
    });
    g.bench_function("http_headermap_direct", |b| {
        b.iter(|| ours.extract_from(root, black_box(&headers)))
    });
    // A Level 2 sender's `-03` (as every hop after tracebench's first sends): nothing to note
    // beside the span context, as for `-01` (the SDK keeps the bit in a sampled child's flags).
    let mut random = http_headers();
    random.insert("traceparent", HeaderValue::from_static(TRACEPARENT_RANDOM));
    g.bench_function("http_headermap_random_flag_direct", |b| {
        b.iter(|| ours.extract_from(root, black_box(&random)))
    });
    // `-02`, random and not sampled: its children are dropped with flags `00`, so the bit is
    // noted in a context entry. The difference to `-03` is what a note costs.
    let mut unsampled = http_headers();
    unsampled.insert(
        "traceparent",
        HeaderValue::from_static(TRACEPARENT_RANDOM_UNSAMPLED),
    );
    g.bench_function("http_headermap_random_unsampled_direct", |b| {
        b.iter(|| ours.extract_from(root, black_box(&unsampled)))
    });
    // No trace context at all: the lookups that find nothing, and the context handed back.
    let mut absent = http_headers();
    absent.remove("traceparent");
    g.bench_function("http_headermap_absent", |b| {
        b.iter(|| ours.extract_with_context(root, &HeaderExtractor(black_box(&absent))))
    });
    g.bench_function("http_headermap_absent_direct", |b| {
        b.iter(|| ours.extract_from(root, black_box(&absent)))
    });
}

/// [`extract`] from AMQP and Kafka headers.
fn extract_brokers(g: &mut Group<'_>, ours: &W3cPropagator, root: &Context) {
    let table = amqp_headers();
    g.bench_function("amqp_fieldtable_global", |b| {
        b.iter(|| {
            global::get_text_map_propagator(|p| {
                p.extract_with_context(root, &FieldTableExtractor(black_box(&table)))
            })
        })
    });
    g.bench_function("amqp_fieldtable", |b| {
        b.iter(|| ours.extract_with_context(root, &FieldTableExtractor(black_box(&table))))
    });
    g.bench_function("amqp_fieldtable_direct", |b| {
        b.iter(|| ours.extract_from(root, black_box(&table)))
    });
    let kafka = kafka_headers();
    g.bench_function("kafka_borrowedheaders_global", |b| {
        b.iter(|| {
            global::get_text_map_propagator(|p| {
                p.extract_with_context(root, &KafkaExtractor::new(black_box(kafka.as_borrowed())))
            })
        })
    });
    g.bench_function("kafka_borrowedheaders", |b| {
        b.iter(|| {
            ours.extract_with_context(root, &KafkaExtractor::new(black_box(kafka.as_borrowed())))
        })
    });
    g.bench_function("kafka_borrowedheaders_direct", |b| {
        b.iter(|| ours.extract_from(root, &KafkaExtractor::new(black_box(kafka.as_borrowed()))))
    });
}

/// A benchmark group of this file.
type Group<'a> = BenchmarkGroup<'a, WallTime>;

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
