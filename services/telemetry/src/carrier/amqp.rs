//! Trace context in AMQP 0-9-1 message headers (lapin's [`FieldTable`]), where
//! opentelemetry-instrumentation-celery and most AMQP clients put it: top-level `traceparent`,
//! `tracestate` and `baggage` entries.
//!
//! We write values as `LongString` (type `S`), which every client reads. Other clients send
//! `ShortString` or RabbitMQ's `ByteArray` (type `x`) for text; extraction accepts all three. Keys
//! in a field table are case-sensitive and unique, as the AMQP spec defines them.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::{Context, global};

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

/// Injects `cx` into `headers` with the global propagator.
pub fn inject(cx: &Context, headers: &mut FieldTable) {
    global::get_text_map_propagator(|p| p.inject_context(cx, &mut FieldTableInjector(headers)));
}

/// Extracts the context carried by `headers` with the global propagator.
pub fn extract(headers: &FieldTable) -> Context {
    global::get_text_map_propagator(|p| {
        p.extract_with_context(&Context::new(), &FieldTableExtractor(headers))
    })
}

#[cfg(test)]
mod tests {
    use lapin::types::ByteArray;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;

    use super::*;
    use crate::W3cPropagator;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn remote(p: &W3cPropagator, table: &FieldTable) -> Context {
        p.extract_with_context(&Context::new(), &FieldTableExtractor(table))
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

    #[test]
    fn level_2_rules_hold_through_a_field_table() {
        crate::carrier::level2::check(&crate::carrier::level2::Carrier {
            extract: &|p, pairs| {
                let mut table = FieldTable::default();
                for (key, value) in pairs {
                    table.insert((*key).into(), AMQPValue::LongString((*value).into()));
                }
                remote(p, &table)
            },
            inject: &|p, cx| {
                let mut table = FieldTable::default();
                p.inject_context(cx, &mut FieldTableInjector(&mut table));
                let read = |key: &str| FieldTableExtractor(&table).get(key).map(str::to_owned);
                (read("traceparent"), read("tracestate"))
            },
        });
    }
}
