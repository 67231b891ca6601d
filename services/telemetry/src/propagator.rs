//! The W3C propagator: `traceparent`, `tracestate` and `baggage` through OpenTelemetry's
//! [`TextMapPropagator`] interface, on top of the strict parsers in [`crate::w3c`] and
//! [`crate::baggage`].
//!
//! Invalid input never fails a request: an invalid `traceparent` means "no parent" (the receiver
//! starts a new trace and drops `tracestate`), an invalid `tracestate` or `baggage` is dropped,
//! and each case is counted so a run can report how much bad context it saw.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceState};

use crate::{baggage, w3c};

/// Header name of the trace parent.
pub const TRACEPARENT: &str = "traceparent";
/// Header name of the vendor trace state.
pub const TRACESTATE: &str = "tracestate";
/// Header name of the W3C baggage.
pub const BAGGAGE: &str = "baggage";

/// Counts of rejected context, by header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InvalidContexts {
    /// `traceparent` values rejected (malformed, or sent more than once).
    pub traceparent: u64,
    /// `tracestate` values dropped while their `traceparent` was valid.
    pub tracestate: u64,
    /// `baggage` values dropped.
    pub baggage: u64,
}

#[derive(Debug, Default)]
struct Counters {
    traceparent: AtomicU64,
    tracestate: AtomicU64,
    baggage: AtomicU64,
}

/// The propagator `init` installs globally. Clones share their counters.
#[derive(Clone, Debug)]
pub struct W3cPropagator {
    counters: Arc<Counters>,
    fields: Arc<[String; 3]>,
}

impl Default for W3cPropagator {
    fn default() -> Self {
        Self::new()
    }
}

/// What an extractor holds for one header name.
enum Field<'a> {
    Absent,
    One(&'a str),
    Repeated,
}

/// Reads a single-valued header (`traceparent`), telling one value from several.
///
/// Our carriers answer `get` by their transport's rule for repeated keys (HTTP: only when the key
/// occurs once; Kafka: the last one wins; AMQP: keys are unique), so a present header costs one
/// lookup and no allocation. `get_all` is asked only when `get` found nothing, to tell "absent"
/// from "repeated".
fn field<'a>(extractor: &'a dyn Extractor, key: &str) -> Field<'a> {
    if let Some(value) = extractor.get(key) {
        return Field::One(value);
    }
    match extractor.get_all(key) {
        None => Field::Absent,
        Some(mut values) if values.len() == 1 => Field::One(values.remove(0)),
        Some(values) if values.is_empty() => Field::Absent,
        Some(_) => Field::Repeated,
    }
}

/// Reads a list-valued header, joining repeated fields with `,` as RFC 7230 §3.2.2 says.
///
/// `get_all` answers by the carrier's rule (HTTP: every field line; Kafka: the last header;
/// AMQP: the one entry) and, for an absent key, in one lookup without allocating.
fn list_field(extractor: &dyn Extractor, key: &str) -> Option<String> {
    match extractor.get_all(key)?.as_slice() {
        [] => None,
        [one] => Some((*one).to_owned()),
        many => Some(many.join(",")),
    }
}

impl W3cPropagator {
    /// A propagator with fresh counters.
    pub fn new() -> Self {
        Self {
            counters: Arc::default(),
            fields: Arc::new([
                TRACEPARENT.to_owned(),
                TRACESTATE.to_owned(),
                BAGGAGE.to_owned(),
            ]),
        }
    }

    /// How much invalid context this propagator (and its clones) has rejected so far.
    pub fn invalid_contexts(&self) -> InvalidContexts {
        InvalidContexts {
            traceparent: self.counters.traceparent.load(Ordering::Relaxed),
            tracestate: self.counters.tracestate.load(Ordering::Relaxed),
            baggage: self.counters.baggage.load(Ordering::Relaxed),
        }
    }

    /// Extracts the remote span context alone, or `None` when there is no valid one.
    pub fn extract_span_context(&self, extractor: &dyn Extractor) -> Option<SpanContext> {
        let parent = match field(extractor, TRACEPARENT) {
            Field::Absent => return None,
            Field::One(value) => w3c::TraceParent::parse(value).ok(),
            // Two traceparents cannot both be the parent; the test suite expects a new trace.
            Field::Repeated => None,
        };
        let Some(parent) = parent else {
            self.counters.traceparent.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let trace_state = match list_field(extractor, TRACESTATE) {
            None => TraceState::NONE,
            Some(header) => w3c::trace_state_from_header(&header).unwrap_or_else(|_| {
                self.counters.tracestate.fetch_add(1, Ordering::Relaxed);
                TraceState::NONE
            }),
        };
        Some(SpanContext::new(
            parent.trace_id,
            parent.parent_id,
            parent.flags,
            true,
            trace_state,
        ))
    }
}

impl TextMapPropagator for W3cPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            let tp = w3c::TraceParent::new(sc.trace_id(), sc.span_id(), sc.trace_flags());
            injector.set(TRACEPARENT, tp.format().as_str().to_owned());
            if *sc.trace_state() != TraceState::NONE {
                let header = sc.trace_state().header();
                if !header.is_empty() {
                    injector.set(TRACESTATE, header);
                }
            }
        }
        let bag = cx.baggage();
        if !bag.is_empty() {
            let header = baggage::to_header(bag);
            if !header.is_empty() {
                injector.set(BAGGAGE, header);
            }
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let mut out = match self.extract_span_context(extractor) {
            Some(sc) => cx.with_remote_span_context(sc),
            None => cx.clone(),
        };
        if let Some(header) = list_field(extractor, BAGGAGE) {
            match baggage::baggage_from_header(&header) {
                Ok(bag) if !bag.is_empty() => out = out.with_baggage(bag),
                Ok(_) => {}
                Err(_) => {
                    self.counters.baggage.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        out
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(self.fields.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

    use super::*;

    /// A carrier that keeps every value of a key, like an HTTP header map.
    #[derive(Default)]
    struct Multi(Vec<(&'static str, &'static str)>);

    impl Extractor for Multi {
        fn get(&self, key: &str) -> Option<&str> {
            let mut it = self.0.iter().filter(|(k, _)| *k == key);
            let first = it.next()?;
            it.next().is_none().then_some(first.1)
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| *k).collect()
        }
        fn get_all(&self, key: &str) -> Option<Vec<&str>> {
            let all: Vec<&str> = self
                .0
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .collect();
            (!all.is_empty()).then_some(all)
        }
    }

    const TP: &str = "00-12345678901234567890123456789012-1234567890123456-01";

    fn extract(p: &W3cPropagator, headers: &[(&'static str, &'static str)]) -> Context {
        p.extract_with_context(&Context::new(), &Multi(headers.to_vec()))
    }

    #[test]
    fn valid_traceparent_becomes_the_remote_parent() {
        let p = W3cPropagator::new();
        let cx = extract(&p, &[(TRACEPARENT, TP), (TRACESTATE, "foo=1,bar=2")]);
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_remote());
        assert_eq!(
            sc.trace_id(),
            TraceId::from_hex("12345678901234567890123456789012").expect("hex")
        );
        assert_eq!(sc.trace_state().get("bar"), Some("2"));
        assert_eq!(p.invalid_contexts(), InvalidContexts::default());
    }

    #[test]
    fn invalid_traceparent_means_no_parent_drops_tracestate_and_is_counted() {
        let p = W3cPropagator::new();
        for bad in [
            "00-12345678901234567890123456789012-1234567890123456-01x",
            "00-ABCDEF78901234567890123456789012-1234567890123456-01",
            "00-00000000000000000000000000000000-1234567890123456-01",
        ] {
            let cx = p.extract_with_context(
                &Context::new(),
                &HashMap::from([
                    (TRACEPARENT.to_owned(), bad.to_owned()),
                    (TRACESTATE.to_owned(), "foo=1".to_owned()),
                ]),
            );
            assert!(!cx.has_active_span(), "{bad} gave a parent");
        }
        assert_eq!(p.invalid_contexts().traceparent, 3);
        assert_eq!(p.invalid_contexts().tracestate, 0);
    }

    #[test]
    fn duplicated_traceparent_is_invalid() {
        let p = W3cPropagator::new();
        let cx = extract(
            &p,
            &[
                (TRACEPARENT, TP),
                (
                    TRACEPARENT,
                    "00-12345678901234567890123456789011-1234567890123456-01",
                ),
            ],
        );
        assert!(!cx.has_active_span());
        assert_eq!(p.invalid_contexts().traceparent, 1);
    }

    #[test]
    fn repeated_tracestate_fields_are_combined_in_order() {
        let p = W3cPropagator::new();
        let cx = extract(
            &p,
            &[
                (TRACEPARENT, TP),
                (TRACESTATE, "foo=1,bar=2"),
                (TRACESTATE, ""),
                (TRACESTATE, "rojo=1,congo=2"),
            ],
        );
        assert_eq!(
            cx.span().span_context().trace_state().header(),
            "foo=1,bar=2,rojo=1,congo=2"
        );
    }

    #[test]
    fn keys_duplicated_across_tracestate_fields_drop_the_tracestate_only() {
        let p = W3cPropagator::new();
        let cx = extract(
            &p,
            &[
                (TRACEPARENT, TP),
                (TRACESTATE, "foo=1"),
                (TRACESTATE, "foo=2"),
            ],
        );
        assert!(cx.span().span_context().is_valid());
        assert_eq!(*cx.span().span_context().trace_state(), TraceState::NONE);
        assert_eq!(p.invalid_contexts().tracestate, 1);
    }

    #[test]
    fn tracestate_without_traceparent_is_ignored() {
        let p = W3cPropagator::new();
        let cx = extract(&p, &[(TRACESTATE, "foo=1")]);
        assert!(!cx.has_active_span());
        assert_eq!(p.invalid_contexts(), InvalidContexts::default());
    }

    #[test]
    fn inject_writes_known_flags_and_tracestate() {
        let p = W3cPropagator::new();
        let sc = SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
            SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
            TraceFlags::new(0x03),
            true,
            "vendor1=value1,vendor2=value2".parse().expect("tracestate"),
        );
        let mut out = HashMap::new();
        p.inject_context(&Context::new().with_remote_span_context(sc), &mut out);
        assert_eq!(
            out.get(TRACEPARENT).map(String::as_str),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
        );
        assert_eq!(
            out.get(TRACESTATE).map(String::as_str),
            Some("vendor1=value1,vendor2=value2")
        );
        assert!(!out.contains_key(BAGGAGE));
    }

    #[test]
    fn random_flag_survives_extract_then_inject() {
        let p = W3cPropagator::new();
        let cx = extract(
            &p,
            &[(
                TRACEPARENT,
                "00-12345678901234567890123456789012-1234567890123456-03",
            )],
        );
        let mut out = HashMap::new();
        p.inject_context(&cx, &mut out);
        assert_eq!(
            out.get(TRACEPARENT).map(String::as_str),
            Some("00-12345678901234567890123456789012-1234567890123456-03")
        );
    }

    #[test]
    fn inject_without_a_span_writes_nothing() {
        let p = W3cPropagator::new();
        let mut out: HashMap<String, String> = HashMap::new();
        p.inject_context(&Context::new(), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn baggage_is_extracted_and_injected_and_bad_baggage_counted() {
        let p = W3cPropagator::new();
        let cx = extract(&p, &[(BAGGAGE, "user.id=42"), (BAGGAGE, "tier=gold;ttl=5")]);
        assert_eq!(cx.baggage().len(), 2);
        let mut out = HashMap::new();
        p.inject_context(&cx, &mut out);
        let header = out.get(BAGGAGE).expect("baggage injected");
        assert!(
            header.contains("user.id=42") && header.contains("tier=gold;ttl=5"),
            "{header}"
        );

        let cx = extract(&p, &[(TRACEPARENT, TP), (BAGGAGE, "bad key=1")]);
        assert!(cx.baggage().is_empty());
        assert!(
            cx.span().span_context().is_valid(),
            "bad baggage leaves the trace alone"
        );
        assert_eq!(p.invalid_contexts().baggage, 1);
    }

    #[test]
    fn fields_lists_the_three_headers() {
        let p = W3cPropagator::new();
        assert_eq!(
            p.fields().collect::<Vec<_>>(),
            vec![TRACEPARENT, TRACESTATE, BAGGAGE]
        );
    }
}
