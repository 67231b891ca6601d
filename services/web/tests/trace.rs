//! The request-tracing middleware on a real router: span name from the route template, kind,
//! status, and the caller's trace continued.

use axum::Router;
use axum::body::Body;
use axum::middleware;
use axum::routing::get;
use http::{Request, StatusCode};
use opentelemetry::global;
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tb_telemetry::W3cPropagator;
use tb_web::{ApiError, trace_requests};
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

fn app() -> Router {
    Router::new()
        .route(
            "/scan/{task_id}",
            get(|| async { ApiError::not_found("no such task") }),
        )
        .route_layer(middleware::from_fn(trace_requests))
}

/// Sends one request through the router with an OpenTelemetry subscriber and returns its spans.
fn spans_of(request: Request<Body>) -> (StatusCode, Vec<SpanData>) {
    global::set_text_map_propagator(W3cPropagator::new());
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tb_telemetry::setup::otel_layer(provider.tracer("test")));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let status = tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async { app().oneshot(request).await.expect("infallible").status() })
    });
    provider.force_flush().expect("flush");
    (status, exporter.get_finished_spans().expect("spans"))
}

#[test]
fn request_span_is_named_by_route_template_and_continues_the_trace() {
    let request = Request::get("/scan/abc-123")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Body::empty())
        .expect("request");
    let (status, spans) = spans_of(request);
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.name, "GET /scan/{task_id}");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(span.parent_span_id.to_string(), "00f067aa0ba902b7");
    let attr = |key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
    };
    assert_eq!(attr("http.response.status_code").as_deref(), Some("404"));
    assert_eq!(attr("url.path").as_deref(), Some("/scan/abc-123"));
    // A 404 is the client's mistake: the server span is not an error.
    assert_eq!(span.status, opentelemetry::trace::Status::Unset);
}
