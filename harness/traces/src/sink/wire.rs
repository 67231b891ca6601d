//! Reading the store's encoded spans straight into the [`model`]: the protobuf wire format walked
//! field by field, with no intermediate OTLP message. The store keeps each span as the bytes
//! prost encoded at ingest (433 bytes of RSS a span in the `sink` bench, against ≈ 2.6 KB for
//! the decoded message with its per-field allocations), and the verdict reads every span once,
//! so this is the read path.
//!
//! Only the fields the model has are read: ids, name, kind, times, status, links and attributes.
//! The bytes come from prost's encoder, so they are well formed; should they not be, reading
//! stops at the first malformed field and keeps what it has, rather than failing the trace.
//!
//! Field numbers are those of `opentelemetry/proto/trace/v1/trace.proto` and
//! `common/v1/common.proto`; the test below holds this reading to [`model_from_otlp`] for spans
//! with every kind of attribute value.
//!
//! [`model_from_otlp`]: crate::convert::model_from_otlp

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;

use crate::convert::{hex, kind_from_otlp};
use crate::model::{Link, Span};

/// One field's value as the wire carries it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

/// The fields of one message, in wire order; ends early at malformed input.
struct Fields<'a> {
    rest: &'a [u8],
}

fn fields(bytes: &[u8]) -> Fields<'_> {
    Fields { rest: bytes }
}

impl Fields<'_> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for (i, byte) in self.rest.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[i + 1..];
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u64, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let read = |f: &mut Self| -> Option<(u64, Value<'a>)> {
            let key = f.varint()?;
            let value = match key & 7 {
                0 => Value::Varint(f.varint()?),
                1 => Value::Fixed64(u64::from_le_bytes(f.take(8)?.try_into().ok()?)),
                2 => {
                    let n = usize::try_from(f.varint()?).ok()?;
                    if f.rest.len() < n {
                        return None;
                    }
                    let (head, tail) = f.rest.split_at(n);
                    f.rest = tail;
                    Value::Len(head)
                }
                5 => Value::Fixed32(u32::from_le_bytes(f.take(4)?.try_into().ok()?)),
                // Groups (3, 4) are not used by OTLP; anything else is not protobuf.
                _ => return None,
            };
            Some((key >> 3, value))
        };
        let item = read(self);
        if item.is_none() {
            self.rest = &[];
        }
        item
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `AnyValue`, rendered as [`crate::convert::render_any_value`] renders the decoded message.
fn write_any(out: &mut String, bytes: &[u8], quote_strings: bool) {
    // A oneof: the last member on the wire wins.
    let Some((number, value)) = fields(bytes).last() else {
        return;
    };
    // `write!` to a `String` cannot fail; the results are ignored for that reason.
    match (number, value) {
        (1, Value::Len(s)) if quote_strings => {
            let _ = write!(out, "\"{}\"", String::from_utf8_lossy(s));
        }
        (1, Value::Len(s)) => out.push_str(&String::from_utf8_lossy(s)),
        (2, Value::Varint(b)) => {
            let _ = write!(out, "{}", b != 0);
        }
        // int64 travels as its two's-complement varint.
        #[allow(clippy::cast_possible_wrap)]
        (3, Value::Varint(i)) => {
            let _ = write!(out, "{}", i as i64);
        }
        (4, Value::Fixed64(d)) => {
            let _ = write!(out, "{}", f64::from_bits(d));
        }
        // `ArrayValue.values` and `KeyValueList.values` are both field 1.
        (5, Value::Len(array)) => write_list(out, array, ('[', ']'), |out, v| {
            write_any(out, v, true);
        }),
        (6, Value::Len(list)) => write_list(out, list, ('{', '}'), |out, kv| {
            let (key, value) = key_value(kv);
            out.push_str(&String::from_utf8_lossy(key));
            out.push(':');
            write_any(out, value, true);
        }),
        (7, Value::Len(b)) => out.push_str(&base64::engine::general_purpose::STANDARD.encode(b)),
        _ => {}
    }
}

/// The messages of field 1 of `bytes`, each written by `item`, comma-separated between
/// `brackets`.
fn write_list(
    out: &mut String,
    bytes: &[u8],
    brackets: (char, char),
    mut item: impl FnMut(&mut String, &[u8]),
) {
    out.push(brackets.0);
    let items = fields(bytes).filter_map(|field| match field {
        (1, Value::Len(v)) => Some(v),
        _ => None,
    });
    for (i, v) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        item(out, v);
    }
    out.push(brackets.1);
}

/// A `KeyValue`'s key and its `AnyValue` bytes (empty when absent).
fn key_value(bytes: &[u8]) -> (&[u8], &[u8]) {
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    for field in fields(bytes) {
        match field {
            (1, Value::Len(k)) => key = k,
            (2, Value::Len(v)) => value = v,
            _ => {}
        }
    }
    (key, value)
}

/// An encoded OTLP `Span` as the model sees it, under `service`.
pub(crate) fn model_span(bytes: &[u8], service: &str) -> Span {
    let mut span = Span {
        trace_id: String::new(),
        span_id: String::new(),
        parent_span_id: None,
        service: service.to_owned(),
        name: String::new(),
        kind: kind_from_otlp(0),
        start_ns: 0,
        end_ns: 0,
        error: false,
        links: Vec::new(),
        attributes: BTreeMap::new(),
    };
    for field in fields(bytes) {
        match field {
            (1, Value::Len(id)) => span.trace_id = hex(id),
            (2, Value::Len(id)) => span.span_id = hex(id),
            // An all-zero parent id is invalid, and some exporters send it for a root.
            (4, Value::Len(id)) => {
                span.parent_span_id = id.iter().any(|b| *b != 0).then(|| hex(id));
            }
            (5, Value::Len(name)) => span.name = text(name),
            (6, Value::Varint(kind)) => {
                span.kind = kind_from_otlp(i32::try_from(kind).unwrap_or(0));
            }
            (7, Value::Fixed64(t)) => span.start_ns = t,
            (8, Value::Fixed64(t)) => span.end_ns = t,
            (9, Value::Len(kv)) => {
                let (key, value) = key_value(kv);
                let mut rendered = String::new();
                write_any(&mut rendered, value, false);
                span.attributes.insert(text(key), rendered);
            }
            (13, Value::Len(link)) => {
                let mut l = Link {
                    trace_id: String::new(),
                    span_id: String::new(),
                };
                for field in fields(link) {
                    match field {
                        (1, Value::Len(id)) => l.trace_id = hex(id),
                        (2, Value::Len(id)) => l.span_id = hex(id),
                        _ => {}
                    }
                }
                span.links.push(l);
            }
            (15, Value::Len(status)) => {
                // `Status.code` is field 3; 2 is STATUS_CODE_ERROR.
                span.error = fields(status)
                    .filter_map(|f| match f {
                        (3, Value::Varint(code)) => Some(code),
                        _ => None,
                    })
                    .last()
                    == Some(2);
            }
            _ => {}
        }
    }
    span
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
    use opentelemetry_proto::tonic::trace::v1::{Span as OtlpSpan, Status, span, status};
    use prost::Message as _;

    use super::*;
    use crate::convert::model_from_otlp;

    fn kv(key: &str, value: Any) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }
    }

    fn any(value: Any) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    fn full_span() -> OtlpSpan {
        OtlpSpan {
            trace_id: (1..=16).collect(),
            span_id: (1..=8).collect(),
            parent_span_id: (9..=16).collect(),
            trace_state: "k=v".into(),
            name: "publish scan.completed".into(),
            kind: span::SpanKind::Producer as i32,
            start_time_unix_nano: 1_700_000_000_123_456_789,
            end_time_unix_nano: 1_700_000_000_223_456_789,
            attributes: vec![
                kv("s", Any::StringValue("POST /scan ü".into())),
                kv("b", Any::BoolValue(true)),
                kv("i", Any::IntValue(-42)),
                kv("d", Any::DoubleValue(0.25)),
                kv("bytes", Any::BytesValue(vec![0xff, 0])),
                kv(
                    "array",
                    Any::ArrayValue(ArrayValue {
                        values: vec![any(Any::StringValue("a".into())), any(Any::IntValue(2))],
                    }),
                ),
                kv(
                    "list",
                    Any::KvlistValue(KeyValueList {
                        values: vec![kv("k", Any::BoolValue(false)), kv("n", Any::IntValue(7))],
                    }),
                ),
                KeyValue {
                    key: "empty".into(),
                    value: None,
                    ..KeyValue::default()
                },
            ],
            links: vec![span::Link {
                trace_id: vec![7; 16],
                span_id: vec![8; 8],
                ..span::Link::default()
            }],
            status: Some(Status {
                message: "boom".into(),
                code: status::StatusCode::Error as i32,
            }),
            ..OtlpSpan::default()
        }
    }

    #[test]
    fn reading_the_wire_gives_the_model_of_the_decoded_message() {
        let root = OtlpSpan {
            parent_span_id: vec![0; 8],
            status: None,
            kind: 0,
            ..full_span()
        };
        for span in [full_span(), root, OtlpSpan::default()] {
            let bytes = span.encode_to_vec();
            assert_eq!(
                model_span(&bytes, "worker"),
                model_from_otlp(&span, "worker")
            );
        }
    }

    #[test]
    fn malformed_bytes_end_the_reading_and_keep_what_was_read() {
        let mut bytes = full_span().encode_to_vec();
        // Cut inside the attributes: the ids, name and times before them survive.
        bytes.truncate(90);
        let span = model_span(&bytes, "worker");
        assert_eq!(span.span_id, "0102030405060708");
        assert_eq!(span.name, "publish scan.completed");
        assert!(model_span(&[0xff], "worker").trace_id.is_empty());
        assert_eq!(model_span(&[0x0b, 0x01], "worker").name, "", "wire type 3");
    }
}
