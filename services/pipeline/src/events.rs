//! Structured events a service process writes for whoever drives it: one JSON object per line
//! on stdout, apart from the logs and independent of the log level.
//!
//! `tracebench service NAME --report-processed` writes a [`ProcessedLine`] for every scan
//! event a consumer finished; `tracebench run --services process` reads them to count scans
//! end to end. Log lines on the same stream lack the `processed` key and are skipped.

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
}
