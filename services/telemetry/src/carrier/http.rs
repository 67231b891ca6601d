//! Trace context in HTTP headers ([`http::HeaderMap`]), for servers (axum requests) and clients
//! (outgoing requests) alike.
//!
//! Header names are case-insensitive in HTTP; `HeaderMap` stores them lowercase, so `TraceParent`
//! and `traceparent` are the same field. A field sent twice has no single value: `get` answers
//! `None` for it and `get_all` lists every value, which lets the propagator reject two
//! `traceparent`s and join several `tracestate`s.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::{Context, global};

use crate::W3cPropagator;
use crate::propagator::{self, ContextCarrier, Field};

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// Our three header names as prebuilt `HeaderName`s, so injection does not parse them.
fn known_name(key: &str) -> Option<HeaderName> {
    match key {
        "traceparent" => Some(TRACEPARENT),
        "tracestate" => Some(TRACESTATE),
        "baggage" => Some(BAGGAGE),
        _ => None,
    }
}

/// Writes context into a header map, replacing any value already there.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let name = match known_name(key) {
            Some(name) => name,
            None => match HeaderName::from_bytes(key.as_bytes()) {
                Ok(name) => name,
                Err(_) => return,
            },
        };
        // `TryFrom<String>` takes the buffer without copying it.
        if let Ok(value) = HeaderValue::try_from(value) {
            self.0.insert(name, value);
        }
    }
}

/// Reads context from a header map.
#[derive(Debug, Clone, Copy)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

fn text(value: &HeaderValue) -> &str {
    value.to_str().unwrap_or("")
}

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let mut values = match known_name(key) {
            Some(name) => self.0.get_all(name).into_iter(),
            None => self.0.get_all(key).into_iter(),
        };
        let first = values.next()?;
        values.next().is_none().then(|| text(first))
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values = match known_name(key) {
            Some(name) => self.0.get_all(name),
            None => self.0.get_all(key),
        };
        // Collecting an empty iterator does not allocate, so an absent key costs one lookup.
        let values: Vec<&str> = values.iter().map(text).collect();
        (!values.is_empty()).then_some(values)
    }
}

/// The direct path: one `get_all` walk tells an absent `traceparent` from one or several, and a
/// single list field is borrowed, not copied.
impl ContextCarrier for HeaderMap {
    fn traceparent(&self) -> Field<'_> {
        let mut values = self.get_all(TRACEPARENT).into_iter();
        match (values.next(), values.next()) {
            (None, _) => Field::Absent,
            (Some(value), None) => Field::One(text(value)),
            (Some(_), Some(_)) => Field::Repeated,
        }
    }

    fn list(&self, key: &str) -> Option<Cow<'_, str>> {
        let values = match known_name(key) {
            Some(name) => self.get_all(name),
            None => self.get_all(key),
        };
        propagator::joined(values.iter().map(text))
    }
}

/// Writes what `p` injects for `cx` straight into `headers` as header values, replacing any
/// there: the `traceparent` is copied from its stack buffer, with no `String` between.
pub fn inject_with(p: &W3cPropagator, cx: &Context, headers: &mut HeaderMap) {
    let out = p.outgoing(cx);
    if let Some(traceparent) = out.traceparent
        && let Ok(value) = HeaderValue::from_bytes(traceparent.as_bytes())
    {
        headers.insert(TRACEPARENT, value);
    }
    for (name, value) in [(TRACESTATE, out.tracestate), (BAGGAGE, out.baggage)] {
        if let Some(value) = value.and_then(|value| HeaderValue::try_from(value).ok()) {
            headers.insert(name, value);
        }
    }
}

/// Injects `cx` into `headers`: directly with the propagator `init` installed
/// ([`inject_with`]), before `init` with the global propagator.
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    match propagator::installed() {
        Some(p) => inject_with(p, cx, headers),
        None => global::get_text_map_propagator(|p| {
            p.inject_context(cx, &mut HeaderInjector(headers));
        }),
    }
}

/// Extracts the context carried by `headers`: directly with the propagator `init` installed
/// ([`W3cPropagator::extract_from`]), before `init` with the global propagator.
pub fn extract(headers: &HeaderMap) -> Context {
    match propagator::installed() {
        Some(p) => p.extract_from(&Context::new(), headers),
        None => global::get_text_map_propagator(|p| {
            p.extract_with_context(&Context::new(), &HeaderExtractor(headers))
        }),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;

    use super::*;
    use crate::carrier::paths;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Extracts by both paths, which must agree.
    fn remote(p: &W3cPropagator, headers: &HeaderMap) -> Context {
        paths::extract_both(
            p,
            |p| p.extract_with_context(&Context::new(), &HeaderExtractor(headers)),
            |p| p.extract_from(&Context::new(), headers),
        )
    }

    #[test]
    fn server_extracts_what_a_client_injected() {
        let p = W3cPropagator::new();
        let mut incoming = HeaderMap::new();
        incoming.insert("traceparent", HeaderValue::from_static(TP));
        incoming.insert("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE"));
        let cx = remote(&p, &incoming);

        let mut outgoing = HeaderMap::new();
        p.inject_context(&cx, &mut HeaderInjector(&mut outgoing));
        assert_eq!(
            outgoing.get("traceparent").and_then(|v| v.to_str().ok()),
            Some(TP)
        );
        assert_eq!(
            outgoing.get("tracestate").and_then(|v| v.to_str().ok()),
            Some("congo=t61rcWkgMzE")
        );
        let back = remote(&p, &outgoing);
        assert_eq!(back.span().span_context(), cx.span().span_context());
    }

    #[test]
    fn missing_headers_give_an_empty_context() {
        let p = W3cPropagator::new();
        let cx = remote(&p, &HeaderMap::new());
        assert!(!cx.has_active_span());
        assert_eq!(p.invalid_contexts().traceparent, 0);
    }

    #[test]
    fn malformed_value_is_rejected_and_counted() {
        let p = W3cPropagator::new();
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"),
        );
        assert!(!remote(&p, &headers).has_active_span());
        headers.insert(
            "traceparent",
            HeaderValue::from_bytes(b"00-\xff").expect("obs-text is a legal header value"),
        );
        assert!(!remote(&p, &headers).has_active_span());
        assert_eq!(p.invalid_contexts().traceparent, 2);
    }

    #[test]
    fn duplicated_traceparent_starts_a_new_trace() {
        let p = W3cPropagator::new();
        let mut headers = HeaderMap::new();
        headers.append("traceparent", HeaderValue::from_static(TP));
        headers.append("traceparent", HeaderValue::from_static(TP));
        assert_eq!(HeaderExtractor(&headers).get("traceparent"), None);
        assert_eq!(
            HeaderExtractor(&headers)
                .get_all("traceparent")
                .map(|v| v.len()),
            Some(2)
        );
        assert!(!remote(&p, &headers).has_active_span());
        assert_eq!(p.invalid_contexts().traceparent, 1);
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let p = W3cPropagator::new();
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_bytes(b"TraceParent").expect("name"),
            HeaderValue::from_static(TP),
        );
        assert_eq!(HeaderExtractor(&headers).get("TRACEPARENT"), Some(TP));
        assert!(remote(&p, &headers).span().span_context().is_valid());
    }

    #[test]
    fn injecting_replaces_an_existing_traceparent() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static("stale"));
        HeaderInjector(&mut headers).set("traceparent", TP.to_owned());
        assert_eq!(headers.get_all("traceparent").iter().count(), 1);
        assert_eq!(
            headers.get("traceparent").and_then(|v| v.to_str().ok()),
            Some(TP)
        );
    }

    fn level_2_extract(p: &W3cPropagator, pairs: &[(&str, &str)]) -> Context {
        let mut headers = HeaderMap::new();
        for (key, value) in pairs {
            let value = HeaderValue::from_str(value).expect("a header value");
            headers.append(HeaderName::from_bytes(key.as_bytes()).expect("name"), value);
        }
        remote(p, &headers)
    }

    fn read_back(headers: &HeaderMap) -> (Option<String>, Option<String>) {
        let read = |key: &str| HeaderExtractor(headers).get(key).map(str::to_owned);
        (read("traceparent"), read("tracestate"))
    }

    #[test]
    fn level_2_rules_hold_through_http_headers() {
        crate::carrier::level2::check(&crate::carrier::level2::Carrier {
            extract: &level_2_extract,
            inject: &|p, cx| {
                let mut headers = HeaderMap::new();
                p.inject_context(cx, &mut HeaderInjector(&mut headers));
                read_back(&headers)
            },
        });
        crate::carrier::level2::check(&crate::carrier::level2::Carrier {
            extract: &level_2_extract,
            inject: &|p, cx| {
                let mut headers = HeaderMap::new();
                inject_with(p, cx, &mut headers);
                read_back(&headers)
            },
        });
    }

    #[test]
    fn the_direct_path_writes_what_the_injector_writes() {
        let mut headers = http_request_headers();
        inject_with(&W3cPropagator::new(), &paths::full(), &mut headers);
        let read = |key: &str| HeaderExtractor(&headers).get(key).map(str::to_owned);
        assert_eq!(paths::read_three(read), paths::full_written());
        assert_eq!(headers.get_all("traceparent").iter().count(), 1, "replaced");
        assert_eq!(headers.len(), 4, "the other header is kept");
    }

    #[test]
    fn list_fields_are_borrowed_alone_and_joined_when_repeated() {
        let mut headers = HeaderMap::new();
        headers.append("tracestate", HeaderValue::from_static("a=1"));
        assert!(matches!(
            headers.list("tracestate"),
            Some(Cow::Borrowed("a=1"))
        ));
        headers.append("tracestate", HeaderValue::from_static("b=2"));
        headers.append("tracestate", HeaderValue::from_static("c=3"));
        assert_eq!(headers.list("tracestate").as_deref(), Some("a=1,b=2,c=3"));
        assert_eq!(headers.list("baggage"), None);
    }

    fn http_request_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static("stale"));
        headers.insert("host", HeaderValue::from_static("127.0.0.1:8000"));
        headers
    }

    #[test]
    fn a_duplicated_key_across_tracestate_fields_keeps_the_header() {
        let p = W3cPropagator::new();
        let mut headers = HeaderMap::new();
        headers.append("traceparent", HeaderValue::from_static(TP));
        headers.append("tracestate", HeaderValue::from_static("foo=1"));
        headers.append("tracestate", HeaderValue::from_static("foo=1"));
        let mut outgoing = HeaderMap::new();
        p.inject_context(&remote(&p, &headers), &mut HeaderInjector(&mut outgoing));
        assert_eq!(HeaderExtractor(&outgoing).get("tracestate"), Some("foo=1"));
        assert_eq!(p.invalid_contexts().tracestate, 0);
    }
}
