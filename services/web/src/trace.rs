//! Request tracing middleware: every matched request runs inside a SERVER span named
//! `METHOD /route/{template}` that continues the caller's trace from the W3C headers.
//!
//! Install it with `Router::route_layer(axum::middleware::from_fn(trace_requests))`, so that the
//! matched route template is known and unmatched paths do not create spans.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tb_telemetry::{carrier, spans};
use tracing::Instrument;

/// Runs the request inside a SERVER span and records the response status on it.
pub async fn trace_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let remote = carrier::http::extract(req.headers());
    let span = spans::http_server(req.method(), &route, req.uri().path(), remote);
    let response = next.run(req).instrument(span.clone()).await;
    spans::record_http_status(&span, response.status().as_u16(), false);
    response
}

/// Runs every request of `router` as work of `service` (see [`tb_telemetry::service`]), so its
/// spans carry that service's name when several services share a process. Add it last, so it
/// wraps the tracing middleware.
pub fn in_service<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    service: &'static str,
) -> axum::Router<S> {
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| tb_telemetry::service::scope(service, next.run(req)),
    ))
}
