//! Span helpers and JSON logs through a real subscriber: parent/link edges, kinds, sampling and
//! the ids in log lines, checked on the spans the SDK exports.

use std::io::Write;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue, Method};
use lapin::types::FieldTable;
use opentelemetry::global;
use opentelemetry::trace::{SpanKind, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tb_telemetry::carrier;
use tb_telemetry::log::JsonLogLayer;
use tb_telemetry::setup::sampler;
use tb_telemetry::spans::{self, ConsumerRelation, MessagingSystem};
use tb_telemetry::{Sampling, W3cPropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// Log lines captured in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().expect("log buffer").clone();
        String::from_utf8(bytes)
            .expect("utf-8 logs")
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }
}

struct Harness {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
    logs: Captured,
}

impl Harness {
    fn new(sampling: Sampling) -> Self {
        global::set_text_map_propagator(W3cPropagator::new());
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler(sampling).expect("sampler"))
            .with_simple_exporter(exporter.clone())
            .build();
        Self {
            provider,
            exporter,
            logs: Captured::default(),
        }
    }

    /// Runs `f` with this harness's subscriber as the thread's default.
    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let logs = self.logs.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tb_telemetry::setup::otel_layer(
                self.provider.tracer("test"),
            ))
            .with(JsonLogLayer::new(move || logs.clone()));
        tracing::subscriber::with_default(subscriber, f)
    }

    fn spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().expect("flush");
        self.exporter.get_finished_spans().expect("finished spans")
    }

    fn span(&self, name: &str) -> SpanData {
        self.spans()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span named {name}"))
    }
}

const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn headers_with(traceparent: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", HeaderValue::from_static(traceparent));
    headers
}

#[test]
fn json_log_line_inside_a_span_has_the_spans_ids() {
    let h = Harness::new(Sampling::AlwaysOn);
    let (trace_id, span_id) = h.run(|| {
        tracing::info!("before any span");
        let span = tracing::info_span!("process_image");
        let _entered = span.enter();
        tracing::info!(task_id = "t-1", attempt = 2, "Processing scan");
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        (sc.trace_id().to_string(), sc.span_id().to_string())
    });

    let lines = h.logs.lines();
    assert_eq!(lines.len(), 2);
    let outside = &lines[0];
    assert!(outside.get("trace_id").is_none() && outside.get("span_id").is_none());

    let inside = &lines[1];
    assert_eq!(inside["trace_id"], trace_id.as_str());
    assert_eq!(inside["span_id"], span_id.as_str());
    assert_eq!(inside["task_id"], "t-1");
    assert_eq!(inside["attempt"], 2);
    assert_eq!(inside["message"], "Processing scan");
    assert_eq!(trace_id.len(), 32);
    assert_eq!(span_id.len(), 16);

    let exported = h.span("process_image");
    assert_eq!(exported.span_context.trace_id().to_string(), trace_id);
    assert_eq!(exported.span_context.span_id().to_string(), span_id);
}

#[test]
fn http_server_span_continues_a_valid_incoming_trace() {
    let h = Harness::new(Sampling::AlwaysOn);
    h.run(|| {
        let span = spans::http_server(
            &Method::POST,
            "/scan",
            "/scan",
            carrier::http::extract(&headers_with(INCOMING)),
        );
        spans::record_http_status(&span, 202, false);
    });
    let s = h.span("POST /scan");
    assert_eq!(s.span_kind, SpanKind::Server);
    assert_eq!(
        s.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(s.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert!(s.parent_span_is_remote);
    assert!(
        s.attributes
            .iter()
            .any(|kv| kv.key.as_str() == "http.response.status_code" && kv.value.as_str() == "202")
    );
}

#[test]
fn http_server_span_with_invalid_traceparent_starts_a_new_trace() {
    let h = Harness::new(Sampling::AlwaysOn);
    for bad in [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
    ] {
        h.run(|| {
            drop(spans::http_server(
                &Method::POST,
                "/scan",
                "/scan",
                carrier::http::extract(&headers_with(bad)),
            ))
        });
    }
    let spans = h.spans();
    assert_eq!(spans.len(), 3);
    for s in spans {
        assert!(s.span_context.is_valid());
        assert_ne!(
            s.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(s.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    }
}

/// Publishes through RabbitMQ headers and consumes with `relation`; returns (producer, consumer).
fn publish_then_consume(h: &Harness, relation: ConsumerRelation) -> (SpanData, SpanData) {
    h.run(|| {
        let mut headers = FieldTable::default();
        {
            let producer = spans::producer(MessagingSystem::RabbitMq, "scan.tasks");
            carrier::amqp::inject(&producer.context(), &mut headers);
        }
        let consumer = spans::consumer(
            MessagingSystem::RabbitMq,
            "scan.tasks",
            carrier::amqp::extract(&headers),
            relation,
        );
        drop(consumer);
    });
    (h.span("publish scan.tasks"), h.span("process scan.tasks"))
}

#[test]
fn amqp_consumer_as_child_continues_the_producers_trace() {
    let h = Harness::new(Sampling::AlwaysOn);
    let (producer, consumer) = publish_then_consume(&h, ConsumerRelation::Child);
    assert_eq!(producer.span_kind, SpanKind::Producer);
    assert_eq!(consumer.span_kind, SpanKind::Consumer);
    assert_eq!(
        consumer.span_context.trace_id(),
        producer.span_context.trace_id()
    );
    assert_eq!(consumer.parent_span_id, producer.span_context.span_id());
    assert!(consumer.links.is_empty());
}

#[test]
fn amqp_consumer_as_link_starts_a_trace_linked_to_the_producer() {
    let h = Harness::new(Sampling::AlwaysOn);
    let (producer, consumer) = publish_then_consume(&h, ConsumerRelation::Link);
    assert_ne!(
        consumer.span_context.trace_id(),
        producer.span_context.trace_id()
    );
    assert_eq!(
        consumer.parent_span_id,
        opentelemetry::trace::SpanId::INVALID
    );
    let links: Vec<_> = consumer
        .links
        .iter()
        .map(|l| (l.span_context.trace_id(), l.span_context.span_id()))
        .collect();
    assert_eq!(
        links,
        vec![(
            producer.span_context.trace_id(),
            producer.span_context.span_id()
        )]
    );
}

#[test]
fn unsampled_incoming_trace_produces_no_spans_downstream() {
    let h = Harness::new(Sampling::AlwaysOn);
    let injected = h.run(|| {
        let span = spans::http_server(
            &Method::POST,
            "/scan",
            "/scan",
            carrier::http::extract(&headers_with(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            )),
        );
        let _entered = span.enter();
        let child = tracing::info_span!("validate_request");
        let mut out = HeaderMap::new();
        spans::inject_http(&child, &mut out);
        out
    });
    assert!(h.spans().is_empty(), "the sampled flag was not honoured");
    assert_eq!(
        injected
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(|v| &v[..36]),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "the trace id still travels"
    );
    assert!(
        injected["traceparent"]
            .to_str()
            .is_ok_and(|v| v.ends_with("-00"))
    );
}

#[test]
fn random_flag_survives_a_hop_through_a_child_span() {
    let h = Harness::new(Sampling::AlwaysOn);
    let injected = h.run(|| {
        let span = spans::http_server(
            &Method::POST,
            "/scan",
            "/scan",
            carrier::http::extract(&headers_with(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
            )),
        );
        let _entered = span.enter();
        let client = spans::http_client(
            &Method::POST,
            "http://127.0.0.1:8001/v1/analyze",
            "127.0.0.1",
            8001,
        );
        let mut out = HeaderMap::new();
        spans::inject_http(&client, &mut out);
        out
    });
    let tp = injected["traceparent"].to_str().expect("ascii");
    assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    assert!(tp.ends_with("-03"), "{tp}");
    let client = h.span("POST");
    assert_eq!(client.span_kind, SpanKind::Client);
    assert_eq!(client.span_context.trace_flags().to_u8(), 0x03);
}

#[test]
fn kafka_consumer_continues_trace_from_headers() {
    let h = Harness::new(Sampling::AlwaysOn);
    h.run(|| {
        let producer = spans::producer(MessagingSystem::Kafka, "scan.completed");
        let headers =
            carrier::kafka::inject(&producer.context(), rdkafka::message::OwnedHeaders::new());
        drop(producer);
        let consumer = spans::consumer(
            MessagingSystem::Kafka,
            "scan.completed",
            carrier::kafka::extract(headers.as_borrowed()),
            ConsumerRelation::Child,
        );
        consumer.record(spans::keys::MESSAGING_KAFKA_OFFSET, 7);
    });
    let producer = h.span("publish scan.completed");
    let consumer = h.span("process scan.completed");
    assert_eq!(consumer.parent_span_id, producer.span_context.span_id());
    assert!(
        consumer
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "messaging.kafka.offset")
    );
    assert!(
        consumer
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "messaging.system" && kv.value.as_str() == "kafka")
    );
}
