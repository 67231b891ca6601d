//! The sink's in-memory trace store: OTLP spans indexed by trace id and bounded in bytes (and,
//! optionally, in spans), evicting whole traces oldest-first when full.
//!
//! Each span is kept as its protobuf encoding (a few hundred bytes) next to the three fields the
//! index needs (start, end, whether it is a root), with its resource and scope shared behind an
//! [`Arc`] per `ScopeSpans`. The decoded message it arrived as took ≈ 2.6 KB of RSS, an
//! allocation per id, name, key and value; the encoding takes one. [`TraceStore::get`] reads
//! the bytes straight into [`model::Span`]s ([`super::wire`]); the Tempo-shaped JSON decodes
//! them back into OTLP messages, keeping every typed attribute and the resource.
//!
//! The byte bound counts what the store holds: each span's encoding and its slot, each trace's
//! map and arrival entries, and the capacity of every vector; allocator headers and the shared
//! resources are not counted, so real memory runs somewhat above the count (the `sink` bench
//! measures RSS per span).
//!
//! One mutex guards everything and is taken once per export request, never per span: a request
//! of 512 spans holds it for tens of microseconds, far below what two receivers on a 2-core
//! machine could contend for. Counters live under the same lock, so a reader sees them
//! consistent with the contents.

use std::collections::VecDeque;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use prost::Message as _;

use super::wire;

mod tempo_view;
use crate::convert::{hex, render_any_value, service_name};
use crate::model;
pub use crate::model::{ROOT_NOT_YET_RECEIVED, TraceSummary};

pub use super::limits::{
    DEFAULT_MAX_ATTRIBUTES_PER_SPAN, DEFAULT_MAX_BYTES, DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_MAX_SPANS_PER_REQUEST, Limits, parse_size,
};

/// Bytes a trace costs beyond its spans: its map entry and slot in the arrival queue.
const TRACE_BYTES: u64 = (size_of::<(Key, Trace)>() + size_of::<(Key, u64)>()) as u64;
/// Bytes a span costs beyond its encoding: its slot in its group.
const SLOT_BYTES: u64 = size_of::<Stored>() as u64;
/// Bytes a group costs beyond its spans: its slot in its trace.
const GROUP_BYTES: u64 = size_of::<Group>() as u64;

/// A trace id as the map key: the 16 bytes, big-endian.
type Key = u128;

/// Parses a trace id in hex (case-insensitive). Shorter ids are left-padded with zeros, as Tempo
/// does (its search results drop leading zeros). `None` for anything else and for the invalid
/// all-zero id.
pub fn parse_trace_id(hex_id: &str) -> Option<u128> {
    if hex_id.is_empty() || hex_id.len() > 32 || !hex_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(hex_id, 16).ok().filter(|k| *k != 0)
}

fn key_of(trace_id: &[u8]) -> Option<Key> {
    let bytes: [u8; 16] = trace_id.try_into().ok()?;
    Some(Key::from_be_bytes(bytes)).filter(|k| *k != 0)
}

/// Where a run of spans came from: its resource (shared by every scope of one `ResourceSpans`)
/// and its instrumentation scope.
#[derive(Debug)]
struct Origin {
    resource: Arc<Source>,
    scope: Option<InstrumentationScope>,
    schema_url: String,
}

#[derive(Debug)]
struct Source {
    resource: Option<Resource>,
    schema_url: String,
    /// `service.name`, rendered once per request rather than once per span read.
    service: String,
}

/// One span: its protobuf encoding and the fields the index reads.
#[derive(Debug)]
struct Stored {
    start_ns: u64,
    end_ns: u64,
    root: bool,
    bytes: Box<[u8]>,
}

impl Stored {
    fn new(span: &OtlpSpan) -> Self {
        Self {
            start_ns: span.start_time_unix_nano,
            end_ns: span.end_time_unix_nano,
            root: span.parent_span_id.iter().all(|b| *b == 0),
            // `encode_to_vec` allocates the exact length, so the box does not reallocate.
            bytes: span.encode_to_vec().into_boxed_slice(),
        }
    }

    /// The OTLP message back. The bytes are prost's own encoding, so this cannot fail; should
    /// it, the span reads as empty rather than failing the trace.
    fn decode(&self) -> OtlpSpan {
        OtlpSpan::decode(&*self.bytes).unwrap_or_default()
    }
}

/// Consecutive spans of one trace from one `ScopeSpans`.
#[derive(Debug)]
struct Group {
    origin: Arc<Origin>,
    spans: Vec<Stored>,
}

#[derive(Debug)]
struct Trace {
    groups: Vec<Group>,
    spans: u64,
    /// What the trace costs against [`Limits::max_bytes`].
    bytes: u64,
    /// Position in first-arrival order; tells a live entry of [`Inner::arrival`] from a stale one.
    seq: u64,
}

impl Trace {
    fn spans(&self) -> impl Iterator<Item = (&Origin, &Stored)> {
        self.groups
            .iter()
            .flat_map(|g| g.spans.iter().map(move |s| (&*g.origin, s)))
    }

    /// Adds `span` from `origin`, returning the bytes it costs (its encoding, plus any growth
    /// of the vectors holding it).
    fn push(&mut self, origin: &Arc<Origin>, span: Stored) -> u64 {
        let encoded = span.bytes.len() as u64;
        let groups_before = self.groups.capacity();
        let grown = match self.groups.last_mut() {
            Some(g) if Arc::ptr_eq(&g.origin, origin) => {
                let before = g.spans.capacity();
                g.spans.push(span);
                (g.spans.capacity() - before) as u64 * SLOT_BYTES
            }
            _ => {
                self.groups.push(Group {
                    origin: Arc::clone(origin),
                    spans: vec![span],
                });
                SLOT_BYTES
            }
        };
        let grown = grown + (self.groups.capacity() - groups_before) as u64 * GROUP_BYTES;
        self.spans += 1;
        self.bytes += encoded + grown;
        encoded + grown
    }
}

/// Span and trace counters of a [`TraceStore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Spans accepted since the store was created (or cleared), evicted ones included.
    pub spans_received: u64,
    /// Spans refused because their trace or span id was not 16 or 8 bytes, or all zero, or they
    /// carried more than [`Limits::max_attributes_per_span`].
    pub spans_rejected: u64,
    /// Export requests refused whole ([`TraceStore::admit`]): too many spans, or too many
    /// requests at once.
    #[serde(default)]
    pub requests_refused: u64,
    /// Export requests received, with the bytes of their messages, uncompressed (the
    /// protobuf message over gRPC; the body, inflated, over HTTP).
    #[serde(default)]
    pub requests_received: u64,
    /// See [`Self::requests_received`].
    #[serde(default)]
    pub request_bytes_received: u64,
    /// Traces started since the store was created (a trace evicted and seen again counts twice).
    pub traces_received: u64,
    /// Spans held now.
    pub spans_stored: u64,
    /// Traces held now.
    pub traces_stored: u64,
    /// Bytes held now, as the store counts them against its bound.
    #[serde(default)]
    pub bytes_stored: u64,
    /// Spans dropped to stay within the bound.
    pub spans_evicted: u64,
    /// Traces dropped to stay within the bound.
    pub traces_evicted: u64,
}

/// What became of one export request's spans.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Spans stored.
    pub accepted: u64,
    /// Spans refused: an invalid trace or span id, or over the attribute limit.
    pub rejected: u64,
    /// Of the refused, those over [`Limits::max_attributes_per_span`].
    pub oversized: u64,
}

/// Why an export request is refused before anything of it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// More spans than [`Limits::max_spans_per_request`].
    #[error("the request carries {spans} spans; at most {max} per request")]
    TooManySpans {
        /// Spans in the request.
        spans: u64,
        /// The limit.
        max: u64,
    },
    /// [`Limits::max_concurrent_requests`] requests are being handled already.
    #[error("{0} export requests are in progress already; retry later")]
    Busy(usize),
}

/// Which traces [`TraceStore::search`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// `key=value` pairs one span of the trace must all match, each against the span's
    /// attributes, its resource's attributes, or `name` (the span name). Values compare as the
    /// rendered strings, exactly.
    pub tags: Vec<(String, String)>,
    /// At most this many traces, the most recent (by start) first.
    pub limit: usize,
    /// Only traces that end at or after this time (Unix nanoseconds).
    pub start_ns: Option<u64>,
    /// Only traces that start at or before this time (Unix nanoseconds).
    pub end_ns: Option<u64>,
    /// Only traces at least this long (nanoseconds).
    pub min_duration_ns: Option<u64>,
    /// Only traces at most this long (nanoseconds).
    pub max_duration_ns: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    traces: FxHashMap<Key, Trace>,
    /// Trace keys in first-arrival order, with the `seq` they arrived under.
    arrival: VecDeque<(Key, u64)>,
    next_seq: u64,
    stats: StoreStats,
}

impl Inner {
    /// Every span, trace by trace in first-arrival order, as the model sees them, read on
    /// every core (a verdict over 200 k spans spent 0.67 s here on one).
    fn decode_all(&self) -> Vec<model::Span> {
        let stored: Vec<(&Origin, &Stored)> = self
            .arrival
            .iter()
            .filter_map(|(key, seq)| self.traces.get(key).filter(|t| t.seq == *seq))
            .flat_map(Trace::spans)
            .collect();
        let read = |chunk: &[(&Origin, &Stored)]| -> Vec<model::Span> {
            chunk
                .iter()
                .map(|(origin, span)| wire::model_span(&span.bytes, &origin.resource.service))
                .collect()
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        if threads == 1 || stored.len() < 4096 {
            return read(&stored);
        }
        let chunk = stored.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = stored
                .chunks(chunk)
                .map(|c| scope.spawn(move || read(c)))
                .collect();
            let mut out = Vec::with_capacity(stored.len());
            for part in parts {
                // A reader that panicked would have panicked on one thread as well.
                out.extend(part.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            }
            out
        })
    }

    /// Drops the oldest trace. False when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((key, seq)) = self.arrival.pop_front() {
            // Every removal goes through here, so entries are never stale today; the check keeps
            // a stale entry from evicting a newer trace under the same id should that change.
            if self.traces.get(&key).is_some_and(|t| t.seq == seq)
                && let Some(trace) = self.traces.remove(&key)
            {
                let n = trace.spans;
                self.stats.spans_stored -= n;
                self.stats.bytes_stored -= trace.bytes;
                self.stats.traces_stored -= 1;
                self.stats.spans_evicted += n;
                self.stats.traces_evicted += 1;
                return true;
            }
        }
        false
    }
}

/// Whether `span` carries more than `max` attributes, events or links, or an event or link
/// more than `max` attributes.
fn oversized(span: &OtlpSpan, max: usize) -> bool {
    span.attributes.len() > max
        || span.events.len() > max
        || span.links.len() > max
        || span.events.iter().any(|e| e.attributes.len() > max)
        || span.links.iter().any(|l| l.attributes.len() > max)
}

/// Traces received by the sink, bounded by [`Limits`]. Share it behind an [`Arc`].
#[derive(Debug)]
pub struct TraceStore {
    limits: Limits,
    inner: Mutex<Inner>,
    requests: tokio::sync::Semaphore,
}

impl Default for TraceStore {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl TraceStore {
    /// An empty store within `limits` (each at least 1).
    pub fn new(limits: Limits) -> Self {
        Self {
            limits: Limits {
                max_bytes: limits.max_bytes.max(1),
                max_spans: limits.max_spans.max(1),
                max_concurrent_requests: limits.max_concurrent_requests.max(1),
                ..limits
            },
            inner: Mutex::new(Inner::default()),
            requests: tokio::sync::Semaphore::new(limits.max_concurrent_requests.max(1)),
        }
    }

    /// Admits one export request of `spans` spans, or says why not: too many spans for one
    /// request, or too many requests at once. Hold the permit while the request is handled.
    /// A refusal is counted in [`StoreStats::requests_refused`].
    ///
    /// # Errors
    ///
    /// [`Refusal`] when the request may not be handled now.
    pub fn admit(&self, spans: u64) -> Result<tokio::sync::SemaphorePermit<'_>, Refusal> {
        let refusal = if spans > self.limits.max_spans_per_request {
            Refusal::TooManySpans {
                spans,
                max: self.limits.max_spans_per_request,
            }
        } else {
            match self.requests.try_acquire() {
                Ok(permit) => return Ok(permit),
                Err(_) => Refusal::Busy(self.limits.max_concurrent_requests),
            }
        };
        self.lock().stats.requests_refused += 1;
        Err(refusal)
    }

    /// The bounds.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves at worst a half-ingested request; the counters
        // and the map stay usable, so a poisoned lock is taken over rather than propagated.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores every span of `request` with a valid trace and span id, evicting the oldest traces
    /// (by first arrival) while more than [`Self::limits`] allow is held.
    pub fn ingest(&self, request: ExportTraceServiceRequest) -> IngestOutcome {
        let mut outcome = IngestOutcome::default();
        let mut inner = self.lock();
        let inner = &mut *inner;
        for rs in request.resource_spans {
            let source = Arc::new(Source {
                service: service_name(rs.resource.as_ref()),
                resource: rs.resource,
                schema_url: rs.schema_url,
            });
            for ss in rs.scope_spans {
                let origin = Arc::new(Origin {
                    resource: Arc::clone(&source),
                    scope: ss.scope,
                    schema_url: ss.schema_url,
                });
                for span in ss.spans {
                    let Some(key) = key_of(&span.trace_id).filter(|_| span.span_id.len() == 8)
                    else {
                        outcome.rejected += 1;
                        continue;
                    };
                    if oversized(&span, self.limits.max_attributes_per_span) {
                        outcome.rejected += 1;
                        outcome.oversized += 1;
                        continue;
                    }
                    let trace = match inner.traces.entry(key) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => {
                            let seq = inner.next_seq;
                            inner.next_seq += 1;
                            inner.arrival.push_back((key, seq));
                            inner.stats.traces_received += 1;
                            inner.stats.traces_stored += 1;
                            inner.stats.bytes_stored += TRACE_BYTES;
                            e.insert(Trace {
                                groups: Vec::new(),
                                spans: 0,
                                bytes: TRACE_BYTES,
                                seq,
                            })
                        }
                    };
                    inner.stats.bytes_stored += trace.push(&origin, Stored::new(&span));
                    outcome.accepted += 1;
                    inner.stats.spans_stored += 1;
                    while (inner.stats.spans_stored > self.limits.max_spans
                        || inner.stats.bytes_stored > self.limits.max_bytes)
                        && inner.evict_oldest()
                    {}
                }
            }
        }
        inner.stats.spans_received += outcome.accepted;
        inner.stats.spans_rejected += outcome.rejected;
        outcome
    }

    /// The spans of a trace (id in hex) as the model sees them, in arrival order; `None` when
    /// the id is not valid hex or the trace is not held.
    pub fn get(&self, trace_id: &str) -> Option<Vec<model::Span>> {
        let key = parse_trace_id(trace_id)?;
        let inner = self.lock();
        let trace = inner.traces.get(&key)?;
        Some(
            trace
                .spans()
                .map(|(origin, span)| wire::model_span(&span.bytes, &origin.resource.service))
                .collect(),
        )
    }

    /// Every span held, trace by trace in first-arrival order, as the model sees them: what a
    /// verdict reads, under one lock instead of one per trace.
    pub fn all(&self) -> Vec<model::Span> {
        self.lock().decode_all()
    }

    /// Every span held, as [`all`](Self::all) reads them, with the store emptied under the
    /// same lock: for a reader that judges what arrived since it last looked (`tracebench
    /// demo`). The counters of what was received and evicted are kept; the spans are decoded
    /// after the lock is released.
    pub fn take_all(&self) -> Vec<model::Span> {
        let taken = {
            let mut inner = self.lock();
            let stats = StoreStats {
                spans_stored: 0,
                bytes_stored: 0,
                traces_stored: 0,
                ..inner.stats
            };
            let next_seq = inner.next_seq;
            std::mem::replace(
                &mut *inner,
                Inner {
                    next_seq,
                    stats,
                    ..Inner::default()
                },
            )
        };
        taken.decode_all()
    }

    /// The ids (lowercase hex) of the traces held, oldest first.
    pub fn trace_ids(&self) -> Vec<String> {
        let inner = self.lock();
        inner
            .arrival
            .iter()
            .filter(|(key, seq)| inner.traces.get(key).is_some_and(|t| t.seq == *seq))
            .map(|(key, _)| hex(&key.to_be_bytes()))
            .collect()
    }

    /// A trace as Tempo's `GET /api/traces/{id}` answers it (v1: `{"batches": [...]}` of OTLP
    /// `ResourceSpans` in OTLP/JSON), spans grouped by resource and scope; `None` when the id is
    /// not valid hex or the trace is not held.
    pub fn tempo_json(&self, trace_id: &str) -> Option<Vec<u8>> {
        let key = parse_trace_id(trace_id)?;
        let inner = self.lock();
        let trace = inner.traces.get(&key)?;
        // Decoded and serialised under the lock: one trace is a few dozen spans.
        let view = trace.tempo_view();
        serde_json::to_vec(&view).ok()
    }

    /// Traces matching `query`, most recent first.
    pub fn search(&self, query: &SearchQuery) -> Vec<TraceSummary> {
        let tags: Vec<Tag<'_>> = query.tags.iter().map(|(k, v)| Tag::new(k, v)).collect();
        let inner = self.lock();
        let mut hits: Vec<TraceSummary> = inner
            .traces
            .iter()
            .filter_map(|(key, trace)| summarize(*key, trace, query, &tags))
            .collect();
        drop(inner);
        hits.sort_unstable_by(|a, b| {
            b.start_time_unix_nano
                .cmp(&a.start_time_unix_nano)
                .then_with(|| a.trace_id.cmp(&b.trace_id))
        });
        hits.truncate(query.limit);
        hits
    }

    /// Counts an export request of `bytes` (before it is ingested or refused).
    pub fn note_request(&self, bytes: usize) {
        let mut inner = self.lock();
        inner.stats.requests_received += 1;
        inner.stats.request_bytes_received += bytes as u64;
    }

    /// The counters now.
    pub fn stats(&self) -> StoreStats {
        self.lock().stats
    }

    /// Drops every trace and zeroes the counters.
    pub fn clear(&self) {
        *self.lock() = Inner::default();
    }
}

/// One `key=value` of a search, with whether its value must sit verbatim in a matching span's
/// bytes: a string attribute or a span name, which protobuf stores as they are, and not the
/// rendering of a number, a boolean, an array or map, or base64 bytes.
struct Tag<'a> {
    key: &'a str,
    value: &'a str,
    verbatim: bool,
}

impl<'a> Tag<'a> {
    fn new(key: &'a str, value: &'a str) -> Self {
        let base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
        let verbatim = !value.is_empty()
            && value.parse::<f64>().is_err()
            && !matches!(value, "true" | "false")
            && !value.starts_with(['[', '{'])
            && !value.bytes().all(base64);
        Self {
            key,
            value,
            verbatim,
        }
    }
}

fn span_matches(origin: &Origin, span: &Stored, tag: &Tag<'_>) -> bool {
    let resource = origin
        .resource
        .resource
        .as_ref()
        .map(|r| r.attributes.as_slice());
    let is_match = |kv: &KeyValue| {
        kv.key == tag.key
            && kv
                .value
                .as_ref()
                .is_some_and(|v| render_any_value(v) == tag.value)
    };
    if resource.unwrap_or_default().iter().any(is_match) {
        return true;
    }
    // A value that must sit verbatim in the span's bytes rules the span out without decoding
    // it when it does not: a search for one task id decodes only the spans holding that id,
    // not every span of every trace in the window.
    if tag.verbatim && memchr::memmem::find(&span.bytes, tag.value.as_bytes()).is_none() {
        return false;
    }
    let span = span.decode();
    if tag.key == "name" && span.name == tag.value {
        return true;
    }
    span.attributes.iter().any(is_match)
}

fn summarize(
    key: Key,
    trace: &Trace,
    query: &SearchQuery,
    tags: &[Tag<'_>],
) -> Option<TraceSummary> {
    let mut start = u64::MAX;
    let mut end = 0;
    let mut root: Option<(&Origin, &Stored)> = None;
    for (origin, span) in trace.spans() {
        start = start.min(span.start_ns);
        end = end.max(span.end_ns);
        if span.root && root.is_none_or(|(_, r)| span.start_ns < r.start_ns) {
            root = Some((origin, span));
        }
    }
    let duration = end.saturating_sub(start);
    let in_window =
        query.start_ns.is_none_or(|s| end >= s) && query.end_ns.is_none_or(|e| start <= e);
    let long_enough = query.min_duration_ns.is_none_or(|m| duration >= m)
        && query.max_duration_ns.is_none_or(|m| duration <= m);
    // The times first: they are at hand, while matching tags may decode spans.
    let matched = || {
        tags.is_empty()
            || trace
                .spans()
                .any(|(origin, span)| tags.iter().all(|tag| span_matches(origin, span, tag)))
    };
    if !(in_window && long_enough && matched()) {
        return None;
    }
    let (root_service_name, root_trace_name) = match root {
        Some((origin, span)) => (origin.resource.service.clone(), span.decode().name),
        None => (ROOT_NOT_YET_RECEIVED.to_owned(), String::new()),
    };
    Some(TraceSummary {
        trace_id: hex(&key.to_be_bytes()),
        root_service_name,
        root_trace_name,
        start_time_unix_nano: start,
        duration_ms: duration / 1_000_000,
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    use super::*;

    fn request(service: &str, spans: &[(u8, u8, u8)]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(Value::StringValue(service.into())),
                        }),
                        ..KeyValue::default()
                    }],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: spans
                        .iter()
                        .map(|&(trace, span, parent)| OtlpSpan {
                            trace_id: [[0; 15].as_slice(), &[trace]].concat(),
                            span_id: [[0; 7].as_slice(), &[span]].concat(),
                            parent_span_id: if parent == 0 {
                                Vec::new()
                            } else {
                                [[0; 7].as_slice(), &[parent]].concat()
                            },
                            name: format!("span {span}"),
                            start_time_unix_nano: u64::from(span) * 1_000_000,
                            end_time_unix_nano: u64::from(span) * 1_000_000 + 5_000_000,
                            ..OtlpSpan::default()
                        })
                        .collect(),
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
    }

    #[test]
    fn spans_of_one_trace_across_requests_come_back_together() {
        let store = TraceStore::new(Limits::spans(100));
        store.ingest(request("a", &[(1, 1, 0), (2, 2, 0)]));
        store.ingest(request("b", &[(1, 3, 1)]));
        let spans = store.get("01").expect("trace 1");
        let names: Vec<_> = spans
            .iter()
            .map(|s| (s.service.as_str(), s.name.as_str()))
            .collect();
        assert_eq!(names, [("a", "span 1"), ("b", "span 3")]);
        assert_eq!(spans[1].parent_span_id.as_deref(), Some("0000000000000001"));
        assert_eq!(store.stats().traces_stored, 2);
    }

    #[test]
    fn take_all_hands_over_every_span_and_leaves_the_store_empty_but_counting() {
        let store = TraceStore::new(Limits::spans(100));
        store.ingest(request("a", &[(1, 1, 0), (2, 2, 0)]));
        store.ingest(request("b", &[(1, 3, 1)]));
        let mut names: Vec<_> = store.take_all().into_iter().map(|s| s.name).collect();
        names.sort();
        assert_eq!(names, ["span 1", "span 2", "span 3"]);
        let stats = store.stats();
        assert_eq!(
            (stats.spans_stored, stats.traces_stored, stats.bytes_stored),
            (0, 0, 0)
        );
        assert_eq!(stats.spans_received, 3, "what arrived is still counted");
        assert!(store.take_all().is_empty());
        store.ingest(request("a", &[(1, 4, 0)]));
        let again = store.take_all();
        assert_eq!(again.len(), 1, "a trace id seen before is a trace again");
        assert_eq!(again[0].name, "span 4");
    }

    #[test]
    fn eviction_drops_whole_oldest_traces_and_counts_them() {
        let store = TraceStore::new(Limits::spans(3));
        store.ingest(request("a", &[(1, 1, 0), (1, 2, 1)]));
        store.ingest(request("a", &[(2, 3, 0), (2, 4, 3)]));
        assert!(store.get("01").is_none(), "the oldest trace goes first");
        assert_eq!(store.get("02").map(|s| s.len()), Some(2));
        let stats = store.stats();
        assert_eq!(
            (
                stats.spans_evicted,
                stats.traces_evicted,
                stats.spans_stored
            ),
            (2, 1, 2)
        );
        assert_eq!(stats.spans_received, 4);
    }

    #[test]
    fn the_byte_bound_evicts_the_oldest_traces_and_the_count_returns_to_zero() {
        let one = TraceStore::default();
        one.ingest(request("a", &[(1, 1, 0), (1, 2, 1)]));
        let per_trace = one.stats().bytes_stored;
        assert!(per_trace > 0);
        // Room for two such traces, not three.
        let store = TraceStore::new(Limits {
            max_bytes: per_trace * 2 + per_trace / 2,
            ..Limits::default()
        });
        for t in 1..=3 {
            store.ingest(request("a", &[(t, 1, 0), (t, 2, 1)]));
        }
        let stats = store.stats();
        assert_eq!((stats.traces_stored, stats.traces_evicted), (2, 1));
        assert!(store.get("01").is_none());
        assert_eq!(stats.bytes_stored, per_trace * 2);
        store.ingest(request("a", &[(4, 1, 0), (4, 2, 1)]));
        store.ingest(request("a", &[(5, 1, 0), (5, 2, 1)]));
        assert_eq!(
            store.stats().bytes_stored,
            per_trace * 2,
            "evictions give back what was counted"
        );
    }

    #[test]
    fn a_span_of_the_pipeline_costs_well_under_a_kilobyte() {
        // A worker span as the SDK exports it: ids, name, times, eight attributes.
        let attributes = [
            ("messaging.system", "rabbitmq"),
            ("messaging.destination.name", "scan"),
            ("messaging.operation.type", "process"),
            (
                "messaging.message.id",
                "3f2a9c1e-8d4b-4b7a-9f0e-2c6d5a1b7e90",
            ),
            ("celery.task_name", "scans.process_scan"),
            ("scan.id", "0b8e7c6d-5a4f-4e3d-9c2b-1a0f9e8d7c6b"),
            ("server.address", "127.0.0.1"),
            ("network.protocol.name", "amqp"),
        ]
        .map(|(k, v)| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
            ..KeyValue::default()
        });
        let mut req = request("worker", &[(1, 1, 0)]);
        let spans = &mut req.resource_spans[0].scope_spans[0].spans;
        for t in 2..=200u8 {
            let mut span = spans[0].clone();
            span.trace_id[15] = t;
            spans.push(span);
        }
        for span in &mut req.resource_spans[0].scope_spans[0].spans {
            span.attributes = attributes.to_vec();
            span.parent_span_id = vec![7; 8];
        }
        let store = TraceStore::default();
        store.ingest(req);
        let stats = store.stats();
        let per_span = stats.bytes_stored / stats.spans_stored;
        assert!((300..1024).contains(&per_span), "{per_span} bytes a span");
    }

    #[test]
    fn spans_with_invalid_ids_are_rejected_and_counted() {
        let store = TraceStore::new(Limits::spans(10));
        let mut req = request("a", &[(0, 1, 0), (1, 2, 0)]);
        req.resource_spans[0].scope_spans[0].spans[1].span_id = vec![1, 2, 3];
        let outcome = store.ingest(req);
        assert_eq!((outcome.accepted, outcome.rejected), (0, 2));
        assert_eq!(store.stats().spans_rejected, 2);
    }

    #[test]
    fn search_matches_resource_tags_and_reports_the_root() {
        let store = TraceStore::new(Limits::spans(10));
        store.ingest(request("scan-api", &[(1, 1, 0), (1, 2, 1)]));
        store.ingest(request("worker", &[(2, 5, 9)]));
        let query = SearchQuery {
            tags: vec![("service.name".into(), "scan-api".into())],
            limit: 20,
            ..SearchQuery::default()
        };
        let hits = store.search(&query);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].root_service_name, "scan-api");
        assert_eq!(hits[0].root_trace_name, "span 1");
        assert_eq!(hits[0].duration_ms, 6);
        let orphan = store.search(&SearchQuery {
            tags: vec![("service.name".into(), "worker".into())],
            limit: 20,
            ..SearchQuery::default()
        });
        assert_eq!(orphan[0].root_service_name, ROOT_NOT_YET_RECEIVED);
    }

    #[test]
    fn tempo_json_groups_spans_by_resource_with_hex_ids() {
        let store = TraceStore::new(Limits::spans(10));
        store.ingest(request("a", &[(1, 1, 0), (1, 2, 1)]));
        let json: serde_json::Value =
            serde_json::from_slice(&store.tempo_json("1").expect("trace")).expect("json");
        let batches = json["batches"].as_array().expect("batches");
        assert_eq!(batches.len(), 1);
        let spans = &batches[0]["scopeSpans"][0]["spans"];
        assert_eq!(spans[1]["traceId"], "00000000000000000000000000000001");
        assert_eq!(spans[1]["parentSpanId"], "0000000000000001");
        assert_eq!(spans[1]["startTimeUnixNano"], "2000000");
    }

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2 GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert!(parse_size("1.5GB").is_err());
        assert!(parse_size("GB").is_err());
        let err = parse_size("10 parsecs").expect_err("unknown unit");
        assert!(err.contains("parsecs"), "{err}");
        assert!(parse_size("99999999999GiB").is_err());
    }

    #[test]
    fn trace_ids_parse_as_hex_left_padded() {
        assert_eq!(parse_trace_id("ff"), Some(255));
        assert_eq!(parse_trace_id("0"), None);
        assert_eq!(parse_trace_id("xyz"), None);
        assert_eq!(parse_trace_id(&"f".repeat(33)), None);
    }
}
