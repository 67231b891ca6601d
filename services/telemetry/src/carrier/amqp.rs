//! Trace context in AMQP 0-9-1 message headers (lapin's [`FieldTable`]), where
//! opentelemetry-instrumentation-celery and most AMQP clients put it: top-level `traceparent`,
//! `tracestate` and `baggage` entries.
//!
//! We write values as `LongString` (type `S`), which every client reads. Other clients send
//! `ShortString` or RabbitMQ's `ByteArray` (type `x`) for text; extraction accepts all three. Keys
//! in a field table are case-sensitive and unique, as the AMQP spec defines them.

use std::borrow::Cow;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::{Context, global};

use crate::W3cPropagator;
use crate::propagator::{self, ContextCarrier, Field, TRACEPARENT};

/// Writes context into a field table, replacing any entry already there.
#[derive(Debug)]
pub struct FieldTableInjector<'a>(pub &'a mut FieldTable);

impl Injector for FieldTableInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(
            ShortString::from(key),
            AMQPValue::LongString(LongString::from(value)),
        );
    }
}

/// Reads context from a field table.
#[derive(Debug, Clone, Copy)]
pub struct FieldTableExtractor<'a>(pub &'a FieldTable);

fn text(value: &AMQPValue) -> Option<&str> {
    match value {
        AMQPValue::LongString(s) => Some(std::str::from_utf8(s.as_bytes()).unwrap_or("")),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        AMQPValue::ByteArray(b) => Some(std::str::from_utf8(b.as_slice()).unwrap_or("")),
        // A number or table where text belongs is malformed context, not a missing one.
        _ => Some(""),
    }
}

impl Extractor for FieldTableExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.inner().get(key).and_then(text)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(ShortString::as_str).collect()
    }
}

/// The direct path: keys are unique in a field table, so one lookup answers each header.
impl ContextCarrier for FieldTable {
    fn traceparent(&self) -> Field<'_> {
        self.inner()
            .get(TRACEPARENT)
            .and_then(text)
            .map_or(Field::Absent, Field::One)
    }

    fn list(&self, key: &str) -> Option<Cow<'_, str>> {
        self.inner().get(key).and_then(text).map(Cow::Borrowed)
    }
}

/// Writes what `p` injects for `cx` straight into `headers` as `LongString` entries, replacing
/// any there: the `traceparent` is copied from its stack buffer, with no `String` between.
pub fn inject_with(p: &W3cPropagator, cx: &Context, headers: &mut FieldTable) {
    let out = p.outgoing(cx);
    if let Some(traceparent) = out.traceparent {
        headers.insert(
            ShortString::from(TRACEPARENT),
            AMQPValue::LongString(LongString::from(traceparent.as_bytes())),
        );
    }
    for (key, value) in [
        (propagator::TRACESTATE, out.tracestate),
        (propagator::BAGGAGE, out.baggage),
    ] {
        if let Some(value) = value {
            headers.insert(
                ShortString::from(key),
                AMQPValue::LongString(LongString::from(value)),
            );
        }
    }
}

/// Injects `cx` into `headers`: directly with the propagator `init` installed
/// ([`inject_with`]), before `init` with the global propagator.
pub fn inject(cx: &Context, headers: &mut FieldTable) {
    match propagator::installed() {
        Some(p) => inject_with(p, cx, headers),
        None => global::get_text_map_propagator(|p| {
            p.inject_context(cx, &mut FieldTableInjector(headers));
        }),
    }
}

/// Extracts the context carried by `headers`: directly with the propagator `init` installed
/// ([`W3cPropagator::extract_from`]), before `init` with the global propagator.
pub fn extract(headers: &FieldTable) -> Context {
    match propagator::installed() {
        Some(p) => p.extract_from(&Context::new(), headers),
        None => global::get_text_map_propagator(|p| {
            p.extract_with_context(&Context::new(), &FieldTableExtractor(headers))
        }),
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::ByteArray;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;

    use super::*;
    use crate::carrier::paths;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Extracts by both paths, which must agree.
    fn remote(p: &W3cPropagator, table: &FieldTable) -> Context {
        paths::extract_both(
            p,
            |p| p.extract_with_context(&Context::new(), &FieldTableExtractor(table)),
            |p| p.extract_from(&Context::new(), table),
        )
    }

    fn with(key: &str, value: AMQPValue) -> FieldTable {
        let mut table = FieldTable::default();
        table.insert(key.into(), value);
        table
    }

    #[test]
    fn round_trip_writes_long_strings() {
        let p = W3cPropagator::new();
        let cx = remote(&p, &with("traceparent", AMQPValue::LongString(TP.into())));
        assert!(cx.span().span_context().is_valid());

        let mut table = FieldTable::default();
        table.insert(
            "task".into(),
            AMQPValue::LongString("scan.process_image".into()),
        );
        p.inject_context(&cx, &mut FieldTableInjector(&mut table));
        assert_eq!(
            table.inner().get("traceparent"),
            Some(&AMQPValue::LongString(TP.into()))
        );
        assert!(table.inner().contains_key("task"), "other headers are kept");
        assert_eq!(
            remote(&p, &table).span().span_context(),
            cx.span().span_context()
        );
    }

    #[test]
    fn accepts_short_strings_and_byte_arrays() {
        let p = W3cPropagator::new();
        for value in [
            AMQPValue::ShortString(TP.into()),
            AMQPValue::ByteArray(ByteArray::from(TP.as_bytes())),
        ] {
            assert!(
                remote(&p, &with("traceparent", value))
                    .span()
                    .span_context()
                    .is_valid()
            );
        }
    }

    #[test]
    fn missing_header_gives_an_empty_context() {
        let p = W3cPropagator::new();
        assert!(!remote(&p, &FieldTable::default()).has_active_span());
        assert_eq!(p.invalid_contexts().traceparent, 0);
    }

    #[test]
    fn malformed_or_mistyped_values_are_rejected_and_counted() {
        let p = W3cPropagator::new();
        for value in [
            AMQPValue::LongString("00-nope".into()),
            AMQPValue::LongString(LongString::from(vec![0xff, 0xfe])),
            AMQPValue::LongLongInt(42),
        ] {
            assert!(!remote(&p, &with("traceparent", value)).has_active_span());
        }
        assert_eq!(p.invalid_contexts().traceparent, 3);
    }

    #[test]
    fn keys_are_case_sensitive() {
        let p = W3cPropagator::new();
        let cx = remote(&p, &with("TraceParent", AMQPValue::LongString(TP.into())));
        assert!(!cx.has_active_span());
    }

    #[test]
    fn injecting_replaces_an_existing_entry() {
        let mut table = with("traceparent", AMQPValue::LongString("stale".into()));
        FieldTableInjector(&mut table).set("traceparent", TP.to_owned());
        assert_eq!(table.inner().len(), 1);
        assert_eq!(FieldTableExtractor(&table).get("traceparent"), Some(TP));
    }

    fn level_2_extract(p: &W3cPropagator, pairs: &[(&str, &str)]) -> Context {
        let mut table = FieldTable::default();
        for (key, value) in pairs {
            table.insert((*key).into(), AMQPValue::LongString((*value).into()));
        }
        remote(p, &table)
    }

    fn read_back(table: &FieldTable) -> (Option<String>, Option<String>) {
        let read = |key: &str| FieldTableExtractor(table).get(key).map(str::to_owned);
        (read("traceparent"), read("tracestate"))
    }

    #[test]
    fn level_2_rules_hold_through_a_field_table() {
        crate::carrier::level2::check(&crate::carrier::level2::Carrier {
            extract: &level_2_extract,
            inject: &|p, cx| {
                let mut table = FieldTable::default();
                p.inject_context(cx, &mut FieldTableInjector(&mut table));
                read_back(&table)
            },
        });
        crate::carrier::level2::check(&crate::carrier::level2::Carrier {
            extract: &level_2_extract,
            inject: &|p, cx| {
                let mut table = FieldTable::default();
                inject_with(p, cx, &mut table);
                read_back(&table)
            },
        });
    }

    #[test]
    fn the_direct_path_writes_what_the_injector_writes() {
        let mut table = with("traceparent", AMQPValue::LongString("stale".into()));
        table.insert(
            "task".into(),
            AMQPValue::LongString("scan.process_image".into()),
        );
        inject_with(&W3cPropagator::new(), &paths::full(), &mut table);
        let read = |key: &str| FieldTableExtractor(&table).get(key).map(str::to_owned);
        assert_eq!(paths::read_three(read), paths::full_written());
        assert!(matches!(
            table.inner().get("traceparent"),
            Some(AMQPValue::LongString(_))
        ));
        assert_eq!(table.inner().len(), 4, "replaced, and the task kept");
    }
}
