//! Conversions into the shared span model: from OTLP protobuf spans (what the sink stores) and
//! from the in-process exporter's [`FinishedSpan`]s, plus the id and attribute rendering both
//! the sink and the Tempo client use, so a span reads the same whichever way it arrived.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span;
use tb_telemetry::FinishedSpan;

use crate::model::{Kind, Link, Span};

/// The `service.name` a span gets when its resource has none: the OpenTelemetry SDKs' own
/// fallback, so a missing name reads as the familiar misconfiguration it is.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

const SERVICE_NAME: &str = "service.name";

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The `service.name` of an OTLP resource, or [`UNKNOWN_SERVICE`].
pub(crate) fn service_name(resource: Option<&Resource>) -> String {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == SERVICE_NAME))
        .and_then(|kv| kv.value.as_ref())
        .map_or_else(|| UNKNOWN_SERVICE.to_owned(), render_any_value)
}

/// The model's kind for an OTLP kind number. `UNSPECIFIED` (0) and numbers this version does not
/// know read as internal, as the OTLP spec lets receivers assume.
pub(crate) fn kind_from_otlp(kind: i32) -> Kind {
    match span::SpanKind::try_from(kind) {
        Ok(span::SpanKind::Server) => Kind::Server,
        Ok(span::SpanKind::Client) => Kind::Client,
        Ok(span::SpanKind::Producer) => Kind::Producer,
        Ok(span::SpanKind::Consumer) => Kind::Consumer,
        Ok(span::SpanKind::Internal | span::SpanKind::Unspecified) | Err(_) => Kind::Internal,
    }
}

/// Renders an OTLP attribute value as the model's string: strings as they are; booleans, integers
/// and doubles as Rust prints them; arrays as `[a,b]` with strings quoted (as the OpenTelemetry
/// API prints its own arrays); key-value lists as `{k:v}`; bytes as base64 (their OTLP/JSON form).
pub(crate) fn render_any_value(value: &AnyValue) -> String {
    let mut out = String::new();
    write_any_value(&mut out, value.value.as_ref(), false);
    out
}

fn write_any_value(out: &mut String, value: Option<&Value>, quote_strings: bool) {
    // `write!` to a `String` cannot fail; the results are ignored for that reason.
    match value {
        None | Some(Value::StringValueStrindex(_)) => {}
        Some(Value::StringValue(s)) if quote_strings => {
            let _ = write!(out, "\"{s}\"");
        }
        Some(Value::StringValue(s)) => out.push_str(s),
        Some(Value::BoolValue(b)) => {
            let _ = write!(out, "{b}");
        }
        Some(Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(Value::DoubleValue(d)) => {
            let _ = write!(out, "{d}");
        }
        Some(Value::BytesValue(b)) => {
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
        }
        Some(Value::ArrayValue(array)) => {
            out.push('[');
            for (i, v) in array.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_any_value(out, v.value.as_ref(), true);
            }
            out.push(']');
        }
        Some(Value::KvlistValue(list)) => {
            out.push('{');
            for (i, kv) in list.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:", kv.key);
                write_any_value(out, kv.value.as_ref().and_then(|v| v.value.as_ref()), true);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
fn attributes(
    kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> std::collections::BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = kv.value.as_ref().map(render_any_value).unwrap_or_default();
            (kv.key.clone(), value)
        })
        .collect()
}

#[cfg(test)]
fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

/// A decoded OTLP span as the model sees it, under the `service.name` of its resource: the
/// reference the store's wire reader ([`crate::sink`]'s `wire`) is held to in its tests.
#[cfg(test)]
pub(crate) fn model_from_otlp(
    span: &opentelemetry_proto::tonic::trace::v1::Span,
    service: &str,
) -> Span {
    let error = span.status.as_ref().is_some_and(|s| {
        s.code == opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32
    });
    Span {
        trace_id: hex(&span.trace_id),
        span_id: hex(&span.span_id),
        // An all-zero parent id is invalid, and some exporters send it for a root.
        parent_span_id: (!is_zero(&span.parent_span_id)).then(|| hex(&span.parent_span_id)),
        service: service.to_owned(),
        name: span.name.clone(),
        kind: kind_from_otlp(span.kind),
        start_ns: span.start_time_unix_nano,
        end_ns: span.end_time_unix_nano,
        error,
        links: span
            .links
            .iter()
            .map(|l| Link {
                trace_id: hex(&l.trace_id),
                span_id: hex(&l.span_id),
            })
            .collect(),
        attributes: attributes(&span.attributes),
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A span from the in-process exporter, the same as the sink would store it had it come over
/// OTLP: ids in lowercase hex, attribute values as the OpenTelemetry API prints them.
impl From<&FinishedSpan> for Span {
    fn from(finished: &FinishedSpan) -> Self {
        let data = &finished.span;
        let kind = match data.span_kind {
            SpanKind::Server => Kind::Server,
            SpanKind::Client => Kind::Client,
            SpanKind::Producer => Kind::Producer,
            SpanKind::Consumer => Kind::Consumer,
            SpanKind::Internal => Kind::Internal,
        };
        Span {
            trace_id: data.span_context.trace_id().to_string(),
            span_id: data.span_context.span_id().to_string(),
            parent_span_id: (data.parent_span_id != SpanId::INVALID)
                .then(|| data.parent_span_id.to_string()),
            service: finished.service.clone(),
            name: data.name.to_string(),
            kind,
            start_ns: unix_nanos(data.start_time),
            end_ns: unix_nanos(data.end_time),
            error: matches!(data.status, Status::Error { .. }),
            links: data
                .links
                .iter()
                .map(|l| Link {
                    trace_id: l.span_context.trace_id().to_string(),
                    span_id: l.span_context.span_id().to_string(),
                })
                .collect(),
            attributes: data
                .attributes
                .iter()
                .map(|kv| (kv.key.as_str().to_owned(), kv.value.to_string()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValue, KeyValueList};

    use super::*;

    fn any(value: Value) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    #[test]
    fn attribute_values_of_every_type_render_as_strings() {
        let array = any(Value::ArrayValue(ArrayValue {
            values: vec![any(Value::StringValue("a".into())), any(Value::IntValue(2))],
        }));
        let list = any(Value::KvlistValue(KeyValueList {
            values: vec![KeyValue {
                key: "k".into(),
                value: Some(any(Value::BoolValue(true))),
                ..KeyValue::default()
            }],
        }));
        for (value, rendered) in [
            (any(Value::StringValue("POST /scan".into())), "POST /scan"),
            (any(Value::BoolValue(false)), "false"),
            (any(Value::IntValue(-42)), "-42"),
            (any(Value::DoubleValue(0.25)), "0.25"),
            (any(Value::BytesValue(vec![0xff, 0x00])), "/wA="),
            (array, "[\"a\",2]"),
            (list, "{k:true}"),
            (AnyValue { value: None }, ""),
        ] {
            assert_eq!(render_any_value(&value), rendered);
        }
    }

    #[test]
    fn unspecified_and_unknown_kinds_read_as_internal() {
        assert_eq!(kind_from_otlp(0), Kind::Internal);
        assert_eq!(kind_from_otlp(2), Kind::Server);
        assert_eq!(kind_from_otlp(5), Kind::Consumer);
        assert_eq!(kind_from_otlp(99), Kind::Internal);
    }

    #[test]
    fn a_resource_without_service_name_reads_as_unknown_service() {
        assert_eq!(service_name(None), UNKNOWN_SERVICE);
        let resource = Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(any(Value::StringValue("worker".into()))),
                ..KeyValue::default()
            }],
            ..Resource::default()
        };
        assert_eq!(service_name(Some(&resource)), "worker");
    }

    #[test]
    fn hex_is_lowercase_and_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
    }
}
