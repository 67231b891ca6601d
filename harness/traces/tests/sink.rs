//! The embedded trace sink end to end: real OpenTelemetry SDK exporters (OTLP/gRPC and
//! OTLP/HTTP protobuf) and hand-written OTLP/JSON into a sink on port 0, read back through
//! [`TraceClient`] the way the verifier reads Tempo; plus the sink's errors, eviction and search.

use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::trace::{
    Link, Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as OtlpValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as OtlpKeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracerProvider, SimpleSpanProcessor, SpanData, SpanExporter,
};
use prost::Message as _;
use serde_json::{Value, json};
use tb_telemetry::{FinishedSpan, Protocol};
use tb_traces::TraceClient;
use tb_traces::model::{Kind, Span};
use tb_traces::sink::{self, RunningSink, SinkConfig};
use tokio::time::Instant;

/// Long enough for an export on a loaded CI machine; every wait below ends sooner when its
/// condition holds.
const DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

async fn sink_with(max_spans: u64) -> RunningSink {
    sink::start(SinkConfig {
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        limits: sink::Limits::spans(max_spans),
    })
    .await
    .expect("sink starts")
}

/// A provider for `service` exporting over OTLP to `endpoint` (the sink's base URL).
///
/// Built here rather than with `tb_telemetry::tracer_provider`: its single-service providers
/// export `service.name` as an empty string today (their one route is named `""`).
fn provider(service: &str, protocol: Protocol, endpoint: &str) -> SdkTracerProvider {
    let exporter = match protocol {
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(10))
            .build(),
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(format!("{endpoint}/v1/traces"))
            .with_timeout(Duration::from_secs(10))
            .build(),
    }
    .expect("exporter builds");
    SdkTracerProvider::builder()
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .build()
}

/// Flushes and shuts a provider down off the async workers: both block until the exporter
/// answers, and the gRPC exporter needs the runtime to get that answer.
async fn flush(provider: SdkTracerProvider) {
    tokio::task::spawn_blocking(move || {
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .await
    .expect("flush task");
}

/// One scan as the pipeline makes it, in two services: scan-api's SERVER span and its PRODUCER
/// child, and the worker's CONSUMER span continuing the trace from the message and linking to
/// the producer. Returns the trace id.
fn emit_scan(api: &SdkTracerProvider, worker: &SdkTracerProvider) -> String {
    let api_tracer = api.tracer("tracebench-test");
    let worker_tracer = worker.tracer("tracebench-test");
    let server = api_tracer
        .span_builder("POST /scan")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.response.status_code", 202_i64),
            KeyValue::new("tb.cache_hit", false),
            KeyValue::new("tb.ratio", 0.25),
        ])
        .start(&api_tracer);
    let trace_id = server.span_context().trace_id().to_string();
    let cx = Context::current_with_span(server);
    let mut producer = api_tracer
        .span_builder("publish scan.tasks")
        .with_kind(SpanKind::Producer)
        .with_attributes([KeyValue::new("messaging.system", "rabbitmq")])
        .start_with_context(&api_tracer, &cx);
    let message = producer.span_context().clone();
    producer.end();
    let remote = Context::new().with_remote_span_context(message.clone());
    let mut consumer = worker_tracer
        .span_builder("process scan.tasks")
        .with_kind(SpanKind::Consumer)
        .with_links(vec![Link::with_context(message)])
        .start_with_context(&worker_tracer, &remote);
    consumer.set_status(Status::error("vision failed"));
    consumer.end();
    cx.span().end();
    trace_id
}

fn by_name<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"))
}

fn assert_scan_structure(spans: &[Span]) {
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let server = by_name(spans, "POST /scan");
    let producer = by_name(spans, "publish scan.tasks");
    let consumer = by_name(spans, "process scan.tasks");
    assert_eq!(
        [server.kind, producer.kind, consumer.kind],
        [Kind::Server, Kind::Producer, Kind::Consumer]
    );
    assert_eq!(
        [&server.service, &producer.service, &consumer.service],
        ["scan-api", "scan-api", "worker"]
    );
    assert_eq!(server.parent_span_id, None);
    assert_eq!(producer.parent_span_id.as_ref(), Some(&server.span_id));
    assert_eq!(consumer.parent_span_id.as_ref(), Some(&producer.span_id));
    assert_eq!(consumer.links.len(), 1);
    assert_eq!(consumer.links[0].span_id, producer.span_id);
    assert!(consumer.error && !server.error);
    assert_eq!(server.attr("http.request.method"), Some("POST"));
    assert_eq!(server.attr("http.response.status_code"), Some("202"));
    assert_eq!(server.attr("tb.cache_hit"), Some("false"));
    assert_eq!(server.attr("tb.ratio"), Some("0.25"));
    assert_eq!(producer.attr("messaging.system"), Some("rabbitmq"));
}

async fn export_scan_and_read_it_back(protocol: Protocol) {
    let sink = sink_with(10_000).await;
    let endpoint = match protocol {
        Protocol::Grpc => sink.grpc_endpoint(),
        Protocol::HttpProtobuf => sink.http_endpoint(),
    };
    let api = provider("scan-api", protocol, &endpoint);
    let worker = provider("worker", protocol, &endpoint);
    let trace_id = emit_scan(&api, &worker);
    flush(api).await;
    flush(worker).await;

    let polled = sink
        .client()
        .trace_until(&trace_id, |s| s.len() >= 3, Instant::now() + DEADLINE, POLL)
        .await
        .expect("query");
    assert!(polled.complete, "only {:#?}", polled.spans);
    assert_scan_structure(&polled.spans);
    assert_eq!(sink.store().stats().spans_received, 3);
    sink.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_from_the_sdk_reads_back_with_its_structure() {
    export_scan_and_read_it_back(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_export_from_the_sdk_reads_back_with_its_structure() {
    export_scan_and_read_it_back(Protocol::HttpProtobuf).await;
}

/// Collects exported spans, like the harness's in-process exporter.
#[derive(Clone, Debug, Default)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collect {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(batch);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_spans_convert_to_the_same_model_as_spans_through_the_sink() {
    let sink = sink_with(10_000).await;
    let otlp = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(sink.grpc_endpoint())
        .build()
        .expect("exporter");
    let collected = Collect::default();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("scan-api")
        .build();
    let both = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(BatchSpanProcessor::builder(otlp).build())
        .with_span_processor(SimpleSpanProcessor::new(collected.clone()))
        .build();
    let worker = provider("worker", Protocol::Grpc, &sink.grpc_endpoint());
    let trace_id = emit_scan(&both, &worker);
    flush(both).await;
    flush(worker).await;

    let in_process: Vec<Span> = collected
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|data| {
            Span::from(&FinishedSpan {
                service: "scan-api".to_owned(),
                span: data.clone(),
            })
        })
        .collect();
    let mut through_sink = sink.store().get(&trace_id).expect("trace stored");
    through_sink.retain(|s| s.service == "scan-api");
    let key = |s: &Span| s.span_id.clone();
    let mut in_process = in_process;
    in_process.sort_by_key(key);
    through_sink.sort_by_key(key);
    // The same spans, so ids and timestamps must agree too: this is a test of the conversions,
    // not of a trace's structure.
    assert_eq!(in_process, through_sink);
    assert_eq!(in_process.len(), 2);
}

fn kv(key: &str, value: OtlpValue) -> OtlpKeyValue {
    OtlpKeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// An export request of `traces` traces of `spans_per_trace` spans each from `service`;
/// trace `t` has id `t + 1`, and each trace's first span is its root.
fn request(
    service: &str,
    first_trace: u8,
    traces: u8,
    spans_per_trace: u8,
) -> ExportTraceServiceRequest {
    let mut spans = Vec::new();
    for t in first_trace..first_trace + traces {
        for s in 0..spans_per_trace {
            let id = |n: u8| [[0_u8; 7].as_slice(), &[n]].concat();
            spans.push(OtlpSpan {
                trace_id: [[0_u8; 15].as_slice(), &[t + 1]].concat(),
                span_id: id(s + 1),
                parent_span_id: if s == 0 { Vec::new() } else { id(1) },
                name: format!("span {s}"),
                kind: 2,
                start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(t) * 1_000_000_000,
                end_time_unix_nano: 1_700_000_000_010_000_000 + u64::from(t) * 1_000_000_000,
                ..OtlpSpan::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", OtlpValue::StringValue(service.into()))],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn trace_hex(n: u8) -> String {
    format!("{n:032x}")
}

async fn post(
    sink: &RunningSink,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/traces", sink.http_endpoint()))
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let res = req.send().await.expect("sink answers");
    let status = res.status().as_u16();
    (status, res.bytes().await.expect("body").to_vec())
}

#[tokio::test]
async fn otlp_json_as_the_sdks_send_it_is_ingested() {
    let sink = sink_with(100).await;
    // As the JavaScript SDK's OTLP/HTTP JSON exporter writes it: hex ids, numeric enums,
    // 64-bit integers as strings.
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "node-api"}}]},
        "scopeSpans": [{"scope": {"name": "@opentelemetry/instrumentation-http"}, "spans": [
            {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
             "parentSpanId": "", "name": "GET /scan/{task_id}", "kind": 2,
             "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000004000000",
             "attributes": [{"key": "http.response.status_code", "value": {"intValue": "200"}},
                            {"key": "retry", "value": {"intValue": 1}}],
             "status": {"code": 2, "message": "boom"},
             "links": [{"traceId": "0af7651916cd43dd8448eb211c80319c",
                        "spanId": "b7ad6b7169203331"}]}]}]}]});
    let (status, response) = post(
        &sink,
        "application/json",
        None,
        serde_json::to_vec(&body).expect("json"),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&response));
    let response: Value = serde_json::from_slice(&response).expect("JSON response");
    assert_eq!(response.get("partialSuccess"), Some(&Value::Null));

    let spans = sink
        .client()
        .trace("4bf92f3577b34da6a3ce929d0e0e4736")
        .await
        .expect("query")
        .expect("found");
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(
        (span.service.as_str(), span.name.as_str(), span.kind),
        ("node-api", "GET /scan/{task_id}", Kind::Server)
    );
    assert!(span.error);
    assert_eq!(span.parent_span_id, None);
    assert_eq!(span.attr("http.response.status_code"), Some("200"));
    assert_eq!(span.attr("retry"), Some("1"));
    assert_eq!(span.links[0].span_id, "b7ad6b7169203331");
}

#[tokio::test]
async fn gzip_protobuf_export_is_ingested_and_answered_in_protobuf() {
    let sink = sink_with(100).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&request("gz", 0, 1, 2).encode_to_vec())
        .expect("gzip");
    let (status, body) = post(
        &sink,
        "application/x-protobuf",
        Some("gzip"),
        gz.finish().expect("gzip"),
    )
    .await;
    assert_eq!(status, 200);
    let answer =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            body.as_slice(),
        )
        .expect("protobuf response");
    assert_eq!(answer.partial_success, None);
    assert_eq!(sink.store().get(&trace_hex(1)).map(|s| s.len()), Some(2));
}

#[tokio::test]
async fn malformed_bodies_are_json_errors_and_store_nothing() {
    let sink = sink_with(100).await;
    for (content_type, encoding, body, expected) in [
        (
            "application/x-protobuf",
            None,
            b"\xff\xff\xff".to_vec(),
            400,
        ),
        (
            "application/json",
            None,
            b"{\"resourceSpans\": [".to_vec(),
            400,
        ),
        (
            "application/json",
            None,
            b"{\"resourceSpans\": 7}".to_vec(),
            400,
        ),
        (
            "application/x-protobuf",
            Some("gzip"),
            b"not gzip".to_vec(),
            400,
        ),
        ("text/plain", None, b"hello".to_vec(), 415),
    ] {
        let (status, response) = post(&sink, content_type, encoding, body).await;
        assert_eq!(status, expected, "{content_type} {encoding:?}");
        let error: Value = serde_json::from_slice(&response).expect("JSON error body");
        assert!(
            error["error"].is_string() && error["detail"].is_string(),
            "{error}"
        );
    }
    assert_eq!(sink.store().stats().spans_received, 0);
    // And the sink still works.
    let (status, _) = post(
        &sink,
        "application/x-protobuf",
        None,
        request("ok", 0, 1, 1).encode_to_vec(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn over_max_spans_the_oldest_traces_are_evicted_whole_and_counted() {
    let sink = sink_with(5).await;
    for t in 0..3 {
        let (status, _) = post(
            &sink,
            "application/x-protobuf",
            None,
            request("scan-api", t, 1, 2).encode_to_vec(),
        )
        .await;
        assert_eq!(status, 200);
    }
    let client = sink.client();
    assert_eq!(client.trace(&trace_hex(1)).await.expect("query"), None);
    for t in [2, 3] {
        let spans = client.trace(&trace_hex(t)).await.expect("query");
        assert_eq!(spans.map(|s| s.len()), Some(2), "trace {t} is kept whole");
    }
    let stats: Value = reqwest::get(format!("{}/api/sink/stats", sink.http_endpoint()))
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats JSON");
    assert_eq!(stats["spans_evicted"], 2);
    assert_eq!(stats["traces_evicted"], 1);
    assert_eq!(stats["spans_stored"], 4);
    assert_eq!(stats["spans_received"], 6);
}

#[tokio::test]
async fn an_unknown_trace_is_none_404_and_a_bad_id_is_400() {
    let sink = sink_with(100).await;
    assert_eq!(
        sink.client().trace(&trace_hex(42)).await.expect("query"),
        None
    );
    for (id, expected) in [(trace_hex(42), 404), ("not-hex".to_owned(), 400)] {
        let res = reqwest::get(format!("{}/api/traces/{id}", sink.http_endpoint()))
            .await
            .expect("answer");
        assert_eq!(res.status().as_u16(), expected, "{id}");
        let error: Value = res.json().await.expect("JSON error");
        assert!(error["error"].is_string(), "{error}");
    }
}

#[tokio::test]
async fn search_by_service_tag_finds_its_traces_most_recent_first() {
    let sink = sink_with(100).await;
    for (service, first) in [("scan-api", 0), ("worker", 2), ("scan-api", 4)] {
        let (status, _) = post(
            &sink,
            "application/x-protobuf",
            None,
            request(service, first, 2, 2).encode_to_vec(),
        )
        .await;
        assert_eq!(status, 200);
    }
    let client = sink.client();
    let hits = client
        .search(&[("service.name", "scan-api")], 20)
        .await
        .expect("search");
    let ids: Vec<_> = hits.iter().map(|h| h.trace_id.clone()).collect();
    assert_eq!(
        ids,
        [trace_hex(6), trace_hex(5), trace_hex(2), trace_hex(1)]
    );
    assert!(hits.iter().all(|h| h.root_service_name == "scan-api"));
    assert_eq!(hits[0].root_trace_name, "span 0");
    assert_eq!(hits[0].duration_ms, 10);
    let limited = client
        .search(&[("service.name", "worker"), ("name", "span 1")], 1)
        .await
        .expect("search");
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].trace_id, trace_hex(4));
    assert!(
        client
            .search(&[("service.name", "nobody")], 20)
            .await
            .expect("search")
            .is_empty()
    );
}

#[tokio::test]
async fn search_matches_span_attributes_of_every_type_by_their_rendered_value() {
    let sink = sink_with(100).await;
    let mut req = request("worker", 0, 3, 2);
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    // Trace 1's child span carries the attributes; traces 2 and 3 carry other values.
    spans[1].attributes = vec![
        kv(
            "messaging.message.id",
            OtlpValue::StringValue("0b6c9f3e-1d2a-4c5b-9e8f-7a6b5c4d3e2f".into()),
        ),
        kv("retries", OtlpValue::IntValue(3)),
        kv("ratio", OtlpValue::DoubleValue(0.5)),
        kv("granted", OtlpValue::BoolValue(true)),
        kv("blob", OtlpValue::BytesValue(vec![1, 2, 3])),
        kv("plain", OtlpValue::StringValue("abcd".into())),
    ];
    spans[3].attributes = vec![kv(
        "messaging.message.id",
        OtlpValue::StringValue("another-task".into()),
    )];
    let (status, _) = post(&sink, "application/x-protobuf", None, req.encode_to_vec()).await;
    assert_eq!(status, 200);
    let client = sink.client();
    // A string held verbatim, and values that are renderings of other types (the sink may not
    // rule a span out by its bytes for those): each finds trace 1 alone.
    for (key, value) in [
        (
            "messaging.message.id",
            "0b6c9f3e-1d2a-4c5b-9e8f-7a6b5c4d3e2f",
        ),
        ("retries", "3"),
        ("ratio", "0.5"),
        ("granted", "true"),
        ("blob", "AQID"),
        ("plain", "abcd"),
    ] {
        let hits = client.search(&[(key, value)], 20).await.expect("search");
        let ids: Vec<_> = hits.iter().map(|h| h.trace_id.clone()).collect();
        assert_eq!(ids, [trace_hex(1)], "{key}={value}");
    }
    let none = client
        .search(
            &[(
                "messaging.message.id",
                "0b6c9f3e-1d2a-4c5b-9e8f-000000000000",
            )],
            20,
        )
        .await
        .expect("search");
    assert!(none.is_empty());
}

#[tokio::test]
async fn trace_until_keeps_polling_until_late_spans_arrive() {
    let sink = sink_with(100).await;
    let first = request("scan-api", 0, 1, 1);
    let late = {
        let mut r = request("worker", 0, 1, 2);
        r.resource_spans[0].scope_spans[0].spans.remove(0);
        r
    };
    sink.store().ingest(first);
    // The late span is sent the first time the client sees the trace incomplete, so the test
    // does not depend on timing.
    let (seen, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let store = Arc::clone(sink.store());
    let sender = tokio::spawn(async move {
        if seen_rx.recv().await.is_some() {
            store.ingest(late);
        }
    });
    let polled = sink
        .client()
        .trace_until(
            &trace_hex(1),
            |spans| {
                let _ = seen.send(());
                spans.len() >= 2
            },
            Instant::now() + DEADLINE,
            POLL,
        )
        .await
        .expect("query");
    sender.await.expect("sender");
    assert!(polled.complete);
    assert!(polled.attempts >= 2, "{} attempts", polled.attempts);
    let services: Vec<_> = polled.spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services, ["scan-api", "worker"]);
}

#[tokio::test]
async fn trace_until_returns_what_it_has_at_the_deadline() {
    let sink = sink_with(100).await;
    sink.store().ingest(request("scan-api", 0, 1, 1));
    let client = sink.client();
    let polled = client
        .trace_until(
            &trace_hex(1),
            |spans| spans.len() >= 2,
            Instant::now() + Duration::from_millis(200),
            Duration::from_millis(50),
        )
        .await
        .expect("query");
    assert!(!polled.complete);
    assert_eq!(polled.spans.len(), 1);
    let never = client
        .trace_until(
            &trace_hex(9),
            |_| true,
            Instant::now() + Duration::from_millis(100),
            Duration::from_millis(50),
        )
        .await
        .expect("query");
    assert!(!never.complete && never.spans.is_empty());
}

#[tokio::test]
async fn the_client_reports_an_unreachable_server_as_a_transient_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let client = TraceClient::new(format!("http://{addr}"));
    let err = client
        .trace(&trace_hex(1))
        .await
        .expect_err("nothing listens");
    assert!(err.is_transient(), "{err}");
    assert!(!client.ready().await);
}

#[tokio::test]
async fn ready_answers_ready() {
    let sink = sink_with(100).await;
    assert!(sink.client().ready().await);
    let body = reqwest::get(format!("{}/ready", sink.http_endpoint()))
        .await
        .expect("answer")
        .text()
        .await
        .expect("text");
    assert_eq!(body, "ready");
}

#[tokio::test]
async fn a_zero_bound_is_refused() {
    for limits in [
        sink::Limits::spans(0),
        sink::Limits {
            max_bytes: 0,
            ..sink::Limits::default()
        },
    ] {
        let err = sink::start(SinkConfig {
            limits,
            ..SinkConfig::default()
        })
        .await
        .expect_err("no capacity");
        assert!(matches!(err, sink::SinkError::NoCapacity));
    }
}

/// A value nested `depth` arrays deep, as protobuf.
fn nested_value(depth: usize) -> AnyValue {
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    let mut value = AnyValue {
        value: Some(OtlpValue::IntValue(1)),
    };
    for _ in 0..depth {
        value = AnyValue {
            value: Some(OtlpValue::ArrayValue(ArrayValue {
                values: vec![value],
            })),
        };
    }
    value
}

#[tokio::test]
async fn hostile_otlp_is_refused_within_the_limits_and_the_sink_keeps_serving() {
    let sink = sink::start(SinkConfig {
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        limits: sink::Limits {
            max_spans_per_request: 10,
            max_attributes_per_span: 4,
            max_concurrent_requests: 1,
            ..sink::Limits::default()
        },
    })
    .await
    .expect("sink starts");
    let protobuf = "application/x-protobuf";
    let error_of = |body: &[u8]| -> String {
        let v: Value = serde_json::from_slice(body).expect("a JSON error");
        v["error"].as_str().unwrap_or_default().to_owned()
    };

    // A gzip bomb: 32 MiB of zeros in a few KB, refused before it is inflated past the limit.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 32 << 20]).expect("gzip");
    let bomb = gz.finish().expect("gzip");
    assert!(bomb.len() < 64 * 1024);
    let (status, body) = post(&sink, protobuf, Some("gzip"), bomb).await;
    assert_eq!((status, error_of(&body)), (413, "too_large".to_owned()));

    // More spans than one request may carry: refused whole.
    let (status, body) = post(
        &sink,
        protobuf,
        None,
        request("many", 0, 1, 11).encode_to_vec(),
    )
    .await;
    assert_eq!(
        (status, error_of(&body)),
        (413, "too_many_spans".to_owned())
    );

    // Values nested past the decoder's recursion limit: a bad request, not a stack overflow.
    let mut deep = request("deep", 0, 1, 1);
    deep.resource_spans[0].scope_spans[0].spans[0].attributes = vec![OtlpKeyValue {
        key: "deep".to_owned(),
        value: Some(nested_value(10_000)),
        ..Default::default()
    }];
    let (status, body) = post(&sink, protobuf, None, deep.encode_to_vec()).await;
    assert_eq!(
        (status, error_of(&body)),
        (400, "invalid_protobuf".to_owned())
    );
    let depth = 10_000;
    let json_deep = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{}","spanId":"00f067aa0ba902b7","name":"x","attributes":[{{"key":"deep","value":{}{{"intValue":"1"}}{}}}]}}]}}]}}]}}"#,
        trace_hex(9),
        r#"{"arrayValue":{"values":["#.repeat(depth),
        "]}}".repeat(depth)
    );
    let (status, body) = post(&sink, "application/json", None, json_deep.into_bytes()).await;
    assert_eq!((status, error_of(&body)), (400, "invalid_json".to_owned()));

    // A span with too many attributes is refused alone; the rest of its request is stored.
    let mut wide = request("wide", 0, 1, 3);
    wide.resource_spans[0].scope_spans[0].spans[2].attributes = (0..5)
        .map(|i| kv(&format!("k{i}"), OtlpValue::IntValue(i)))
        .collect();
    let (status, body) = post(&sink, protobuf, None, wide.encode_to_vec()).await;
    assert_eq!(status, 200);
    let answer =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            body.as_slice(),
        )
        .expect("protobuf response");
    let partial = answer.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("more than 4"),
        "{}",
        partial.error_message
    );
    assert_eq!(sink.store().get(&trace_hex(1)).map(|s| s.len()), Some(2));

    // Busy: with the one request slot taken, the next request is told to come back.
    let permit = sink.store().admit(1).expect("a free slot");
    let res = reqwest::Client::new()
        .post(format!("{}/v1/traces", sink.http_endpoint()))
        .header("content-type", protobuf)
        .body(request("busy", 1, 1, 1).encode_to_vec())
        .send()
        .await
        .expect("answers");
    assert_eq!(res.status().as_u16(), 429);
    assert_eq!(
        res.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    drop(permit);

    // A search limit past the cap is a bad request, not a long render under the lock.
    let res = reqwest::get(format!(
        "{}/api/search?limit={}",
        sink.http_endpoint(),
        sink::tempo::MAX_SEARCH_LIMIT + 1
    ))
    .await
    .expect("answers");
    assert_eq!(res.status().as_u16(), 400);

    // Still serving, and every refusal counted.
    let (status, _) = post(
        &sink,
        protobuf,
        None,
        request("ok", 1, 1, 2).encode_to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sink.store().get(&trace_hex(2)).map(|s| s.len()), Some(2));
    let stats = sink.store().stats();
    assert_eq!((stats.requests_refused, stats.spans_rejected), (2, 1));
}
