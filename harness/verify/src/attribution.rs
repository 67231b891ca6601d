//! Latency attribution: where one scan's end-to-end time went.
//!
//! The *critical path* of a scan runs backwards from the last span to end (a consumer
//! finishing) to the root's start. At each span it follows the child that finished last before
//! the current point in time, then the one that finished last before that child started, and
//! so on; time covered by no child is the span's own ("self") time. Children may outlive their
//! parent — a message is processed after its publish returned — and the stretch between a
//! producer's end and its consumer's start is broker time, attributed to the hop
//! (`queue publish scan.tasks → process_image`). Shares are then summed by span name and by
//! service over many scans.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use tb_traces::model::{Kind, Span};

/// One stretch of the critical path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// Span name, or `queue <producer> → <consumer>` for broker time.
    pub name: String,
    /// Service of the span (the consumer's, for broker time).
    pub service: String,
    /// Nanoseconds.
    pub ns: u64,
}

/// The critical path of one scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CriticalPath {
    /// From the root's start to the last span's end, nanoseconds.
    pub total_ns: u64,
    /// Stretches, latest first.
    pub segments: Vec<Segment>,
    /// The ids of the spans on the path, root first (each once).
    pub spans: Vec<String>,
}

/// Computes the critical path of a unit's spans (one scan), or `None` without a root.
pub fn critical_path(spans: &[Span]) -> Option<CriticalPath> {
    let (roots, children) = tb_traces::model::tree(spans);
    let root = roots.into_iter().min_by_key(|s| s.start_ns)?;
    // Effective end: a span's own end or its latest descendant's.
    fn effective_end<'a>(
        s: &'a Span,
        children: &HashMap<&str, Vec<&'a Span>>,
        memo: &mut HashMap<&'a str, u64>,
    ) -> u64 {
        if let Some(e) = memo.get(s.span_id.as_str()) {
            return *e;
        }
        let mut end = s.end_ns;
        for c in children.get(s.span_id.as_str()).into_iter().flatten() {
            end = end.max(effective_end(c, children, memo));
        }
        memo.insert(s.span_id.as_str(), end);
        end
    }
    let mut memo = HashMap::new();
    let end = effective_end(root, &children, &mut memo);
    let mut path = CriticalPath {
        total_ns: end.saturating_sub(root.start_ns),
        ..CriticalPath::default()
    };
    walk(root, end, &children, &mut memo, &mut path);
    Some(path)
}

fn push(segments: &mut Vec<Segment>, name: String, service: &str, ns: u64) {
    if ns == 0 {
        return;
    }
    match segments.last_mut() {
        Some(last) if last.name == name && last.service == service => last.ns += ns,
        _ => segments.push(Segment {
            name,
            service: service.to_owned(),
            ns,
        }),
    }
}

/// Explains `(span.start, until]` by `span` and its descendants.
fn walk<'a>(
    span: &'a Span,
    until: u64,
    children: &HashMap<&str, Vec<&'a Span>>,
    memo: &mut HashMap<&'a str, u64>,
    path: &mut CriticalPath,
) {
    path.spans.push(span.span_id.clone());
    let mut cursor = until;
    let mut kids: Vec<&Span> = children
        .get(span.span_id.as_str())
        .cloned()
        .unwrap_or_default();
    kids.sort_by_key(|c| {
        std::cmp::Reverse(memo.get(c.span_id.as_str()).copied().unwrap_or(c.end_ns))
    });
    for child in kids {
        if cursor <= span.start_ns {
            break;
        }
        let child_end = memo
            .get(child.span_id.as_str())
            .copied()
            .unwrap_or(child.end_ns)
            .min(cursor);
        if child.start_ns >= cursor || child_end <= child.start_ns.max(span.start_ns) {
            continue;
        }
        // The gap between this child's end and the cursor: the span's own time while it ran,
        // broker (or scheduling) time after it ended.
        self_time(span, child_end, cursor, &mut path.segments);
        walk(child, child_end, children, memo, path);
        let resumed = child.start_ns.max(span.start_ns);
        // Time between the parent's end and an asynchronous child's start is the hop's.
        if child.start_ns > span.end_ns {
            let gap_end = child.start_ns;
            let gap_start = span.end_ns.max(span.start_ns);
            push(
                &mut path.segments,
                format!("queue {} → {}", span.name, child.name),
                &child.service,
                gap_end.saturating_sub(gap_start),
            );
            cursor = gap_start;
        } else {
            cursor = resumed;
        }
    }
    if cursor > span.start_ns {
        self_time(span, span.start_ns, cursor, &mut path.segments);
    }
}

fn self_time(span: &Span, from: u64, to: u64, out: &mut Vec<Segment>) {
    if to <= from {
        return;
    }
    // Within the span's own interval it is self time; past its end (waiting on a later
    // child that was not on the path) it is idle time, still charged to the span.
    push(out, span.name.clone(), &span.service, to - from);
}

/// Shares of end-to-end time over many scans.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    /// Scans with a critical path.
    pub scans: u64,
    /// Mean end-to-end time by the critical path, ms.
    pub mean_total_ms: f64,
    /// Share of summed critical-path time by span name (broker time under `queue …`), 0–1.
    pub by_name: BTreeMap<String, f64>,
    /// Share by service, 0–1.
    pub by_service: BTreeMap<String, f64>,
    /// The name with the largest share.
    pub bottleneck: Option<String>,
    /// Mean broker time per hop (publish end → process start), ms.
    pub queue_ms: BTreeMap<String, f64>,
    /// Mean root span duration (scan-api's view of `POST /scan`), ms.
    pub root_mean_ms: f64,
}

/// Sums the critical paths of `scans` (each a unit's spans).
pub fn attribute<'a>(scans: impl IntoIterator<Item = &'a [Span]>) -> Attribution {
    let paths: Vec<(&[Span], CriticalPath)> = scans
        .into_iter()
        .filter_map(|spans| critical_path(spans).map(|p| (spans, p)))
        .collect();
    attribute_paths(paths.iter().map(|(spans, path)| (*spans, path)))
}

/// Adds the broker time of every hop of one scan, on the critical path or not, to `queue`:
/// each consumer's start less its producer's end, summed with a count, by hop.
fn add_broker_time(spans: &[Span], queue: &mut BTreeMap<String, (u64, u64)>) {
    let ids: HashMap<&str, &Span> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for s in spans.iter().filter(|s| s.kind == Kind::Consumer) {
        let producer = s
            .parent_span_id
            .as_deref()
            .or_else(|| s.links.first().map(|l| l.span_id.as_str()))
            .and_then(|p| ids.get(p))
            .filter(|p| p.kind == Kind::Producer);
        if let Some(p) = producer {
            let e = queue
                .entry(format!("{} → {}/{}", p.name, s.service, s.name))
                .or_default();
            e.0 += s.start_ns.saturating_sub(p.end_ns);
            e.1 += 1;
        }
    }
}

/// [`attribute`] over critical paths already computed, each with its scan's spans.
pub fn attribute_paths<'a>(
    scans: impl IntoIterator<Item = (&'a [Span], &'a CriticalPath)>,
) -> Attribution {
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_service: BTreeMap<String, u64> = BTreeMap::new();
    let mut queue: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let (mut total, mut n, mut root_total) = (0u64, 0u64, 0u64);
    for (spans, path) in scans {
        n += 1;
        total += path.total_ns;
        if let Some(root) = spans
            .iter()
            .find(|s| s.parent_span_id.is_none() && s.kind == Kind::Server)
        {
            root_total += root.duration_ns();
        }
        for seg in &path.segments {
            *by_name.entry(seg.name.clone()).or_default() += seg.ns;
            let service = if seg.name.starts_with("queue ") {
                "broker"
            } else {
                seg.service.as_str()
            };
            *by_service.entry(service.to_owned()).or_default() += seg.ns;
        }
        add_broker_time(spans, &mut queue);
    }
    let share = |m: BTreeMap<String, u64>| -> BTreeMap<String, f64> {
        m.into_iter()
            .map(|(k, v)| {
                (
                    k,
                    if total == 0 {
                        0.0
                    } else {
                        v as f64 / total as f64
                    },
                )
            })
            .collect()
    };
    let by_name = share(by_name);
    let bottleneck = by_name
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(k, _)| k.clone());
    Attribution {
        scans: n,
        mean_total_ms: if n == 0 {
            0.0
        } else {
            total as f64 / n as f64 / 1e6
        },
        by_name,
        by_service: share(by_service),
        bottleneck,
        queue_ms: queue
            .into_iter()
            .map(|(k, (sum, count))| (k, sum as f64 / count.max(1) as f64 / 1e6))
            .collect(),
        root_mean_ms: if n == 0 {
            0.0
        } else {
            root_total as f64 / n as f64 / 1e6
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(
        id: &str,
        parent: Option<&str>,
        service: &str,
        name: &str,
        kind: Kind,
        start_ms: u64,
        end_ms: u64,
    ) -> Span {
        Span {
            trace_id: "t".to_owned(),
            span_id: id.to_owned(),
            parent_span_id: parent.map(str::to_owned),
            service: service.to_owned(),
            name: name.to_owned(),
            kind,
            start_ns: start_ms * 1_000_000,
            end_ns: end_ms * 1_000_000,
            error: false,
            links: Vec::new(),
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn the_path_follows_the_last_child_and_charges_broker_time_to_the_hop() {
        // POST /scan 0–50 with publish 40–50; process_image 60–160 with vision 65–105 and
        // llm 110–155; consumer 170–200.
        let spans = vec![
            span("a", None, "scan-api", "POST /scan", Kind::Server, 0, 50),
            span(
                "b",
                Some("a"),
                "scan-api",
                "publish scan.tasks",
                Kind::Producer,
                40,
                50,
            ),
            span(
                "c",
                Some("b"),
                "worker",
                "process_image",
                Kind::Consumer,
                60,
                160,
            ),
            span(
                "d",
                Some("c"),
                "vision-api",
                "POST /v1/analyze",
                Kind::Server,
                65,
                105,
            ),
            span(
                "e",
                Some("c"),
                "llm-api",
                "POST /v1/chat/completions",
                Kind::Server,
                110,
                155,
            ),
            span(
                "f",
                Some("c"),
                "worker",
                "publish scan.completed",
                Kind::Producer,
                156,
                160,
            ),
            span(
                "g",
                Some("f"),
                "my-consumer",
                "process scan.completed",
                Kind::Consumer,
                170,
                200,
            ),
            // In parallel with the Vision call: never on the path.
            span("h", Some("c"), "worker", "prefetch", Kind::Internal, 70, 80),
        ];
        let path = critical_path(&spans).expect("a root");
        assert_eq!(path.total_ns, 200_000_000);
        let summed: u64 = path.segments.iter().map(|s| s.ns).sum();
        assert_eq!(summed, path.total_ns, "{:?}", path.segments);
        let ms = |name: &str| -> u64 {
            path.segments
                .iter()
                .filter(|s| s.name == name)
                .map(|s| s.ns)
                .sum::<u64>()
                / 1_000_000
        };
        assert_eq!(ms("POST /v1/analyze"), 40);
        assert_eq!(ms("POST /v1/chat/completions"), 45);
        assert_eq!(ms("process scan.completed"), 30);
        assert_eq!(ms("queue publish scan.tasks → process_image"), 10);
        assert_eq!(
            ms("queue publish scan.completed → process scan.completed"),
            10
        );
        let mut on_path = path.spans.clone();
        on_path.sort();
        assert_eq!(
            on_path,
            ["a", "b", "c", "d", "e", "f", "g"],
            "every span but the one in parallel with a longer sibling"
        );
        assert_eq!(path.spans[0], "a", "root first");
        let a = attribute([spans.as_slice()]);
        assert_eq!(a.bottleneck.as_deref(), Some("POST /v1/chat/completions"));
        assert!(
            (a.by_service["llm-api"] - 0.225).abs() < 1e-9,
            "{:?}",
            a.by_service
        );
        assert!((a.queue_ms["publish scan.tasks → worker/process_image"] - 10.0).abs() < 1e-9);
    }
}
