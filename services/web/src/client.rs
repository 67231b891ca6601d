//! Outgoing HTTP with a CLIENT span: the span is created, injected into the request's headers,
//! and given the response status, so every call a service makes is one traced hop.

use std::time::Duration;

use http::{HeaderMap, Method};
use serde::Serialize;
use tb_telemetry::spans;
use tracing::Instrument;

/// Why a call did not produce a successful response.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The URL could not be parsed.
    #[error("invalid url {0}")]
    Url(String),
    /// No answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// Connection or protocol failure.
    #[error("transport: {0}")]
    Transport(reqwest::Error),
    /// The server answered with a non-2xx status.
    #[error("status {status}")]
    Status {
        /// The status code.
        status: u16,
        /// `Retry-After` in seconds, when the server sent one (429, 503).
        retry_after: Option<u64>,
    },
}

impl CallError {
    /// A low-cardinality class for `error.type`.
    pub fn kind(&self) -> String {
        match self {
            Self::Url(_) => "invalid_url".to_owned(),
            Self::Timeout => "timeout".to_owned(),
            Self::Transport(_) => "transport".to_owned(),
            Self::Status { status, .. } => status.to_string(),
        }
    }
}

/// POSTs `body` as JSON to `url` inside a CLIENT span named `name` (the seed's
/// `call_vision_api`; `None` keeps the convention's `POST`), carrying the span's trace context.
/// Returns the successful response.
///
/// # Errors
///
/// Fails on a bad URL, a timeout, a transport error, or a non-2xx status; the span records it.
pub async fn post_json<T: Serialize + ?Sized>(
    client: &reqwest::Client,
    name: Option<&str>,
    url: &str,
    body: &T,
    timeout: Duration,
) -> Result<reqwest::Response, CallError> {
    post_json_with(client, name, url, body, timeout, true).await
}

/// [`post_json`], with the trace headers left out when `propagate` is false (the
/// `strip_headers` fault).
///
/// # Errors
///
/// As [`post_json`].
pub async fn post_json_with<T: Serialize + ?Sized>(
    client: &reqwest::Client,
    name: Option<&str>,
    url: &str,
    body: &T,
    timeout: Duration,
    propagate: bool,
) -> Result<reqwest::Response, CallError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| CallError::Url(url.to_owned()))?;
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let port = parsed.port_or_known_default().unwrap_or(0);
    let span = spans::http_client(&Method::POST, url, &host, port);
    if let Some(name) = name {
        span.record("otel.name", name);
    }
    let mut headers = HeaderMap::new();
    if propagate {
        spans::inject_http(&span, &mut headers);
    }
    let request = client
        .post(parsed)
        .headers(headers)
        .json(body)
        .timeout(timeout);
    async {
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                spans::record_http_status(&tracing::Span::current(), status, true);
                if response.status().is_success() {
                    Ok(response)
                } else {
                    let retry_after = response
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse().ok());
                    Err(CallError::Status {
                        status,
                        retry_after,
                    })
                }
            }
            Err(e) if e.is_timeout() => {
                spans::record_error(&tracing::Span::current(), "timeout");
                Err(CallError::Timeout)
            }
            Err(e) => {
                spans::record_error(&tracing::Span::current(), "transport");
                Err(CallError::Transport(e))
            }
        }
    }
    .instrument(span)
    .await
}
