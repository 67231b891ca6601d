//! [`TraceClient`]: reads traces through Tempo's HTTP query API, from the embedded sink or from a
//! real Tempo, into model [`Span`]s.
//!
//! Tempo's v1 trace-by-id answer (`GET /api/traces/{id}`) is `{"batches": [ResourceSpans...]}`
//! written by gogo/protobuf's `jsonpb` with default options, so it differs from OTLP/JSON: ids
//! are base64 (protobuf's JSON form of `bytes`) rather than hex, enums are names
//! (`"SPAN_KIND_SERVER"`, `"STATUS_CODE_ERROR"`) rather than numbers, 64-bit integers are
//! strings, and default values are left out (a root span has no `parentSpanId`). Newer Tempo
//! builds write hex ids, the sink writes OTLP/JSON, and Tempo before 2.0 said
//! `instrumentationLibrarySpans` for `scopeSpans`. The parser here accepts all of these.
//!
//! # Tempo and completeness
//!
//! A trace is never "complete" from Tempo's side: spans arrive whenever their services' batch
//! processors export them (seconds apart with the SDKs' default 5 s delay). A by-id query reads
//! the ingesters (live store) as well as the backend, so a trace is found as soon as its first
//! spans are ingested, but it may still lack spans still queued in some exporter. Tag search is
//! later still: a trace becomes searchable only once the ingester has cut it from its live
//! traces, `trace_idle_period` (10 s by default) after its last span arrived, and it is in the
//! object store only after the block is flushed (`max_block_duration`). Hence
//! [`TraceClient::trace_until`]: poll by id until the caller's completeness test holds or a
//! deadline passes. Against Tempo, give the deadline at least the exporters' batch delay plus a
//! few seconds; against the sink, the batch delay alone.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine as _;
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::convert::{UNKNOWN_SERVICE, hex};
use crate::model::{Kind, Link, Span, TraceSummary};

/// Why a query through [`TraceClient`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL plus path is not a URL.
    #[error("invalid URL {url}: {detail}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The request could not be sent or its answer not read (connection refused, timeout).
    #[error("{url}: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a status other than success (or 404 for a trace).
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: StatusCode,
        /// The body, for the message.
        body: String,
    },
    /// The answer is not the JSON expected.
    #[error("{url}: unexpected answer: {detail}")]
    Decode {
        /// The URL.
        url: String,
        /// What did not parse.
        detail: String,
    },
}

impl ClientError {
    /// Whether asking again may succeed: transport failures, 5xx and 429 (Tempo restarting,
    /// overloaded), as opposed to a request or an answer that is wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            Self::Url { .. } | Self::Decode { .. } => false,
        }
    }
}

/// What [`TraceClient::trace_until`] saw last.
#[derive(Clone, Debug, PartialEq)]
pub struct Polled {
    /// The spans of the last successful fetch; empty when the trace was never found.
    pub spans: Vec<Span>,
    /// Whether the completeness test held (false: the deadline passed first).
    pub complete: bool,
    /// Fetches made.
    pub attempts: u32,
}

/// A client of Tempo's HTTP query API (the embedded sink's or a real Tempo's).
#[derive(Clone, Debug)]
pub struct TraceClient {
    base: String,
    http: reqwest::Client,
}

/// Per-request timeout: a by-id query of a large trace on a loaded Tempo takes a few seconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl TraceClient {
    /// A client of the API at `base_url` (`http://127.0.0.1:4318` for the sink,
    /// `http://127.0.0.1:3200` for Tempo).
    pub fn new(base_url: impl Into<String>) -> Self {
        let base = base_url.into().trim_end_matches('/').to_owned();
        Self {
            base,
            http: reqwest::Client::new(),
        }
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn get(&self, url: String) -> Result<Option<Fetched>, ClientError> {
        let response = self
            .http
            .get(&url)
            .header(http::header::ACCEPT, "application/json")
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|source| {
                if source.is_builder() {
                    ClientError::Url {
                        url: url.clone(),
                        detail: source.to_string(),
                    }
                } else {
                    ClientError::Transport {
                        url: url.clone(),
                        source,
                    }
                }
            })?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = response
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        if !status.is_success() {
            return Err(ClientError::Status {
                url,
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(Some(Fetched { url, body }))
    }

    /// The spans of a trace (id in hex), or `None` when the server does not know it (404, or an
    /// answer without spans).
    ///
    /// # Errors
    ///
    /// Fails when the server cannot be reached, answers with an error status, or answers with
    /// something that is not a Tempo trace.
    pub async fn trace(&self, trace_id: &str) -> Result<Option<Vec<Span>>, ClientError> {
        let url = format!("{}/api/traces/{}", self.base, trace_id);
        let Some(body) = self.get(url).await? else {
            return Ok(None);
        };
        let spans = parse_tempo_trace(&body.body).map_err(|detail| ClientError::Decode {
            url: body.url,
            detail,
        })?;
        Ok((!spans.is_empty()).then_some(spans))
    }

    /// Fetches a trace every `poll` until `done` holds for its spans or `deadline` passes,
    /// whichever is first; see the module docs for why a trace has to be polled. Transient
    /// failures (see [`ClientError::is_transient`]) are retried like a miss.
    ///
    /// # Errors
    ///
    /// Fails at once on a non-transient error, and at the deadline with the last transient
    /// error when no fetch ever succeeded.
    pub async fn trace_until(
        &self,
        trace_id: &str,
        done: impl Fn(&[Span]) -> bool,
        deadline: Instant,
        poll: Duration,
    ) -> Result<Polled, ClientError> {
        let mut polled = Polled {
            spans: Vec::new(),
            complete: false,
            attempts: 0,
        };
        let mut last_error = None;
        let mut succeeded = false;
        loop {
            polled.attempts += 1;
            match self.trace(trace_id).await {
                Ok(spans) => {
                    succeeded = true;
                    polled.spans = spans.unwrap_or_default();
                    if !polled.spans.is_empty() && done(&polled.spans) {
                        polled.complete = true;
                        return Ok(polled);
                    }
                }
                Err(e) if e.is_transient() => last_error = Some(e),
                Err(e) => return Err(e),
            }
            if Instant::now() + poll > deadline {
                return match last_error {
                    Some(e) if !succeeded => Err(e),
                    _ => Ok(polled),
                };
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Tempo's tag search: traces with a span matching every `key=value` of `tags`, at most
    /// `limit`, most recent first. Tempo only finds traces its ingesters have cut (see the
    /// module docs); the sink finds them at once.
    ///
    /// # Errors
    ///
    /// As [`Self::trace`].
    pub async fn search(
        &self,
        tags: &[(&str, &str)],
        limit: usize,
    ) -> Result<Vec<TraceSummary>, ClientError> {
        let logfmt = tags
            .iter()
            .map(|(k, v)| {
                if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '"') {
                    format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        let mut url = reqwest::Url::parse(&format!("{}/api/search", self.base)).map_err(|e| {
            ClientError::Url {
                url: format!("{}/api/search", self.base),
                detail: e.to_string(),
            }
        })?;
        url.query_pairs_mut()
            .append_pair("tags", &logfmt)
            .append_pair("limit", &limit.to_string());
        let Some(body) = self.get(url.to_string()).await? else {
            return Ok(Vec::new());
        };
        #[derive(Deserialize)]
        struct SearchBody {
            #[serde(default)]
            traces: Vec<TraceSummary>,
        }
        let parsed: SearchBody =
            serde_json::from_slice(&body.body).map_err(|e| ClientError::Decode {
                url: body.url.clone(),
                detail: e.to_string(),
            })?;
        parsed
            .traces
            .into_iter()
            .map(|mut t| {
                // Tempo drops leading zeros from search hits' ids.
                t.trace_id = decode_id(&t.trace_id, 16).map_err(|detail| ClientError::Decode {
                    url: body.url.clone(),
                    detail,
                })?;
                Ok(t)
            })
            .collect()
    }

    /// Whether the server answers `GET /ready` with success.
    pub async fn ready(&self) -> bool {
        self.http
            .get(format!("{}/ready", self.base))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

/// A successful answer's body with the URL it came from, for error messages.
struct Fetched {
    url: String,
    body: Bytes,
}

/// Decodes a trace id (`len` 16) or span id (`len` 8) written as hex (any case) or as base64
/// (standard or URL-safe, padded or not) into lowercase hex. Hex shorter than `2 * len` digits
/// that is not also base64 of `len` bytes is left-padded with zeros: Tempo's search hits drop
/// leading zeros.
pub(crate) fn decode_id(text: &str, len: usize) -> Result<String, String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let is_hex = !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit());
    // `2 * len` hex digits are never base64 of `len` bytes (that takes 4/3 as many characters),
    // so a full-length hex id is unambiguous. A shorter one could be unpadded base64 made only
    // of hex-digit letters ("AAAAAAAAAAE"); base64 is tried first for those, since a trimmed
    // hex id of exactly that length needs ten or more leading zero digits.
    if is_hex && text.len() == len * 2 {
        return Ok(text.to_ascii_lowercase());
    }
    let base64 = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .filter(|bytes| bytes.len() == len);
    match base64 {
        Some(bytes) => Ok(hex(&bytes)),
        None if is_hex && text.len() < len * 2 => Ok(format!(
            "{:0>width$}",
            text.to_ascii_lowercase(),
            width = len * 2
        )),
        None => Err(format!(
            "{text:?} is neither hex nor base64 of a {len}-byte id"
        )),
    }
}

/// Tempo's (or OTLP/JSON's) trace: `batches` (Tempo v1) or `resourceSpans` (OTLP, and inside
/// Tempo v2's `trace`).
#[derive(Deserialize)]
struct TraceJson {
    #[serde(default, alias = "resourceSpans")]
    batches: Vec<BatchJson>,
    /// Tempo's `/api/v2/traces` wraps the trace.
    #[serde(default)]
    trace: Option<Box<TraceJson>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchJson {
    #[serde(default)]
    resource: Option<ResourceJson>,
    #[serde(default, alias = "instrumentationLibrarySpans")]
    scope_spans: Vec<ScopeSpansJson>,
}

#[derive(Deserialize)]
struct ResourceJson {
    #[serde(default)]
    attributes: Vec<KeyValueJson>,
}

#[derive(Deserialize)]
struct ScopeSpansJson {
    #[serde(default)]
    spans: Vec<SpanJson>,
}

#[derive(Deserialize)]
struct KeyValueJson {
    key: String,
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpanJson {
    trace_id: String,
    span_id: String,
    #[serde(default)]
    parent_span_id: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: Value,
    #[serde(default)]
    start_time_unix_nano: Value,
    #[serde(default)]
    end_time_unix_nano: Value,
    #[serde(default)]
    attributes: Vec<KeyValueJson>,
    #[serde(default)]
    status: Option<StatusJson>,
    #[serde(default)]
    links: Vec<LinkJson>,
}

#[derive(Deserialize)]
struct StatusJson {
    #[serde(default)]
    code: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinkJson {
    trace_id: String,
    span_id: String,
}

/// Parses a trace-by-id answer into model spans (see the module docs for the forms accepted).
///
/// # Errors
///
/// Fails on JSON that is not a trace, and on ids, kinds or timestamps that do not parse.
pub(crate) fn parse_tempo_trace(body: &[u8]) -> Result<Vec<Span>, String> {
    let mut trace: TraceJson = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if trace.batches.is_empty()
        && let Some(inner) = trace.trace.take()
    {
        trace = *inner;
    }
    let mut spans = Vec::new();
    for batch in trace.batches {
        let service = batch
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .map_or_else(
                || UNKNOWN_SERVICE.to_owned(),
                |kv| render_json_value(&kv.value),
            );
        for scope in batch.scope_spans {
            for span in scope.spans {
                spans.push(span_from_json(span, &service)?);
            }
        }
    }
    Ok(spans)
}

fn span_from_json(span: SpanJson, service: &str) -> Result<Span, String> {
    let parent = match span.parent_span_id.as_deref() {
        None | Some("") => None,
        Some(text) => Some(decode_id(text, 8)?).filter(|id| id.bytes().any(|b| b != b'0')),
    };
    Ok(Span {
        trace_id: decode_id(&span.trace_id, 16)?,
        span_id: decode_id(&span.span_id, 8)?,
        parent_span_id: parent,
        service: service.to_owned(),
        kind: kind_from_json(&span.kind)?,
        start_ns: u64_from_json(&span.start_time_unix_nano)?,
        end_ns: u64_from_json(&span.end_time_unix_nano)?,
        error: span
            .status
            .is_some_and(|s| s.code == 2 || s.code == "STATUS_CODE_ERROR"),
        links: span
            .links
            .into_iter()
            .map(|l| {
                Ok(Link {
                    trace_id: decode_id(&l.trace_id, 16)?,
                    span_id: decode_id(&l.span_id, 8)?,
                })
            })
            .collect::<Result<_, String>>()?,
        attributes: span
            .attributes
            .into_iter()
            .map(|kv| {
                let value = render_json_value(&kv.value);
                (kv.key, value)
            })
            .collect::<BTreeMap<_, _>>(),
        name: span.name,
    })
}

fn kind_from_json(kind: &Value) -> Result<Kind, String> {
    Ok(match kind {
        Value::Null => Kind::Internal,
        Value::Number(n) => crate::convert::kind_from_otlp(
            n.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| format!("span kind {n}"))?,
        ),
        Value::String(s) => match s.as_str() {
            "SPAN_KIND_SERVER" => Kind::Server,
            "SPAN_KIND_CLIENT" => Kind::Client,
            "SPAN_KIND_PRODUCER" => Kind::Producer,
            "SPAN_KIND_CONSUMER" => Kind::Consumer,
            "SPAN_KIND_INTERNAL" | "SPAN_KIND_UNSPECIFIED" => Kind::Internal,
            other => return Err(format!("span kind {other:?}")),
        },
        other => return Err(format!("span kind {other}")),
    })
}

fn u64_from_json(value: &Value) -> Result<u64, String> {
    match value {
        Value::Null => Ok(0),
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("timestamp {n}")),
        Value::String(s) => s.parse().map_err(|_| format!("timestamp {s:?}")),
        other => Err(format!("timestamp {other}")),
    }
}

/// Renders an OTLP/JSON `AnyValue` the way [`crate::convert`] renders a protobuf one, whatever
/// the writer did with 64-bit integers (strings or numbers) and doubles.
fn render_json_value(value: &Value) -> String {
    let mut out = String::new();
    write_json_value(&mut out, value, false);
    out
}

fn write_json_value(out: &mut String, value: &Value, quote_strings: bool) {
    let Value::Object(map) = value else {
        return;
    };
    let Some((kind, inner)) = map.iter().next() else {
        return;
    };
    match (kind.as_str(), inner) {
        ("stringValue", Value::String(s)) if quote_strings => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        ("stringValue" | "bytesValue", Value::String(s)) => out.push_str(s),
        ("intValue", Value::String(s)) => out.push_str(s),
        ("boolValue" | "intValue", v) => out.push_str(&v.to_string()),
        ("doubleValue", Value::Number(n)) => match n.as_f64() {
            Some(d) => out.push_str(&d.to_string()),
            None => out.push_str(&n.to_string()),
        },
        ("doubleValue", Value::String(s)) => out.push_str(s),
        ("arrayValue", Value::Object(array)) => {
            out.push('[');
            let values = array.get("values").and_then(Value::as_array);
            for (i, v) in values.into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_value(out, v, true);
            }
            out.push(']');
        }
        ("kvlistValue", Value::Object(list)) => {
            out.push('{');
            let values = list.get("values").and_then(Value::as_array);
            for (i, kv) in values.into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(kv.get("key").and_then(Value::as_str).unwrap_or_default());
                out.push(':');
                write_json_value(out, kv.get("value").unwrap_or(&Value::Null), true);
            }
            out.push('}');
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Tempo 2.x's `jsonpb` writes: base64 ids, enum names, 64-bit integers as strings,
    /// defaults left out.
    const TEMPO_JSONPB: &str = r#"{"batches":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"scan-api"}}]},
      "scopeSpans":[{"scope":{"name":"tb"},"spans":[
        {"traceId":"S/kvNXezTaajzpKdDg5HNg==","spanId":"APBnqgupArc=","name":"POST /scan",
         "kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1700000000000000000",
         "endTimeUnixNano":"1700000000005000000",
         "attributes":[{"key":"http.response.status_code","value":{"intValue":"202"}},
                       {"key":"ratio","value":{"doubleValue":0.5}},
                       {"key":"ok","value":{"boolValue":true}},
                       {"key":"tags","value":{"arrayValue":{"values":[
                           {"stringValue":"a"},{"intValue":"1"}]}}}],
         "status":{"code":"STATUS_CODE_ERROR"}},
        {"traceId":"S/kvNXezTaajzpKdDg5HNg==","spanId":"AAAAAAAAAAE=","parentSpanId":"APBnqgupArc=",
         "name":"publish scan.tasks","kind":"SPAN_KIND_PRODUCER",
         "startTimeUnixNano":"1700000000001000000","endTimeUnixNano":"1700000000002000000",
         "links":[{"traceId":"00000000000000000000000000000001","spanId":"0000000000000002"}],
         "status":{}}]}]}]}"#;

    #[test]
    fn tempo_jsonpb_answers_parse_with_base64_ids_and_enum_names() {
        let spans = parse_tempo_trace(TEMPO_JSONPB.as_bytes()).expect("parses");
        assert_eq!(spans.len(), 2);
        let server = &spans[0];
        assert_eq!(server.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(server.span_id, "00f067aa0ba902b7");
        assert_eq!(server.parent_span_id, None);
        assert_eq!(server.kind, Kind::Server);
        assert_eq!(server.service, "scan-api");
        assert!(server.error);
        assert_eq!(server.duration_ns(), 5_000_000);
        assert_eq!(server.attr("http.response.status_code"), Some("202"));
        assert_eq!(server.attr("ratio"), Some("0.5"));
        assert_eq!(server.attr("ok"), Some("true"));
        assert_eq!(server.attr("tags"), Some("[\"a\",1]"));
        let producer = &spans[1];
        assert_eq!(producer.kind, Kind::Producer);
        assert_eq!(producer.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(!producer.error);
        assert_eq!(
            producer.links,
            [Link {
                trace_id: "00000000000000000000000000000001".into(),
                span_id: "0000000000000002".into(),
            }]
        );
    }

    #[test]
    fn otlp_json_with_numeric_kinds_and_legacy_field_names_parses() {
        let body = r#"{"resourceSpans":[{"instrumentationLibrarySpans":[{"spans":[
            {"traceId":"4BF92F3577B34DA6A3CE929D0E0E4736","spanId":"00f067aa0ba902b7",
             "parentSpanId":"","kind":5,"startTimeUnixNano":1,"endTimeUnixNano":"3",
             "status":{"code":2}}]}]}]}"#;
        let spans = parse_tempo_trace(body.as_bytes()).expect("parses");
        assert_eq!(spans[0].kind, Kind::Consumer);
        assert_eq!(spans[0].service, UNKNOWN_SERVICE);
        assert_eq!(spans[0].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!((spans[0].start_ns, spans[0].end_ns), (1, 3));
        assert!(spans[0].error);
        assert_eq!(spans[0].parent_span_id, None);
    }

    #[test]
    fn ids_decode_from_hex_short_hex_and_base64() {
        assert_eq!(
            decode_id("AAAAAAAAAAE=", 8).as_deref(),
            Ok("0000000000000001")
        );
        assert_eq!(
            decode_id("AAAAAAAAAAE", 8).as_deref(),
            Ok("0000000000000001")
        );
        assert_eq!(
            decode_id("d6e9329d67b6146a", 16).as_deref(),
            Ok("0000000000000000d6e9329d67b6146a")
        );
        assert!(decode_id("not an id", 8).is_err());
        assert!(decode_id("AQID", 8).is_err(), "base64 of the wrong length");
    }

    #[test]
    fn an_all_zero_parent_reads_as_a_root() {
        let body = r#"{"batches":[{"scopeSpans":[{"spans":[
            {"traceId":"AAAAAAAAAAAAAAAAAAAAAQ==","spanId":"AAAAAAAAAAE=",
             "parentSpanId":"AAAAAAAAAAA="}]}]}]}"#;
        let spans = parse_tempo_trace(body.as_bytes()).expect("parses");
        assert_eq!(spans[0].parent_span_id, None);
    }

    #[test]
    fn an_unknown_kind_name_is_an_error() {
        let body = r#"{"batches":[{"scopeSpans":[{"spans":[
            {"traceId":"AAAAAAAAAAAAAAAAAAAAAQ==","spanId":"AAAAAAAAAAE=",
             "kind":"SPAN_KIND_X"}]}]}]}"#;
        assert!(parse_tempo_trace(body.as_bytes()).is_err());
    }
}
