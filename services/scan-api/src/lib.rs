//! The scan API, the pipeline's front door (the seed's FastAPI service).
//!
//! `POST /scan` runs `validate_request` → `create_task` → `publish scan.tasks` inside the request's
//! SERVER span and answers `202 {"task_id", "status": "processing", "trace_id"}` once RabbitMQ has
//! confirmed the task. `GET /scan/{task_id}` reads the event store. `POST /test` speaks the W3C
//! trace-context test-suite protocol. Client mistakes are 4xx JSON errors, never 5xx.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use opentelemetry::trace::TraceContextExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tb_messaging::amqp::Publisher;
use tb_messaging::celery::TaskMessage;
use tb_store::{EventStore, ScanRecord, ScanResult, ScanState};
use tb_telemetry::fault::{Strip, propagate};
use tb_web::{ApiError, Json, in_service, trace_requests};
use tokio::net::TcpListener;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The service name scan-api's spans carry.
pub const SERVICE: &str = "scan-api";

/// Largest request body accepted; larger ones get 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Most entries one `POST /test` may carry.
pub const MAX_TEST_CASES: usize = 32;

const MAX_URL_LEN: usize = 2048;
const MAX_USER_ID_LEN: usize = 128;

/// What scan-api needs: where to publish, where scans are recorded, and an HTTP client for the
/// W3C test protocol. Cheap to clone.
#[derive(Clone)]
pub struct ScanApiState {
    publisher: Publisher,
    store: Arc<dyn EventStore>,
    http: reqwest::Client,
    origin: Arc<str>,
    strip_amqp: Option<Arc<Strip>>,
    w3c_test_endpoint: bool,
}

impl ScanApiState {
    /// State publishing through `publisher` and recording in `store`.
    pub fn new(publisher: Publisher, store: Arc<dyn EventStore>) -> Self {
        Self {
            publisher,
            store,
            http: reqwest::Client::new(),
            origin: Arc::from(format!("{}@scan-api", std::process::id())),
            strip_amqp: None,
            w3c_test_endpoint: false,
        }
    }

    /// Turns `POST /test` (the W3C test suite's protocol) on. Off by default: it makes scan-api
    /// post to URLs its caller chooses, so even when on it posts only to loopback addresses,
    /// at most [`MAX_TEST_CASES`] per request.
    #[must_use]
    pub fn with_w3c_test_endpoint(mut self, on: bool) -> Self {
        self.w3c_test_endpoint = on;
        self
    }

    /// Fault injection: publishes the share `strip` says (it may change while scan-api runs)
    /// of the tasks without trace headers.
    #[must_use]
    pub fn with_strip_amqp(mut self, strip: Arc<Strip>) -> Self {
        self.strip_amqp = Some(strip);
        self
    }
}

/// `POST /scan`'s body.
#[derive(Debug, Deserialize)]
pub struct ScanRequest {
    /// The image to scan, an `http(s)` URL.
    pub image_url: String,
    /// Who scans.
    pub user_id: String,
}

/// `POST /scan`'s answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScanAccepted {
    /// The Celery task id.
    pub task_id: String,
    /// Always `processing`.
    pub status: ScanState,
    /// The trace this scan is recorded under (`null` when tracing is off).
    pub trace_id: Option<String>,
}

/// `GET /scan/{task_id}`'s answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScanStatus {
    /// The Celery task id.
    pub task_id: String,
    /// Where the scan is.
    pub status: ScanState,
    /// Attempts started by the worker so far.
    pub attempts: u32,
    /// The result, once completed.
    pub result: Option<ScanResult>,
    /// The last error, once failed.
    pub error: Option<String>,
}

/// One entry of the W3C test-suite protocol's `POST /test` body.
#[derive(Debug, Deserialize)]
pub struct TestCase {
    /// Where to POST next.
    pub url: String,
    /// What to POST there, as JSON.
    pub arguments: Value,
}

fn validate(request: &ScanRequest) -> Result<(), ApiError> {
    let url = request.image_url.trim();
    if url.is_empty() {
        return Err(ApiError::bad_request("image_url: must not be empty"));
    }
    if url.len() > MAX_URL_LEN {
        return Err(ApiError::bad_request(format!(
            "image_url: longer than {MAX_URL_LEN} bytes"
        )));
    }
    let http = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    if !http.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/')) {
        return Err(ApiError::bad_request("image_url: expected an http(s) URL"));
    }
    let user = &request.user_id;
    if user.is_empty() || user.len() > MAX_USER_ID_LEN {
        return Err(ApiError::bad_request(format!(
            "user_id: expected 1 to {MAX_USER_ID_LEN} characters"
        )));
    }
    if !user
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err(ApiError::bad_request(
            "user_id: expected letters, digits and - _ . @ only",
        ));
    }
    Ok(())
}

/// The trace id of the current span, if it is part of a trace.
fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

async fn create_scan(
    State(state): State<ScanApiState>,
    Json(request): Json<ScanRequest>,
) -> Result<Response, ApiError> {
    tracing::info_span!("validate_request").in_scope(|| validate(&request))?;

    let task_id = uuid::Uuid::new_v4().to_string();
    let record = ScanRecord::new(&task_id, &request.user_id, request.image_url.trim());
    state
        .store
        .create(record)
        .instrument(tracing::info_span!("create_task", task.id = %task_id))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()))?;

    let task = TaskMessage::process_image(
        &task_id,
        request.image_url.trim(),
        &request.user_id,
        &state.origin,
    );
    let propagated = propagate(state.strip_amqp.as_deref());
    if let Err(e) = state.publisher.publish_traced_with(&task, propagated).await {
        // The broker is away or slow: the scan was not accepted, and the client may try again
        // shortly (the publisher reconnects on its own).
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "broker_unavailable",
            e.to_string(),
        )
        .with_retry_after(1));
    }
    tracing::info!(task.id = %task_id, user.id = %request.user_id, "scan accepted");
    let body = ScanAccepted {
        task_id,
        status: ScanState::Processing,
        trace_id: current_trace_id(),
    };
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

async fn get_scan(
    State(state): State<ScanApiState>,
    Path(task_id): Path<String>,
) -> Result<axum::Json<ScanStatus>, ApiError> {
    let record = state
        .store
        .get(&task_id)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()))?
        .ok_or_else(|| ApiError::not_found(format!("no scan with task_id {task_id}")))?;
    Ok(axum::Json(ScanStatus {
        task_id: record.task_id,
        status: record.state,
        attempts: record.attempts,
        result: record.result,
        error: record.error,
    }))
}

/// The W3C trace-context test suite's protocol: POST each case's `arguments` to its `url`,
/// carrying the current trace context, then answer 200. A failing callee does not fail the
/// request; the suite judges by what the callee received. Off (404) unless turned on; then only
/// loopback targets and at most [`MAX_TEST_CASES`] entries, checked before anything is sent.
async fn w3c_test(
    State(state): State<ScanApiState>,
    Json(cases): Json<Vec<TestCase>>,
) -> Result<StatusCode, ApiError> {
    if !state.w3c_test_endpoint {
        return Err(ApiError::not_found(
            "POST /test is off; start scan-api with --w3c-test-endpoint to run the W3C test suite",
        ));
    }
    if cases.len() > MAX_TEST_CASES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_TEST_CASES} test cases per request, got {}",
            cases.len()
        )));
    }
    if let Some((i, case)) = cases.iter().enumerate().find(|(_, c)| !loopback(&c.url)) {
        return Err(ApiError::bad_request(format!(
            "[{i}].url: {:?} is not an http URL on a loopback address",
            case.url
        )));
    }
    for case in cases {
        let result = tb_web::client::post_json(
            &state.http,
            None,
            &case.url,
            &case.arguments,
            Duration::from_secs(5),
        )
        .await;
        if let Err(e) = result {
            tracing::warn!(url = %case.url, error = %e, "test callee failed");
        }
    }
    Ok(StatusCode::OK)
}

/// Whether `url` is `http(s)://` on `localhost` or a loopback IP address.
fn loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let host = url.host_str().unwrap_or_default();
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    matches!(url.scheme(), "http" | "https")
        && (host.eq_ignore_ascii_case("localhost")
            || ip
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// scan-api's routes: `POST /scan`, `GET /scan/{task_id}`, `POST /test`, `GET /healthz`.
pub fn app(state: ScanApiState) -> Router {
    let router = Router::new()
        .route("/scan", post(create_scan))
        .route("/scan/{task_id}", get(get_scan))
        .route("/test", post(w3c_test))
        .route_layer(middleware::from_fn(trace_requests))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    in_service(router, SERVICE).with_state(state)
}

/// Serves scan-api on `listener` until `shutdown` completes, then drains requests in flight
/// (each of which waits for its publish confirm).
///
/// # Errors
///
/// Fails when the server's accept loop fails.
pub async fn run(
    state: ScanApiState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(url: &str, user: &str) -> ScanRequest {
        ScanRequest {
            image_url: url.to_owned(),
            user_id: user.to_owned(),
        }
    }

    #[test]
    fn validation_names_the_offending_field() {
        assert!(validate(&req("https://img.example/a.jpg", "user-1")).is_ok());
        for (url, user, field) in [
            ("", "u", "image_url"),
            ("ftp://x/a.jpg", "u", "image_url"),
            ("https://", "u", "image_url"),
            ("https:///a.jpg", "u", "image_url"),
            ("https://x/a.jpg", "", "user_id"),
            ("https://x/a.jpg", "a b", "user_id"),
        ] {
            let err = validate(&req(url, user)).expect_err("invalid");
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(
                err.detail.starts_with(field),
                "{url:?} {user:?}: {}",
                err.detail
            );
        }
        let long = format!("https://x/{}", "a".repeat(MAX_URL_LEN));
        assert!(validate(&req(&long, "u")).is_err());
    }

    #[test]
    fn the_test_endpoint_posts_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:7777/callback",
            "http://127.9.9.9/x",
            "http://localhost:1/",
            "http://[::1]:8080/x",
        ] {
            assert!(loopback(ok), "{ok}");
        }
        for bad in [
            "http://10.0.0.1/x",
            "http://example.com/",
            "http://169.254.169.254/latest/meta-data",
            "http://127.0.0.1.example.com/",
            "file:///etc/passwd",
            "ftp://127.0.0.1/",
            "not a url",
            "http://[::ffff:10.0.0.1]/",
        ] {
            assert!(!loopback(bad), "{bad}");
        }
    }
}
