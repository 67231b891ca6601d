//! Trace context in Kafka record headers (rdkafka's [`OwnedHeaders`] when producing, any
//! [`Headers`] — usually a consumed message's `BorrowedHeaders` — when consuming).
//!
//! Kafka headers are an ordered list of byte values and a key may repeat. When it does, the last
//! one wins, as in the Java clients' `lastHeader`: a record re-published with a fresh
//! `traceparent` appended is read by its newest context (`tracestate` and `baggage` too; they are
//! never joined). Keys are case-sensitive; values are UTF-8 text.

use std::borrow::Cow;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::{Context, global};
use rdkafka::message::{Header, Headers, OwnedHeaders};

use crate::W3cPropagator;
use crate::propagator::{self, ContextCarrier, Field};

/// Appends context to a record's headers. rdkafka's `OwnedHeaders::insert` takes the headers by
/// value, so the injector owns them; take them back with [`KafkaInjector::into_headers`].
#[derive(Debug, Default)]
pub struct KafkaInjector(Option<OwnedHeaders>);

impl KafkaInjector {
    /// An injector that appends to `headers`.
    pub fn new(headers: OwnedHeaders) -> Self {
        Self(Some(headers))
    }

    /// The headers with the injected context appended.
    pub fn into_headers(self) -> OwnedHeaders {
        self.0.unwrap_or_default()
    }
}

impl Injector for KafkaInjector {
    fn set(&mut self, key: &str, value: String) {
        let headers = self.0.take().unwrap_or_default();
        self.0 = Some(headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        }));
    }
}

/// The keys [`KafkaExtractor`] indexes on construction.
const KNOWN: [&str; 3] = [
    propagator::TRACEPARENT,
    propagator::TRACESTATE,
    propagator::BAGGAGE,
];

/// Reads context from record headers.
///
/// Construction walks the headers once and keeps the last value of each W3C key: every header
/// read is an FFI call plus a UTF-8 check of the key, so lookups that rescanned the list for
/// each of `traceparent`, `tracestate` and `baggage` made a whole extract over three headers cost
/// 380 ns; with the index it is 155 ns (`benches/propagation.rs`).
#[derive(Debug, Clone, Copy)]
pub struct KafkaExtractor<'a, H: ?Sized> {
    headers: &'a H,
    /// For each of [`KNOWN`]: absent, or the last value (which may be a null value).
    known: [Option<Option<&'a [u8]>>; 3],
}

impl<'a, H: Headers + ?Sized> KafkaExtractor<'a, H> {
    /// An extractor over `headers`.
    pub fn new(headers: &'a H) -> Self {
        let mut known = [None; 3];
        for i in 0..headers.count() {
            if let Some(h) = headers.try_get(i)
                && let Some(slot) = KNOWN.iter().position(|k| *k == h.key)
            {
                known[slot] = Some(h.value);
            }
        }
        Self { headers, known }
    }

    fn scan(&self) -> impl DoubleEndedIterator<Item = Header<'a, &'a [u8]>> + '_ {
        (0..self.headers.count()).filter_map(|i| self.headers.try_get(i))
    }
}

fn text(value: Option<&[u8]>) -> &str {
    value
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or("")
}

impl<H: Headers + ?Sized> Extractor for KafkaExtractor<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        match KNOWN.iter().position(|k| *k == key) {
            Some(slot) => self.known[slot].map(text),
            None => self
                .scan()
                .rev()
                .find(|h| h.key == key)
                .map(|h| text(h.value)),
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.scan().map(|h| h.key).collect()
    }

    /// A repeated key counts once, by its last value, so this holds at most one value.
    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        self.get(key).map(|v| vec![v])
    }
}

/// The direct path: the index built on construction answers each header.
impl<H: Headers + ?Sized> ContextCarrier for KafkaExtractor<'_, H> {
    fn traceparent(&self) -> Field<'_> {
        self.known[0].map_or(Field::Absent, |value| Field::One(text(value)))
    }

    fn list(&self, key: &str) -> Option<Cow<'_, str>> {
        self.get(key).map(Cow::Borrowed)
    }
}

/// Appends what `p` injects for `cx` to `headers`: librdkafka copies the `traceparent` from its
/// stack buffer, with no `String` between.
pub fn inject_with(p: &W3cPropagator, cx: &Context, headers: OwnedHeaders) -> OwnedHeaders {
    let out = p.outgoing(cx);
    let mut headers = headers;
    if let Some(traceparent) = out.traceparent {
        headers = headers.insert(Header {
            key: propagator::TRACEPARENT,
            value: Some(traceparent.as_bytes()),
        });
    }
    for (key, value) in [
        (propagator::TRACESTATE, out.tracestate),
        (propagator::BAGGAGE, out.baggage),
    ] {
        if let Some(value) = value {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
    }
    headers
}

/// Appends `cx` to `headers`: directly with the propagator `init` installed ([`inject_with`]),
/// before `init` with the global propagator.
pub fn inject(cx: &Context, headers: OwnedHeaders) -> OwnedHeaders {
    if let Some(p) = propagator::installed() {
        return inject_with(p, cx, headers);
    }
    let mut injector = KafkaInjector::new(headers);
    global::get_text_map_propagator(|p| p.inject_context(cx, &mut injector));
    injector.into_headers()
}

/// Extracts the context carried by `headers`: directly with the propagator `init` installed
/// ([`W3cPropagator::extract_from`]), before `init` with the global propagator.
pub fn extract<H: Headers + ?Sized>(headers: &H) -> Context {
    let extractor = KafkaExtractor::new(headers);
    match propagator::installed() {
        Some(p) => p.extract_from(&Context::new(), &extractor),
        None => {
            global::get_text_map_propagator(|p| p.extract_with_context(&Context::new(), &extractor))
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;

    use super::*;
    use crate::carrier::paths;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const TP2: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";

    fn headers(pairs: &[(&str, Option<&[u8]>)]) -> OwnedHeaders {
        pairs.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header { key, value: *value })
        })
    }

    /// Extracts by both paths, which must agree.
    fn remote<H: Headers + ?Sized>(p: &W3cPropagator, h: &H) -> Context {
        paths::extract_both(
            p,
            |p| p.extract_with_context(&Context::new(), &KafkaExtractor::new(h)),
            |p| p.extract_from(&Context::new(), &KafkaExtractor::new(h)),
        )
    }

    #[test]
    fn round_trip_through_owned_and_borrowed_headers() {
        let p = W3cPropagator::new();
        let incoming = headers(&[
            ("traceparent", Some(TP.as_bytes())),
            ("tracestate", Some(b"k=v")),
        ]);
        let cx = remote(&p, incoming.as_borrowed());
        assert!(cx.span().span_context().is_valid());

        let mut injector =
            KafkaInjector::new(headers(&[("content-type", Some(b"application/json"))]));
        p.inject_context(&cx, &mut injector);
        let out = injector.into_headers();
        assert_eq!(out.count(), 3, "existing headers are kept");
        assert_eq!(KafkaExtractor::new(&out).get("traceparent"), Some(TP));
        assert_eq!(
            remote(&p, out.as_borrowed()).span().span_context(),
            cx.span().span_context()
        );
    }

    #[test]
    fn the_last_repeated_key_wins() {
        let p = W3cPropagator::new();
        let h = headers(&[
            ("traceparent", Some(TP.as_bytes())),
            ("traceparent", Some(TP2.as_bytes())),
        ]);
        assert_eq!(KafkaExtractor::new(&h).get("traceparent"), Some(TP2));
        assert_eq!(
            KafkaExtractor::new(&h).get_all("traceparent"),
            Some(vec![TP2])
        );
        let cx = remote(&p, &h);
        assert_eq!(
            cx.span().span_context().span_id().to_string(),
            "1111111111111111"
        );
    }

    #[test]
    fn missing_header_gives_an_empty_context() {
        let p = W3cPropagator::new();
        assert!(!remote(&p, &headers(&[("other", Some(b"x"))])).has_active_span());
        assert_eq!(p.invalid_contexts().traceparent, 0);
    }

    #[test]
    fn malformed_null_or_non_utf8_values_are_rejected_and_counted() {
        let p = W3cPropagator::new();
        for value in [Some(&b"00-garbage"[..]), None, Some(&[0xff, 0xfe][..])] {
            assert!(!remote(&p, &headers(&[("traceparent", value)])).has_active_span());
        }
        assert_eq!(p.invalid_contexts().traceparent, 3);
    }

    #[test]
    fn keys_are_case_sensitive() {
        let p = W3cPropagator::new();
        let cx = remote(&p, &headers(&[("TRACEPARENT", Some(TP.as_bytes()))]));
        assert!(!cx.has_active_span());
    }

    fn level_2_extract(p: &W3cPropagator, pairs: &[(&str, &str)]) -> Context {
        let pairs: Vec<(&str, Option<&[u8]>)> = pairs
            .iter()
            .map(|(key, value)| (*key, Some(value.as_bytes())))
            .collect();
        remote(p, headers(&pairs).as_borrowed())
    }

    fn read_back(out: &OwnedHeaders) -> (Option<String>, Option<String>) {
        let read = |key: &str| KafkaExtractor::new(out).get(key).map(str::to_owned);
        (read("traceparent"), read("tracestate"))
    }

    #[test]
    fn level_2_rules_hold_through_kafka_headers() {
        crate::carrier::level2::check(&crate::carrier::level2::Carrier {
            extract: &level_2_extract,
            inject: &|p, cx| {
                let mut injector = KafkaInjector::new(OwnedHeaders::new());
                p.inject_context(cx, &mut injector);
                read_back(&injector.into_headers())
            },
        });
        crate::carrier::level2::check(&crate::carrier::level2::Carrier {
            extract: &level_2_extract,
            inject: &|p, cx| read_back(&inject_with(p, cx, OwnedHeaders::new())),
        });
    }

    #[test]
    fn the_direct_path_writes_what_the_injector_writes() {
        let existing = headers(&[("content-type", Some(b"application/json"))]);
        let out = inject_with(&W3cPropagator::new(), &paths::full(), existing);
        let read = |key: &str| KafkaExtractor::new(&out).get(key).map(str::to_owned);
        assert_eq!(paths::read_three(read), paths::full_written());
        assert_eq!(out.count(), 4, "appended after the existing header");
    }
}
