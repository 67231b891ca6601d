//! The sink's Tempo-shaped query API, so tools and the verifier read the sink and a real Tempo
//! through one client: `GET /api/traces/{trace_id}`, `GET /api/search` (tag search: `tags`,
//! `limit`, `start`, `end`, `minDuration`, `maxDuration`), `GET /ready` and `GET /api/echo`,
//! plus the sink's own counters at `GET /api/sink/stats`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use tb_web::ApiError;

use super::store::{SearchQuery, StoreStats, TraceStore, TraceSummary, parse_trace_id};

/// Tempo's default search limit.
pub const DEFAULT_SEARCH_LIMIT: usize = 20;
/// The largest search `limit` answered: the summaries are rendered under the store's lock.
pub const MAX_SEARCH_LIMIT: usize = 10_000;

/// `GET /api/traces/{trace_id}`: the trace as Tempo's v1 JSON, 404 when not held, 400 when the
/// id is not 1–32 hex digits.
pub(crate) async fn trace_by_id(
    State(store): State<Arc<TraceStore>>,
    Path(trace_id): Path<String>,
) -> Result<Response, ApiError> {
    if parse_trace_id(&trace_id).is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_trace_id",
            format!("{trace_id:?} is not a non-zero trace id of 1 to 32 hex digits"),
        ));
    }
    let body = store
        .tempo_json(&trace_id)
        .ok_or_else(|| ApiError::not_found(format!("trace {trace_id} not found")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// The query string of `GET /api/search`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SearchParams {
    /// logfmt `key=value` pairs separated by spaces; values with spaces in double quotes.
    tags: Option<String>,
    /// At most this many traces (default 20).
    limit: Option<usize>,
    /// Unix seconds: traces ending at or after.
    start: Option<u64>,
    /// Unix seconds: traces starting at or before.
    end: Option<u64>,
    /// Go-style duration (`100ms`, `2s`): traces at least this long.
    min_duration: Option<String>,
    /// Go-style duration: traces at most this long.
    max_duration: Option<String>,
    /// TraceQL, which the sink does not implement.
    q: Option<String>,
}

/// The body of `GET /api/search`.
#[derive(Debug, Serialize)]
pub(crate) struct SearchResponse {
    traces: Vec<TraceSummary>,
}

/// Parses Tempo's `tags` parameter: logfmt, `key=value` separated by spaces, a value in double
/// quotes when it holds spaces (`\"` escapes a quote inside).
pub(crate) fn parse_tags(tags: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = tags.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        if chars.next() != Some('=') || key.is_empty() {
            return Err(format!("tag {key:?} is not key=value"));
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(format!("tag {key:?}: unterminated quote")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        out.push((key, value));
    }
}

fn duration_ns(name: &str, value: Option<&str>) -> Result<Option<u64>, ApiError> {
    value
        .map(|v| {
            humantime::parse_duration(v)
                .map(|d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
        })
        .transpose()
}

/// `GET /api/search`: tag search over the traces held.
pub(crate) async fn search(
    State(store): State<Arc<TraceStore>>,
    Query(params): Query<SearchParams>,
) -> Result<Json<SearchResponse>, ApiError> {
    if params.q.as_deref().is_some_and(|q| !q.trim().is_empty()) {
        return Err(ApiError::bad_request(
            "the embedded sink does not implement TraceQL (q); search with tags",
        ));
    }
    let tags = parse_tags(params.tags.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("tags: {e}")))?;
    let limit = params.limit.unwrap_or(DEFAULT_SEARCH_LIMIT);
    if limit > MAX_SEARCH_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit: at most {MAX_SEARCH_LIMIT}, got {limit}"
        )));
    }
    let query = SearchQuery {
        tags,
        limit,
        start_ns: params.start.map(|s| s.saturating_mul(1_000_000_000)),
        // `end` is a whole second; everything within that second is included.
        end_ns: params
            .end
            .map(|e| e.saturating_add(1).saturating_mul(1_000_000_000)),
        min_duration_ns: duration_ns("minDuration", params.min_duration.as_deref())?,
        max_duration_ns: duration_ns("maxDuration", params.max_duration.as_deref())?,
    };
    Ok(Json(SearchResponse {
        traces: store.search(&query),
    }))
}

/// `GET /api/sink/stats`: the store's counters.
pub(crate) async fn stats(State(store): State<Arc<TraceStore>>) -> Json<StoreStats> {
    Json(store.stats())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_as_logfmt_with_quoted_values() {
        let tags =
            parse_tags(r#" service.name=scan-api  http.route="/scan/{task_id}" note="a \"b\"" "#)
                .expect("valid");
        assert_eq!(
            tags,
            [
                ("service.name".to_owned(), "scan-api".to_owned()),
                ("http.route".to_owned(), "/scan/{task_id}".to_owned()),
                ("note".to_owned(), "a \"b\"".to_owned()),
            ]
        );
        assert_eq!(parse_tags(""), Ok(vec![]));
    }

    #[test]
    fn tags_without_a_value_or_with_an_open_quote_are_errors() {
        assert!(parse_tags("service.name").is_err());
        assert!(parse_tags("=x").is_err());
        assert!(parse_tags("a=\"open").is_err());
    }
}
