//! Waterfalls: one scan's spans in tree order with depths and offsets, as the reports draw them.

use serde::{Deserialize, Serialize};
use tb_traces::model::{Kind, Span};

use crate::judge::ScanVerdict;

/// A span as the report draws it: offsets in ms from the trace's start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaterfallSpan {
    /// Service.
    pub service: String,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// Depth in the tree (0 for the root).
    pub depth: u32,
    /// Start offset, ms.
    pub start_ms: f64,
    /// Duration, ms.
    pub duration_ms: f64,
    /// Error status.
    pub error: bool,
}

/// One trace drawn as a waterfall.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Waterfall {
    /// Trace id.
    pub trace_id: String,
    /// End-to-end ms by the critical path.
    pub total_ms: f64,
    /// Spans in tree order.
    pub spans: Vec<WaterfallSpan>,
}

impl Waterfall {
    /// The spans of a verdict in tree order with depths, offsets from the earliest start;
    /// `total_ns` is the scan's critical-path length.
    pub fn of(v: &ScanVerdict, total_ns: u64) -> Self {
        let start = v.spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
        let (mut roots, children) = tb_traces::model::tree(&v.spans);
        let mut out = Vec::new();
        let mut stack: Vec<(&Span, u32)> = Vec::new();
        roots.sort_by_key(|s| std::cmp::Reverse(s.start_ns));
        stack.extend(roots.into_iter().map(|s| (s, 0)));
        while let Some((s, depth)) = stack.pop() {
            out.push(WaterfallSpan {
                service: s.service.clone(),
                name: s.name.clone(),
                kind: s.kind,
                depth,
                start_ms: (s.start_ns - start) as f64 / 1e6,
                duration_ms: s.duration_ns() as f64 / 1e6,
                error: s.error,
            });
            let mut kids = children
                .get(s.span_id.as_str())
                .cloned()
                .unwrap_or_default();
            kids.sort_by_key(|k| std::cmp::Reverse(k.start_ns));
            stack.extend(kids.into_iter().map(|k| (k, depth + 1)));
        }
        Self {
            trace_id: v.trace_id.clone(),
            total_ms: total_ns as f64 / 1e6,
            spans: out,
        }
    }
}
