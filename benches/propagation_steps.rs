//! Propagation's steps in instructions, for `valgrind --tool=callgrind`: the same operations as
//! `propagation.rs`, each in a function of its own that runs it [`N`] times. Instruction counts do
//! not move with a noisy or slower machine, where the nanoseconds of `propagation.rs` do.
//!
//! ```sh
//! cargo bench -p tb-benches --bench propagation_steps --no-run
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/steps.cg target/release/deps/propagation_steps-<hash>
//! callgrind_annotate --inclusive=yes /tmp/steps.cg | grep 'propagation_steps::'
//! ```
//!
//! Each function's inclusive count divided by `N` is one operation's instructions. `cargo bench`
//! runs it natively too (a few milliseconds), which keeps it compiling and its asserts true.
//!
//! Last results — callgrind 3.19, rustc 1.95.0, release with debuginfo, 2026-12-02: instructions
//! per operation (inclusive count ÷ `N`; an extract's includes dropping the context it returns).
//! `global` is what a service paid before the direct path: the global propagator's lock and
//! dynamic dispatch, then the `Injector`'s `String`s or the `Extractor`'s lookups. `trait` is our
//! propagator through `Injector`/`Extractor`; `direct` is the path the services now take
//! (`inject_with`, `extract_from`). The SDK's `TraceContextPropagator` on a `HashMap` took 4,328
//! per inject and 3,998 per extract.
//!
//! | step                              | global | trait | direct | direct vs global |
//! |-----------------------------------|--------|-------|--------|------------------|
//! | inject, HTTP `HeaderMap`          | 1,242  | 1,206 | 1,046  | −16 %            |
//! | inject, AMQP `FieldTable`         | 1,375  | 1,340 | 1,207  | −12 %            |
//! | inject, Kafka `OwnedHeaders`¹     | 941    | 908   | 598    | −36 %            |
//! | extract `-01`, HTTP               | 1,859  | 1,819 | 1,658  | −11 %            |
//! | extract, HTTP, no context at all  | 956    | 916   | 510    | −47 %            |
//! | extract `-01`, AMQP               | 2,031  | 1,991 | 1,930  | −5 %             |
//! | extract `-01`, Kafka              | 1,736  | 1,685 | 1,541  | −11 %            |
//!
//! ¹ Less the 411 instructions of the fresh `OwnedHeaders` each operation needs.
//!
//! Where the rest goes: formatting the `traceparent` is 155 instructions (a table lookup per
//! byte); the carrier's own value is the largest share of an inject (the header value's
//! allocation and validation, the AMQP key and value, librdkafka's copy); an extract's largest
//! share is the SDK's `Context`, which puts the remote span in an `Arc` (one allocation and its
//! free, `tests/allocations.rs` in tb-telemetry counts it) that no path can avoid.

mod fixtures;

use std::hint::black_box;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, global};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rdkafka::message::OwnedHeaders;
use tb_telemetry::W3cPropagator;
use tb_telemetry::carrier;
use tb_telemetry::carrier::amqp::{FieldTableExtractor, FieldTableInjector};
use tb_telemetry::carrier::http::{HeaderExtractor, HeaderInjector};
use tb_telemetry::carrier::kafka::{KafkaExtractor, KafkaInjector};

use fixtures::{TRACEPARENT, active_context, amqp_headers, http_headers, kafka_headers};

/// Operations per step.
const N: usize = 10_000;

/// Request headers without any trace context.
fn http_headers_absent() -> http::HeaderMap {
    let mut headers = http_headers();
    headers.remove("traceparent");
    headers
}

/// One step: `op` run [`N`] times, in a function callgrind can name.
macro_rules! step {
    ($name:ident, $setup:expr, |$state:ident| $op:expr) => {
        #[inline(never)]
        fn $name() {
            let mut $state = $setup;
            for _ in 0..N {
                // Inject steps answer `()`; the extract steps' contexts are dropped here.
                #[allow(clippy::unit_arg)]
                black_box($op);
            }
            black_box(&mut $state);
        }
    };
}

fn ours() -> W3cPropagator {
    W3cPropagator::new()
}

// Inject.
step!(
    inject_sdk_hashmap,
    (
        TraceContextPropagator::new(),
        active_context(),
        std::collections::HashMap::<String, String>::new()
    ),
    |s| s.0.inject_context(&s.1, &mut s.2)
);
step!(
    inject_http_global,
    (active_context(), http_headers()),
    |s| global::get_text_map_propagator(|p| p.inject_context(&s.0, &mut HeaderInjector(&mut s.1)))
);
step!(
    inject_http_trait,
    (ours(), active_context(), http_headers()),
    |s| s.0.inject_context(&s.1, &mut HeaderInjector(&mut s.2))
);
step!(
    inject_http_direct,
    (ours(), active_context(), http_headers()),
    |s| carrier::http::inject_with(&s.0, &s.1, &mut s.2)
);
step!(
    inject_amqp_global,
    (active_context(), amqp_headers()),
    |s| global::get_text_map_propagator(
        |p| p.inject_context(&s.0, &mut FieldTableInjector(&mut s.1))
    )
);
step!(
    inject_amqp_trait,
    (ours(), active_context(), amqp_headers()),
    |s| s.0.inject_context(&s.1, &mut FieldTableInjector(&mut s.2))
);
step!(
    inject_amqp_direct,
    (ours(), active_context(), amqp_headers()),
    |s| carrier::amqp::inject_with(&s.0, &s.1, &mut s.2)
);
// rdkafka's headers only grow: each operation gets fresh ones, whose cost is its own step.
step!(kafka_fresh_headers, 0_u8, |_s| {
    OwnedHeaders::new_with_capacity(4)
});
step!(inject_kafka_global, active_context(), |s| {
    let mut injector = KafkaInjector::new(OwnedHeaders::new_with_capacity(4));
    global::get_text_map_propagator(|p| p.inject_context(&s, &mut injector));
    injector
});
step!(inject_kafka_trait, (ours(), active_context()), |s| {
    let mut injector = KafkaInjector::new(OwnedHeaders::new_with_capacity(4));
    s.0.inject_context(&s.1, &mut injector);
    injector
});
step!(inject_kafka_direct, (ours(), active_context()), |s| {
    carrier::kafka::inject_with(&s.0, &s.1, OwnedHeaders::new_with_capacity(4))
});

// Extract.
step!(
    extract_sdk_hashmap,
    (
        TraceContextPropagator::new(),
        std::collections::HashMap::from([("traceparent".to_owned(), TRACEPARENT.to_owned())])
    ),
    |s| s.0.extract_with_context(&Context::new(), &s.1)
);
step!(extract_http_global, http_headers(), |s| {
    global::get_text_map_propagator(|p| {
        p.extract_with_context(&Context::new(), &HeaderExtractor(&s))
    })
});
step!(extract_http_trait, (ours(), http_headers()), |s| s
    .0
    .extract_with_context(&Context::new(), &HeaderExtractor(&s.1)));
step!(extract_http_direct, (ours(), http_headers()), |s| s
    .0
    .extract_from(&Context::new(), &s.1));
step!(extract_http_absent_global, http_headers_absent(), |s| {
    global::get_text_map_propagator(|p| {
        p.extract_with_context(&Context::new(), &HeaderExtractor(&s))
    })
});
step!(
    extract_http_absent_trait,
    (ours(), http_headers_absent()),
    |s| s
        .0
        .extract_with_context(&Context::new(), &HeaderExtractor(&s.1))
);
step!(
    extract_http_absent_direct,
    (ours(), http_headers_absent()),
    |s| s.0.extract_from(&Context::new(), &s.1)
);
step!(extract_amqp_global, amqp_headers(), |s| {
    global::get_text_map_propagator(|p| {
        p.extract_with_context(&Context::new(), &FieldTableExtractor(&s))
    })
});
step!(extract_amqp_trait, (ours(), amqp_headers()), |s| s
    .0
    .extract_with_context(
        &Context::new(),
        &FieldTableExtractor(&s.1)
    ));
step!(extract_amqp_direct, (ours(), amqp_headers()), |s| s
    .0
    .extract_from(&Context::new(), &s.1));
step!(extract_kafka_global, kafka_headers(), |s| {
    global::get_text_map_propagator(|p| {
        p.extract_with_context(&Context::new(), &KafkaExtractor::new(s.as_borrowed()))
    })
});
step!(extract_kafka_trait, (ours(), kafka_headers()), |s| s
    .0
    .extract_with_context(
        &Context::new(),
        &KafkaExtractor::new(s.1.as_borrowed())
    ));
step!(extract_kafka_direct, (ours(), kafka_headers()), |s| s
    .0
    .extract_from(
        &Context::new(),
        &KafkaExtractor::new(s.1.as_borrowed())
    ));

fn main() {
    global::set_text_map_propagator(W3cPropagator::new());
    // Every path extracts the same parent.
    let expected = active_context().span().span_context().trace_id();
    let direct = ours().extract_from(&Context::new(), &http_headers());
    assert_eq!(direct.span().span_context().trace_id(), expected);

    inject_sdk_hashmap();
    inject_http_global();
    inject_http_trait();
    inject_http_direct();
    inject_amqp_global();
    inject_amqp_trait();
    inject_amqp_direct();
    kafka_fresh_headers();
    inject_kafka_global();
    inject_kafka_trait();
    inject_kafka_direct();
    extract_sdk_hashmap();
    extract_http_global();
    extract_http_trait();
    extract_http_direct();
    extract_http_absent_global();
    extract_http_absent_trait();
    extract_http_absent_direct();
    extract_amqp_global();
    extract_amqp_trait();
    extract_amqp_direct();
    extract_kafka_global();
    extract_kafka_trait();
    extract_kafka_direct();
}
