//! Structured events a service process writes for whoever drives it: one JSON object per line
//! on stdout, apart from the logs and independent of the log level.
//!
//! `tracebench service NAME --report-processed` writes a [`ProcessedLine`] for every scan
//! event a consumer finished, and a [`SpansLine`] with its span counts when it exits;
//! `tracebench run --services process` reads them to count scans end to end and spans lost.
//! Log lines on the same stream lack both keys and are skipped.

use serde::{Deserialize, Serialize};
use tb_consumers::{CHARACTER, MY, Processed};

/// One scan event a consumer finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessedEvent {
    /// The consumer's service name.
    pub consumer: String,
    /// The scan's task id.
    pub task_id: String,
}

/// The line: `{"processed":{"consumer":"my-consumer","task_id":"…"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessedLine {
    /// The event.
    pub processed: ProcessedEvent,
}

impl ProcessedLine {
    /// The line for `p`, without its newline.
    pub fn render(p: &Processed) -> String {
        let line = Self {
            processed: ProcessedEvent {
                consumer: p.consumer.to_owned(),
                task_id: p.task_id.clone(),
            },
        };
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// The consumer and task id of a processed line; `None` for any other line (a log line,
    /// or a consumer this pipeline does not have).
    pub fn parse(line: &str) -> Option<(&'static str, String)> {
        let parsed: Self = serde_json::from_str(line).ok()?;
        let consumer = [CHARACTER, MY]
            .into_iter()
            .find(|c| *c == parsed.processed.consumer)?;
        Some((consumer, parsed.processed.task_id))
    }
}

/// A service process's span counts at exit, after its provider flushed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanCounts {
    /// Sampled spans that ended.
    pub ended: u64,
    /// Spans the exporter accepted.
    pub exported: u64,
    /// Spans that never reached the backend: dropped by a full queue, in a failed export, or
    /// still queued.
    pub dropped: u64,
}

impl From<tb_telemetry::SpanCounts> for SpanCounts {
    fn from(c: tb_telemetry::SpanCounts) -> Self {
        Self {
            ended: c.ended,
            exported: c.exported,
            dropped: c.not_exported(),
        }
    }
}

/// The last line: `{"spans":{"ended":…,"exported":…,"dropped":…}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpansLine {
    /// The counts.
    pub spans: SpanCounts,
}

impl SpansLine {
    /// The line, without its newline.
    pub fn render(spans: SpanCounts) -> String {
        serde_json::to_string(&Self { spans }).unwrap_or_default()
    }

    /// The counts of a spans line; `None` for any other line.
    pub fn parse(line: &str) -> Option<SpanCounts> {
        serde_json::from_str::<Self>(line).ok().map(|l| l.spans)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_processed_line_reads_back_and_log_lines_do_not() {
        let line = ProcessedLine::render(&Processed {
            consumer: MY,
            task_id: "t1".to_owned(),
            at: Instant::now(),
        });
        assert_eq!(ProcessedLine::parse(&line), Some((MY, "t1".to_owned())));
        let log = r#"{"level":"INFO","task.id":"t2","message":"history recorded"}"#;
        assert_eq!(ProcessedLine::parse(log), None);
        let unknown = r#"{"processed":{"consumer":"nobody","task_id":"t3"}}"#;
        assert_eq!(ProcessedLine::parse(unknown), None);
        assert_eq!(ProcessedLine::parse("not json"), None);
    }

    #[test]
    fn a_spans_line_reads_back() {
        let counts = SpanCounts {
            ended: 10,
            exported: 8,
            dropped: 2,
        };
        assert_eq!(SpansLine::parse(&SpansLine::render(counts)), Some(counts));
        assert_eq!(
            SpansLine::parse(r#"{"processed":{"consumer":"x","task_id":"t"}}"#),
            None
        );
    }
}
