//! The sink's OTLP trace receivers: the gRPC `TraceService/Export` and `POST /v1/traces` over
//! HTTP with protobuf or JSON bodies, either optionally gzip-compressed.
//!
//! Both hand a whole decoded `ExportTraceServiceRequest` to [`TraceStore::ingest`]. Spans with
//! an invalid trace or span id are refused and reported back as a partial success, as the OTLP
//! specification asks; a body that does not decode is a 400 with a JSON `{error, detail}`.

use std::io::Read as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use flate2::read::GzDecoder;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;
use tb_web::ApiError;
use tonic::codec::CompressionEncoding;

use super::store::{IngestOutcome, Limits, Refusal, TraceStore};

/// The largest export request accepted, compressed or not, over either transport. The SDKs'
/// default batch of 512 spans is 100–300 KB; this leaves room for large attributes.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

fn response_for(outcome: IngestOutcome, limits: Limits) -> ExportTraceServiceResponse {
    let invalid = outcome.rejected - outcome.oversized;
    let mut why = Vec::new();
    if invalid > 0 {
        why.push(format!(
            "{invalid} without a 16-byte, non-zero trace id and an 8-byte span id"
        ));
    }
    if outcome.oversized > 0 {
        why.push(format!(
            "{} with more than {} attributes, events or links",
            outcome.oversized, limits.max_attributes_per_span
        ));
    }
    ExportTraceServiceResponse {
        partial_success: (outcome.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: i64::try_from(outcome.rejected).unwrap_or(i64::MAX),
            error_message: format!("spans refused: {}", why.join("; ")),
        }),
    }
}

/// Spans in `request`.
fn span_count(request: &ExportTraceServiceRequest) -> u64 {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum()
}

/// A refused request over HTTP: 413 for too many spans, 429 with `Retry-After` when busy.
fn http_refusal(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::TooManySpans { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_spans",
            refusal.to_string(),
        ),
        Refusal::Busy(_) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", refusal.to_string())
                .with_retry_after(1)
        }
    }
}

/// The OTLP/gRPC trace service over a [`TraceStore`].
#[derive(Clone, Debug)]
pub struct OtlpGrpc {
    store: Arc<TraceStore>,
}

impl OtlpGrpc {
    /// A service storing into `store`.
    pub fn new(store: Arc<TraceStore>) -> Self {
        Self { store }
    }

    /// The tonic server for this service: gzip accepted, requests up to [`MAX_REQUEST_BYTES`].
    pub fn into_server(self) -> TraceServiceServer<Self> {
        TraceServiceServer::new(self)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
    }
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        self.store.note_request(request.encoded_len());
        let _permit = self
            .store
            .admit(span_count(&request))
            .map_err(|r| tonic::Status::resource_exhausted(r.to_string()))?;
        let outcome = self.store.ingest(request);
        Ok(tonic::Response::new(response_for(
            outcome,
            self.store.limits(),
        )))
    }
}

/// Body encodings `POST /v1/traces` understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // Parameters such as `; charset=utf-8` do not change the encoding.
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        // `application/protobuf` is what some exporters send instead of the registered name.
        PROTOBUF | "application/protobuf" => Ok(Encoding::Protobuf),
        JSON => Ok(Encoding::Json),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content-type {content_type:?}; expected {PROTOBUF} or {JSON}"),
        )),
    }
}

/// The body, gunzipped when `Content-Encoding: gzip`, refusing to inflate past
/// [`MAX_REQUEST_BYTES`].
fn decompressed(headers: &HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if content_encoding.is_empty() || content_encoding.eq_ignore_ascii_case(b"identity") {
        return Ok(body);
    }
    if !content_encoding.eq_ignore_ascii_case(b"gzip") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!(
                "content-encoding {:?}; expected gzip or none",
                String::from_utf8_lossy(content_encoding)
            ),
        ));
    }
    let mut out = Vec::with_capacity(body.len() * 4);
    let limit = MAX_REQUEST_BYTES as u64 + 1;
    GzDecoder::new(body.as_ref())
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_gzip", e.to_string()))?;
    if out.len() > MAX_REQUEST_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body inflates past {MAX_REQUEST_BYTES} bytes"),
        ));
    }
    Ok(Bytes::from(out))
}

/// `POST /v1/traces`: an OTLP/HTTP export in protobuf or JSON; answers in the request's
/// encoding.
pub(crate) async fn export_http(
    State(store): State<Arc<TraceStore>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| ApiError::new(r.status(), "invalid_body", r.body_text()))?;
    let encoding = encoding(&headers)?;
    let body = decompressed(&headers, body)?;
    store.note_request(body.len());
    let request = match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_protobuf", e.to_string())
        })?,
        Encoding::Json => serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?,
    };
    let _permit = store.admit(span_count(&request)).map_err(http_refusal)?;
    let response = response_for(store.ingest(request), store.limits());
    Ok(match encoding {
        Encoding::Protobuf => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF))],
            response.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => axum::Json(response).into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str, content_encoding: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("header"),
        );
        if let Some(e) = content_encoding {
            h.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_str(e).expect("header"),
            );
        }
        h
    }

    #[test]
    fn content_type_parameters_and_case_do_not_change_the_encoding() {
        assert_eq!(
            encoding(&headers("Application/JSON; charset=utf-8", None)),
            Ok(Encoding::Json)
        );
        assert_eq!(
            encoding(&headers("application/x-protobuf", None)),
            Ok(Encoding::Protobuf)
        );
        let err = encoding(&headers("text/plain", None)).expect_err("unsupported");
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn gzip_bodies_are_inflated_and_garbage_is_a_bad_request() {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"resourceSpans\":[]}").expect("write");
        let packed = Bytes::from(gz.finish().expect("finish"));
        let h = headers(JSON, Some("gzip"));
        let body = decompressed(&h, packed).expect("inflates");
        assert_eq!(body.as_ref(), b"{\"resourceSpans\":[]}");
        let err = decompressed(&h, Bytes::from_static(b"not gzip")).expect_err("garbage");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn rejected_spans_are_reported_as_partial_success() {
        let limits = Limits::default();
        let ok = response_for(
            IngestOutcome {
                accepted: 3,
                ..IngestOutcome::default()
            },
            limits,
        );
        assert_eq!(ok.partial_success, None);
        let partial = response_for(
            IngestOutcome {
                accepted: 1,
                rejected: 3,
                oversized: 1,
            },
            limits,
        )
        .partial_success
        .expect("partial");
        assert_eq!(partial.rejected_spans, 3);
        assert!(
            partial.error_message.contains("2 without"),
            "{}",
            partial.error_message
        );
        assert!(
            partial.error_message.contains("1 with more than 1024"),
            "{}",
            partial.error_message
        );
    }
}
