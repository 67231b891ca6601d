//! JSON log lines that carry the current span's `trace_id` and `span_id`, the equivalent of the
//! seed's structlog processor, so logs and traces can be joined by id.
//!
//! A line looks like
//! `{"timestamp":"…","level":"INFO","target":"…","trace_id":"…","span_id":"…","task_id":"…","message":"Processing scan"}`:
//! fixed keys first, the event's structured fields next, the message last. Outside a span, or when
//! no OpenTelemetry layer is installed, the two id fields are left out rather than written empty.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::OnceLock;

use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// A layer writing one JSON object per event, with trace correlation ids, to `W`.
#[derive(Debug)]
pub struct JsonLogLayer<W> {
    make_writer: W,
    dispatch: OnceLock<WeakDispatch>,
}

impl<W> JsonLogLayer<W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    /// A layer writing to `make_writer` (`std::io::stdout`, or a buffer in tests).
    pub fn new(make_writer: W) -> Self {
        Self {
            make_writer,
            dispatch: OnceLock::new(),
        }
    }
}

/// Writes a JSON string literal (with quotes) for `s`.
fn push_json_str(out: &mut String, s: &str) {
    // serde_json's escaping is correct for every control and non-ASCII character; writing to a
    // String cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// Collects an event's fields as JSON members, holding the message back for the end.
struct JsonFields<'a> {
    out: &'a mut String,
    message: Option<String>,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        self.out.push(',');
        push_json_str(self.out, field.name());
        self.out.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
            return;
        }
        self.key(field);
        push_json_str(self.out, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.out, "{value}");
        } else {
            // JSON has no NaN or infinity.
            push_json_str(self.out, &value.to_string());
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
            return;
        }
        self.key(field);
        push_json_str(self.out, &text);
    }
}

impl<S, W> Layer<S> for JsonLogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        // The OpenTelemetry context of a span is reached through the dispatcher, and
        // `dispatcher::get_default` answers "none" while an event is being dispatched, so keep
        // a weak handle to the one we are registered with.
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = String::with_capacity(256);
        line.push_str("{\"timestamp\":\"");
        let _ = SystemTime.format_time(&mut Writer::new(&mut line));
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push_str("\",\"target\":");
        push_json_str(&mut line, meta.target());

        if let Some((trace_id, span_id)) = self.ids(event, &ctx) {
            let _ = write!(
                line,
                ",\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\""
            );
        }

        let mut fields = JsonFields {
            out: &mut line,
            message: None,
        };
        event.record(&mut fields);
        if let Some(message) = fields.message {
            line.push_str(",\"message\":");
            push_json_str(&mut line, &message);
        }
        line.push_str("}\n");
        // A failed write has nowhere to be reported; dropping the line beats panicking.
        let _ = self
            .make_writer
            .make_writer_for(meta)
            .write_all(line.as_bytes());
    }
}

impl<W> JsonLogLayer<W> {
    /// The trace and span id of the span the event belongs to, when it has a valid one.
    fn ids<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>) -> Option<(TraceId, SpanId)>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let id = ctx.event_span(event)?.id();
        let dispatch = self.dispatch.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(&id, &dispatch)?;
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
    }
}
