//! Waterfalls: one scan's spans in tree order with depths and offsets, as the reports draw them.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use tb_traces::model::{Kind, Span};

use crate::attribution::CriticalPath;
use crate::judge::ScanVerdict;

/// How a receiving span (SERVER or CONSUMER) got its context across its hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Edge {
    /// Its parent is the sender's span: the trace continued.
    Continued,
    /// It started a trace of its own that links to the sender's span.
    Link,
    /// It started a trace of its own with no link: the context was lost on the way.
    Broken,
}

impl Edge {
    /// The edge into `span`, among the ids of its unit's spans; `None` for a span that
    /// receives nothing (CLIENT, PRODUCER, INTERNAL), for the unit's root (the front door),
    /// and for a span whose parent is not among them (its parent span was lost, not its
    /// context).
    fn of(span: &Span, unit_trace: &str, ids: &HashSet<&str>) -> Option<Self> {
        if !matches!(span.kind, Kind::Server | Kind::Consumer) {
            return None;
        }
        match &span.parent_span_id {
            Some(parent) if ids.contains(parent.as_str()) => Some(Self::Continued),
            Some(_) => None,
            None if !span.links.is_empty() => Some(Self::Link),
            None if span.trace_id == unit_trace => None,
            None => Some(Self::Broken),
        }
    }
}

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
    /// How a receiving span got its context; absent for the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<Edge>,
    /// Whether the span is on the scan's critical path.
    #[serde(default)]
    pub critical: bool,
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
    /// The spans of a verdict in tree order with depths, offsets from the earliest start, the
    /// edge into each receiving span, and which spans are on `path`, the scan's critical path.
    pub fn of(v: &ScanVerdict, path: &CriticalPath) -> Self {
        let start = v.spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
        let ids: HashSet<&str> = v.spans.iter().map(|s| s.span_id.as_str()).collect();
        let critical: HashSet<&str> = path.spans.iter().map(String::as_str).collect();
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
                edge: Edge::of(s, &v.trace_id, &ids),
                critical: critical.contains(s.span_id.as_str()),
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
            total_ms: path.total_ns as f64 / 1e6,
            spans: out,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tb_traces::model::Link;

    use super::*;

    fn span(trace: &str, id: &str, parent: Option<&str>, kind: Kind, start_ms: u64) -> Span {
        Span {
            trace_id: trace.to_owned(),
            span_id: id.to_owned(),
            parent_span_id: parent.map(str::to_owned),
            service: "s".to_owned(),
            name: id.to_owned(),
            kind,
            start_ns: start_ms * 1_000_000,
            end_ns: (start_ms + 10) * 1_000_000,
            error: false,
            links: Vec::new(),
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn each_receiving_span_is_marked_by_how_its_context_crossed_and_the_path_is_marked() {
        let mut linked = span("c", "linked", None, Kind::Consumer, 30);
        linked.links.push(Link {
            trace_id: "a".to_owned(),
            span_id: "publish".to_owned(),
        });
        let spans = vec![
            span("a", "root", None, Kind::Server, 0),
            span("a", "publish", Some("root"), Kind::Producer, 5),
            span("a", "continued", Some("publish"), Kind::Consumer, 20),
            span("b", "broken", None, Kind::Consumer, 25),
            linked,
            span("a", "orphan", Some("gone"), Kind::Server, 40),
        ];
        let verdict = ScanVerdict {
            task_id: "t".to_owned(),
            trace_id: "a".to_owned(),
            sampled: true,
            problems: Vec::new(),
            spans,
        };
        let path = CriticalPath {
            total_ns: 30_000_000,
            segments: Vec::new(),
            spans: vec![
                "root".to_owned(),
                "publish".to_owned(),
                "continued".to_owned(),
            ],
        };
        let w = Waterfall::of(&verdict, &path);
        let mark = |name: &str| {
            let s = w.spans.iter().find(|s| s.name == name).expect(name);
            (s.edge, s.critical)
        };
        assert_eq!(mark("root"), (None, true), "the front door receives no hop");
        assert_eq!(mark("publish"), (None, true));
        assert_eq!(mark("continued"), (Some(Edge::Continued), true));
        assert_eq!(mark("broken"), (Some(Edge::Broken), false));
        assert_eq!(mark("linked"), (Some(Edge::Link), false));
        assert_eq!(
            mark("orphan"),
            (None, false),
            "a lost parent span is not a lost context"
        );
        assert_eq!(w.total_ms, 30.0);
        let json = serde_json::to_value(&w.spans[2]).expect("json");
        assert_eq!(json["edge"], "continued");
    }
}
