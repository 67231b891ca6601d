//! Per-edge propagation verification: is every scan one complete trace, and where it is not,
//! which hop broke and how often.
//!
//! The expected topology is a tree of spans (service, name, kind) with each span's relation to
//! its parent (`child`, `link` or `either`) and a cardinality; [`Template::seed_pipeline`] is
//! the seed design's tree. Spans are matched to the tree by *signature* — service, name
//! pattern, kind — so a node that repeats (a retried `process_image` under the retry's
//! publish) needs no recursion: each signature knows every parent signature it may hang from.
//!
//! Each scan is judged with the ground truth the load generator holds: its task id and the
//! trace id scan-api returned. A scan's *unit* is its trace plus every trace that belongs to it
//! — reached by span links, or a stray root whose message id is the scan's task id (a consumer
//! that lost the context and started over). Reasons a unit is incomplete: a missing span, a
//! wrong parent, an orphan (parent id never seen), a broken edge (the hop's receiving side
//! started a new trace with no link), an unexpected root, a wrong kind. Sampling is honoured:
//! only scans whose root was sampled are expected, and any span of an unsampled scan is a stray.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use tb_traces::model::{Kind, Span};

use crate::template::{Relation, Template};
/// One scan as the load generator saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Task id.
    pub task_id: String,
    /// The trace id scan-api returned (32 hex).
    pub trace_id: String,
}

/// Why a scan's trace is incomplete.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "reason", content = "what", rename_all = "snake_case")]
pub enum Problem {
    /// An expected span is missing (label).
    MissingSpan(String),
    /// A span hangs from a parent the template does not allow (`child label ← parent label`).
    WrongParent(String),
    /// A span's parent id is in no trace of the unit (label).
    Orphan(String),
    /// A hop's receiver started a new trace with no link (`producer label → consumer label`).
    BrokenEdge(String),
    /// A root span that is not the template's root (label).
    UnexpectedRoot(String),
    /// A span whose service and name match but whose kind does not (label).
    WrongKind(String),
    /// A span the template does not know (label).
    UnexpectedSpan(String),
    /// More spans of a signature than allowed (label).
    TooMany(String),
    /// An HTTP client span without its server child (`client label → server label`): the
    /// server lost the context (a broken edge), unless its span itself was lost.
    MissingServer(String),
}

/// The verdict on one scan.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanVerdict {
    /// Task id.
    pub task_id: String,
    /// Trace id.
    pub trace_id: String,
    /// Whether its root was sampled (so a trace was expected).
    pub sampled: bool,
    /// Problems; empty means complete.
    pub problems: Vec<Problem>,
    /// The spans of its unit (its trace and the traces that belong to it).
    pub spans: Vec<Span>,
}

/// Aggregates over every scan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    /// Scans judged.
    pub scans: u64,
    /// Scans whose root was sampled: the traces expected.
    pub expected: u64,
    /// Complete traces.
    pub complete: u64,
    /// `complete / expected` (1 when nothing was expected).
    pub complete_ratio: f64,
    /// Broken edges by edge, e.g. `worker/publish scan.completed → character-consumer/process scan.completed`.
    pub broken_edges: BTreeMap<String, u64>,
    /// Broken edges as a share of expected traces, by edge.
    pub broken_share: BTreeMap<String, f64>,
    /// Orphan spans by label.
    pub orphans: BTreeMap<String, u64>,
    /// Missing spans by label.
    pub missing_spans: BTreeMap<String, u64>,
    /// Other problems by kind and label.
    pub other_problems: BTreeMap<String, u64>,
    /// Spans of unsampled scans, or of no scan at all.
    pub stray_spans: u64,
    /// Requests refused at the front door (a trace whose root is the template's root span
    /// answered with a 4xx or 5xx status, such as `POST /scan` → 503 while the broker is
    /// away): never accepted, so nothing follows them, and they are not strays.
    #[serde(default)]
    pub refused: u64,
    /// Redeliveries a consumer recognised as done and acknowledged without work (spans marked
    /// `task.duplicate` with no children): at-least-once delivery at work, set aside before a
    /// trace is judged.
    #[serde(default)]
    pub duplicate_deliveries: u64,
    /// Up to five stray spans, as `service/name (trace id)`.
    pub stray_examples: Vec<String>,
    /// Up to ten incomplete traces with their problems.
    pub examples: Vec<Example>,
    /// Incomplete traces whose every problem a lost span explains (missing spans, orphans, a
    /// client without its server) in a run that lost spans (dropped by an SDK or evicted by
    /// the sink): telemetry loss, not broken propagation. Left out of `complete_ratio`.
    #[serde(default)]
    pub telemetry_loss: u64,
}

impl TraceSummary {
    /// Counts `spans` as strays and keeps the first few as examples.
    fn note_strays(&mut self, spans: &[&Span]) {
        self.stray_spans += spans.len() as u64;
        let room = 5usize.saturating_sub(self.stray_examples.len());
        self.stray_examples.extend(
            spans
                .iter()
                .take(room)
                .map(|s| format!("{} ({})", label(s), s.trace_id)),
        );
    }
}

/// An incomplete trace for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// Trace id.
    pub trace_id: String,
    /// Task id.
    pub task_id: String,
    /// Problems.
    pub problems: Vec<Problem>,
}

fn label(span: &Span) -> String {
    format!("{}/{}", span.service, span.name)
}

/// Every span of a run indexed for judging: by trace, the stray traces by the message id they
/// carry, and the traces linked from each trace.
struct Index<'a> {
    spans: &'a [Span],
    /// Spans (as indexes into `spans`) by trace.
    by_trace: HashMap<&'a str, Vec<usize>>,
    /// Roots of traces that are not a scan's own trace, by the message id they carry: where a
    /// consumer that lost the context shows up.
    stray_by_message: HashMap<&'a str, Vec<&'a str>>,
    /// Traces linked from a trace (link relation): followed from the producer side.
    linked_from: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> Index<'a> {
    fn new(scans: &'a [Scan], spans: &'a [Span]) -> Self {
        let mut by_trace: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, s) in spans.iter().enumerate() {
            by_trace.entry(s.trace_id.as_str()).or_default().push(i);
        }
        let scan_traces: HashSet<&str> = scans.iter().map(|s| s.trace_id.as_str()).collect();
        let mut stray_by_message: HashMap<&str, Vec<&str>> = HashMap::new();
        for (trace, members) in &by_trace {
            if scan_traces.contains(trace) {
                continue;
            }
            for s in members.iter().map(|&i| &spans[i]) {
                if let Some(id) = s.attr("messaging.message.id").or_else(|| s.attr("task.id")) {
                    let v = stray_by_message.entry(id).or_default();
                    if !v.contains(trace) {
                        v.push(trace);
                    }
                }
            }
        }
        let mut linked_from: HashMap<&str, Vec<&str>> = HashMap::new();
        for s in spans {
            for l in &s.links {
                linked_from
                    .entry(l.trace_id.as_str())
                    .or_default()
                    .push(s.trace_id.as_str());
            }
        }
        Self {
            spans,
            by_trace,
            stray_by_message,
            linked_from,
        }
    }

    /// The traces of `scan`'s unit — its own trace, traces linked to it, and stray traces of its
    /// task — and which of them are stray roots.
    fn unit_of(&self, scan: &'a Scan) -> (Vec<&'a str>, Vec<&'a str>) {
        let mut unit: Vec<&str> = vec![scan.trace_id.as_str()];
        let mut i = 0;
        while i < unit.len() {
            let t = unit[i];
            for next in self.linked_from.get(t).into_iter().flatten() {
                if !unit.contains(next) {
                    unit.push(next);
                }
            }
            i += 1;
        }
        let mut stray_roots: Vec<&str> = Vec::new();
        for t in self
            .stray_by_message
            .get(scan.task_id.as_str())
            .into_iter()
            .flatten()
        {
            if !unit.contains(t) {
                unit.push(t);
                stray_roots.push(t);
            }
        }
        (unit, stray_roots)
    }

    /// Every span of the traces in `unit`, as indexes.
    fn members(&self, unit: &[&str]) -> Vec<usize> {
        unit.iter()
            .flat_map(|t| self.by_trace.get(t).into_iter().flatten().copied())
            .collect()
    }

    /// The spans at `indexes`.
    fn resolve(&self, indexes: &[usize]) -> Vec<&'a Span> {
        indexes.iter().map(|&i| &self.spans[i]).collect()
    }
}

impl TraceSummary {
    /// Counts one expected scan's problems.
    ///
    /// `lost` is `Some` in a run that lost spans, with the labels of the roots of traces that
    /// are no scan's own: a server missing from its client may be one of those (it lost the
    /// context and started over), which is a broken edge whatever else was lost.
    fn record(&mut self, scan: &Scan, problems: &[Problem], lost: Option<&HashSet<String>>) {
        if problems.is_empty() {
            self.complete += 1;
        }
        let explained = lost.is_some_and(|roots| {
            !problems.is_empty()
                && problems.iter().all(|p| match p {
                    Problem::MissingSpan(_) | Problem::Orphan(_) => true,
                    Problem::MissingServer(edge) => edge
                        .rsplit(" → ")
                        .next()
                        .is_none_or(|server| !roots.contains(server)),
                    _ => false,
                })
        });
        if explained {
            self.telemetry_loss += 1;
        }
        for p in problems.iter().filter(|_| !explained) {
            let (map, key) = match p {
                Problem::BrokenEdge(e) | Problem::MissingServer(e) => {
                    (&mut self.broken_edges, e.clone())
                }
                Problem::Orphan(l) => (&mut self.orphans, l.clone()),
                Problem::MissingSpan(l) => (&mut self.missing_spans, l.clone()),
                other => (&mut self.other_problems, format!("{other:?}")),
            };
            *map.entry(key).or_default() += 1;
        }
        if !problems.is_empty() && self.examples.len() < 10 {
            self.examples.push(Example {
                trace_id: scan.trace_id.clone(),
                task_id: scan.task_id.clone(),
                problems: problems.to_vec(),
            });
        }
    }

    /// The ratios, once every scan is counted.
    fn finish(&mut self) {
        let judged = self.expected - self.telemetry_loss;
        self.complete_ratio = if judged == 0 {
            1.0
        } else {
            self.complete as f64 / judged as f64
        };
        let expected = self.expected.max(1) as f64;
        self.broken_share = self
            .broken_edges
            .iter()
            .map(|(k, v)| (k.clone(), *v as f64 / expected))
            .collect();
    }
}

/// Judges every scan against `template`. `spans` are all spans the backend returned for the
/// run (any trace); `sampled` says whether a scan's trace id was sampled at its root.
pub fn judge(
    template: &Template,
    scans: &[Scan],
    spans: &[Span],
    sampled: impl Fn(&str) -> bool,
) -> (TraceSummary, Vec<ScanVerdict>) {
    judge_with_loss(template, scans, spans, sampled, false)
}

/// [`judge`] for a run that lost spans (`telemetry_lost`: an SDK dropped some, or the sink
/// evicted some): an incomplete trace whose every problem a lost span explains counts as
/// [`TraceSummary::telemetry_loss`], not as missing spans or broken edges. A broken edge
/// found through a stray root (the receiver started a trace of its own) stays a broken edge:
/// losing spans never makes a new trace.
pub fn judge_with_loss(
    template: &Template,
    scans: &[Scan],
    spans: &[Span],
    sampled: impl Fn(&str) -> bool,
    telemetry_lost: bool,
) -> (TraceSummary, Vec<ScanVerdict>) {
    let (summary, mut verdicts, members) =
        judge_core(template, scans, spans, sampled, telemetry_lost);
    for (v, m) in verdicts.iter_mut().zip(members) {
        v.spans = m.into_iter().map(|i| spans[i].clone()).collect();
    }
    (summary, verdicts)
}

/// [`judge_with_loss`] taking the spans by value: each verdict gets its spans moved, not
/// copied (a copy of every span was most of the verdict's time: 1.4 s of 2 s for 10,000
/// scans). A span in more than one scan's unit is copied for all but its last.
pub fn judge_owned(
    template: &Template,
    scans: &[Scan],
    spans: Vec<Span>,
    sampled: impl Fn(&str) -> bool,
    telemetry_lost: bool,
) -> (TraceSummary, Vec<ScanVerdict>) {
    let (summary, mut verdicts, members) =
        judge_core(template, scans, &spans, sampled, telemetry_lost);
    let mut uses = vec![0u32; spans.len()];
    for i in members.iter().flatten() {
        uses[*i] += 1;
    }
    let mut slots: Vec<Option<Span>> = spans.into_iter().map(Some).collect();
    for (v, m) in verdicts.iter_mut().zip(members) {
        v.spans = m
            .into_iter()
            .filter_map(|i| {
                uses[i] -= 1;
                if uses[i] == 0 {
                    slots[i].take()
                } else {
                    slots[i].clone()
                }
            })
            .collect();
    }
    (summary, verdicts)
}

/// Judges every scan; the verdicts come without their spans, which are returned as indexes
/// into `spans` for the caller to fill in.
fn judge_core(
    template: &Template,
    scans: &[Scan],
    spans: &[Span],
    sampled: impl Fn(&str) -> bool,
    telemetry_lost: bool,
) -> (TraceSummary, Vec<ScanVerdict>, Vec<Vec<usize>>) {
    let index = Index::new(scans, spans);
    let scan_traces: HashSet<&str> = scans.iter().map(|s| s.trace_id.as_str()).collect();
    let foreign_roots: HashSet<String> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none() && !scan_traces.contains(s.trace_id.as_str()))
        .map(label)
        .collect();
    let lost = telemetry_lost.then_some(&foreign_roots);
    let mut claimed: HashSet<&str> = HashSet::new();
    let mut verdicts = Vec::with_capacity(scans.len());
    let mut unit_members = Vec::with_capacity(scans.len());
    let mut summary = TraceSummary {
        scans: scans.len() as u64,
        ..TraceSummary::default()
    };
    for scan in scans {
        let (unit, stray_roots) = index.unit_of(scan);
        claimed.extend(unit.iter().copied());
        let member_indexes = index.members(&unit);
        let members = index.resolve(&member_indexes);
        let is_sampled = sampled(&scan.trace_id);
        let problems = if is_sampled {
            summary.expected += 1;
            let (members, duplicates) = without_duplicate_deliveries(&members);
            summary.duplicate_deliveries += duplicates;
            let problems = judge_unit(template, &scan.trace_id, &members, &stray_roots);
            summary.record(scan, &problems, lost);
            problems
        } else {
            // Nothing of an unsampled scan may be recorded anywhere.
            summary.note_strays(&members);
            Vec::new()
        };
        verdicts.push(ScanVerdict {
            task_id: scan.task_id.clone(),
            trace_id: scan.trace_id.clone(),
            sampled: is_sampled,
            problems,
            spans: Vec::new(),
        });
        unit_members.push(member_indexes);
    }
    // Spans in traces no scan claimed: refused requests, or strays.
    for (trace, members) in &index.by_trace {
        if !claimed.contains(trace) {
            let members = index.resolve(members);
            if refused(template, &members) {
                summary.refused += 1;
            } else {
                summary.note_strays(&members);
            }
        }
    }
    summary.finish();
    (summary, verdicts, unit_members)
}

/// The problems of one sampled scan's unit (its spans in `members`).
/// Whether `spans` (one trace) is a request refused at the front door: its root is the
/// template's root span, answered with an HTTP status of 400 or more.
fn refused(template: &Template, spans: &[&Span]) -> bool {
    spans.iter().any(|s| {
        s.parent_span_id.is_none()
            && template.is_root(s)
            && s.attr("http.response.status_code")
                .and_then(|c| c.parse::<u16>().ok())
                .is_some_and(|c| c >= 400)
    })
}

/// `members` without the redeliveries handled as duplicates, and how many those were: a
/// CONSUMER span marked `*.duplicate = true` (the worker's `task.duplicate`, the consumers'
/// `event.duplicate`), with everything under it, unless something under it produced a message
/// (then it did work the trace needs, such as announcing a scan the first delivery did not).
fn without_duplicate_deliveries<'a>(members: &[&'a Span]) -> (Vec<&'a Span>, u64) {
    let marked = |s: &Span| {
        s.kind == Kind::Consumer
            && s.attributes
                .iter()
                .any(|(k, v)| k.ends_with(".duplicate") && v == "true")
    };
    if !members.iter().any(|s| marked(s)) {
        return (members.to_vec(), 0);
    }
    let mut children: HashMap<&str, Vec<&Span>> = HashMap::new();
    for s in members {
        if let Some(p) = s.parent_span_id.as_deref() {
            children.entry(p).or_default().push(s);
        }
    }
    let mut set_aside: HashSet<&str> = HashSet::new();
    let mut duplicates = 0;
    for root in members.iter().filter(|s| marked(s)) {
        let mut subtree = vec![*root];
        let mut i = 0;
        while let Some(s) = subtree.get(i) {
            subtree.extend(children.get(s.span_id.as_str()).into_iter().flatten());
            i += 1;
        }
        if subtree.iter().skip(1).any(|s| s.kind == Kind::Producer) {
            continue;
        }
        duplicates += 1;
        set_aside.extend(subtree.iter().map(|s| s.span_id.as_str()));
    }
    let kept = members
        .iter()
        .filter(|s| !set_aside.contains(s.span_id.as_str()))
        .copied()
        .collect();
    (kept, duplicates)
}

fn judge_unit(
    template: &Template,
    trace_id: &str,
    members: &[&Span],
    stray_roots: &[&str],
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let sigs = classify(template, members, &mut problems);
    let edges = hang(
        template,
        trace_id,
        members,
        &sigs,
        stray_roots,
        &mut problems,
    );
    count_children(template, members, &sigs, &edges, &mut problems);
    problems.sort();
    problems.dedup();
    problems
}

/// Each member's signature; a span of the wrong kind or unknown to the template is a problem.
fn classify(
    template: &Template,
    members: &[&Span],
    problems: &mut Vec<Problem>,
) -> Vec<Option<usize>> {
    members
        .iter()
        .map(|s| match template.classify(s) {
            Some((sig, true)) => Some(sig),
            Some((_, false)) => {
                problems.push(Problem::WrongKind(label(s)));
                None
            }
            None => {
                problems.push(Problem::UnexpectedSpan(label(s)));
                None
            }
        })
        .collect()
}

/// What [`hang`] found: how many children of each signature every span has, and the
/// signatures whose edge broke.
struct Edges<'a> {
    children: HashMap<(&'a str, usize), u32>,
    broken: HashSet<usize>,
}

/// Hangs every member from its parent — through the parent id, or through a link for
/// consumers that start a trace of their own — and notes each span that cannot hang where the
/// template says.
fn hang<'a>(
    template: &Template,
    trace_id: &str,
    members: &[&'a Span],
    sigs: &[Option<usize>],
    stray_roots: &[&str],
    problems: &mut Vec<Problem>,
) -> Edges<'a> {
    let by_id: HashMap<&str, &Span> = members.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    let mut children: HashMap<(&str, usize), u32> = HashMap::new();
    let mut broken: HashSet<usize> = HashSet::new();
    let mut root_seen = false;
    for (s, sig) in members.iter().zip(sigs) {
        let Some(sig) = *sig else { continue };
        let e = &template.sigs[sig];
        if e.parents.is_empty() {
            if s.trace_id == trace_id && s.parent_span_id.is_none() {
                root_seen = true;
            } else {
                problems.push(Problem::UnexpectedRoot(label(s)));
            }
            continue;
        }
        let allowed = |parent: &Span| {
            template
                .classify(parent)
                .is_some_and(|(p, _)| e.parents.iter().any(|(q, _)| *q == p))
        };
        match &s.parent_span_id {
            Some(parent_id) => match by_id.get(parent_id.as_str()) {
                None => problems.push(Problem::Orphan(label(s))),
                Some(parent) if !allowed(parent) => {
                    problems.push(Problem::WrongParent(format!(
                        "{} ← {}",
                        label(s),
                        label(parent)
                    )));
                }
                Some(parent) => {
                    if e.relation == Relation::Link {
                        problems.push(Problem::WrongParent(format!(
                            "{} ← {} (expected a link)",
                            label(s),
                            label(parent)
                        )));
                    }
                    *children.entry((parent.span_id.as_str(), sig)).or_default() += 1;
                }
            },
            None => {
                let linked = s.links.iter().find_map(|l| by_id.get(l.span_id.as_str()));
                match linked {
                    Some(parent)
                        if matches!(e.relation, Relation::Link | Relation::Either)
                            && allowed(parent) =>
                    {
                        *children.entry((parent.span_id.as_str(), sig)).or_default() += 1;
                    }
                    _ if stray_roots.contains(&s.trace_id.as_str()) || linked.is_none() => {
                        // The hop's receiver started over: name the edge it came through.
                        let from = e
                            .parents
                            .first()
                            .map(|(p, _)| template.sigs[*p].label())
                            .unwrap_or_default();
                        problems.push(Problem::BrokenEdge(format!("{from} → {}", e.label())));
                        broken.insert(sig);
                    }
                    _ => problems.push(Problem::UnexpectedRoot(label(s))),
                }
            }
        }
    }
    if !root_seen && let Some(root) = template.sigs.iter().find(|e| e.parents.is_empty()) {
        problems.push(Problem::MissingSpan(root.label()));
    }
    Edges { children, broken }
}

/// Whether `client` recorded an error without an answer: a transport failure or a timeout, as
/// the HTTP client conventions have it (`error.type` set, no `http.response.status_code`).
fn failed_in_transport(client: &Span) -> bool {
    client.attr("error.type").is_some() && client.attr("http.response.status_code").is_none()
}

/// Every present span has the children the template gives it, unless the edge to them broke.
fn count_children(
    template: &Template,
    members: &[&Span],
    sigs: &[Option<usize>],
    edges: &Edges<'_>,
    problems: &mut Vec<Problem>,
) {
    for (s, sig) in members.iter().zip(sigs) {
        let Some(sig) = *sig else { continue };
        for (c, e) in template.sigs.iter().enumerate() {
            let Some((_, count)) = e.parents.iter().find(|(p, _)| *p == sig) else {
                continue;
            };
            let n = edges
                .children
                .get(&(s.span_id.as_str(), c))
                .copied()
                .unwrap_or(0);
            // A call that failed in transport (refused, reset, timed out) may never have
            // reached a server: it owes no server span, and none missing says anything of
            // propagation.
            let owed = !(e.kind == Kind::Server && failed_in_transport(s));
            if n < count.min && owed && !edges.broken.contains(&c) {
                if e.kind == Kind::Server {
                    // An HTTP server that lost the context roots a trace no message id leads
                    // to: the client span is here, its server child is not.
                    problems.push(Problem::MissingServer(format!(
                        "{} → {}",
                        template.sigs[sig].label(),
                        e.label()
                    )));
                } else {
                    problems.push(Problem::MissingSpan(e.label()));
                }
            }
            if count.max.is_some_and(|m| n > m) {
                problems.push(Problem::TooMany(e.label()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Cardinality;
    use tb_traces::model::Link;

    /// Builds one scan's spans as the pipeline emits them, with ids `s0`, `s1`, … in tree order.
    struct Builder {
        trace: String,
        spans: Vec<Span>,
    }

    impl Builder {
        fn new(trace: &str) -> Self {
            Self {
                trace: trace.to_owned(),
                spans: Vec::new(),
            }
        }

        fn add(&mut self, parent: Option<&str>, service: &str, name: &str, kind: Kind) -> String {
            let id = format!("{}{:02}", &self.trace[..14], self.spans.len());
            self.spans.push(Span {
                trace_id: self.trace.clone(),
                span_id: id.clone(),
                parent_span_id: parent.map(str::to_owned),
                service: service.to_owned(),
                name: name.to_owned(),
                kind,
                start_ns: 0,
                end_ns: 1,
                error: false,
                links: Vec::new(),
                attributes: BTreeMap::new(),
            });
            id
        }
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    /// A complete scan; `attempts` ≥ 1 (each failed attempt republishes).
    fn scan(attempts: usize) -> Vec<Span> {
        use Kind::{Client, Consumer, Internal, Producer, Server};
        let mut b = Builder::new(TRACE);
        let root = b.add(None, "scan-api", "POST /scan", Server);
        b.add(Some(&root), "scan-api", "validate_request", Internal);
        b.add(Some(&root), "scan-api", "create_task", Internal);
        let mut publish = b.add(Some(&root), "scan-api", "publish scan.tasks", Producer);
        for attempt in 1..=attempts {
            let process = b.add(Some(&publish), "worker", "process_image", Consumer);
            let vision = b.add(Some(&process), "worker", "vision_scan", Internal);
            let call = b.add(Some(&vision), "worker", "call_vision_api", Client);
            b.add(Some(&call), "vision-api", "POST /v1/analyze", Server);
            if attempt < attempts {
                publish = b.add(Some(&process), "worker", "publish scan.tasks", Producer);
                continue;
            }
            b.add(Some(&process), "worker", "rule_match", Internal);
            let answer = b.add(Some(&process), "worker", "answer_gen", Internal);
            let call = b.add(Some(&answer), "worker", "call_llm_api", Client);
            b.add(Some(&call), "llm-api", "POST /v1/chat/completions", Server);
            b.add(Some(&process), "worker", "save_to_event_store", Internal);
            let event = b.add(Some(&process), "worker", "publish scan.completed", Producer);
            let character = b.add(
                Some(&event),
                "character-consumer",
                "process scan.completed",
                Consumer,
            );
            let handle = b.add(
                Some(&character),
                "character-consumer",
                "handle_scan_completed",
                Internal,
            );
            b.add(
                Some(&handle),
                "character-consumer",
                "grant_reward",
                Internal,
            );
            b.add(
                Some(&character),
                "character-consumer",
                "publish character.granted",
                Producer,
            );
            let my = b.add(
                Some(&event),
                "my-consumer",
                "process scan.completed",
                Consumer,
            );
            b.add(Some(&my), "my-consumer", "record_history", Internal);
        }
        b.spans
    }

    fn verdict(spans: &[Span]) -> (TraceSummary, Vec<Problem>) {
        let (summary, verdicts) = judge(
            &Template::seed_pipeline(Relation::Child),
            &the_scan(),
            spans,
            |_| true,
        );
        let problems = verdicts
            .into_iter()
            .next()
            .map(|v| v.problems)
            .unwrap_or_default();
        (summary, problems)
    }

    /// The one scan the fixtures build.
    fn the_scan() -> [Scan; 1] {
        [Scan {
            task_id: "task-1".to_owned(),
            trace_id: TRACE.to_owned(),
        }]
    }

    /// [`judge_with_loss`] of `spans` as the one scan, in a run that lost spans.
    fn verdict_with_loss(spans: &[Span]) -> TraceSummary {
        let template = Template::seed_pipeline(Relation::Child);
        judge_with_loss(&template, &the_scan(), spans, |_| true, true).0
    }

    #[test]
    fn a_redelivery_acked_without_work_is_set_aside_and_a_refused_request_is_no_stray() {
        use Kind::{Consumer, Internal, Producer, Server};
        let mut spans = scan(1);
        // The task redelivered after its ack was lost: one more process_image under the same
        // publish, marked duplicate, with no children.
        let publish = spans[3].span_id.clone();
        let mut b = Builder::new(TRACE);
        b.spans = spans.clone();
        let dup = b.add(Some(&publish), "worker", "process_image", Consumer);
        spans = b.spans;
        let unmarked = verdict(&spans);
        assert!(
            !unmarked.1.is_empty(),
            "an unmarked extra delivery is a problem"
        );
        spans
            .iter_mut()
            .find(|s| s.span_id == dup)
            .expect("dup")
            .attributes
            .insert("task.duplicate".to_owned(), "true".to_owned());
        // And a Kafka record read again after a rebalance: my consumer's second delivery, with
        // its child, marked duplicate.
        let event = spans
            .iter()
            .find(|s| s.name == "publish scan.completed")
            .expect("event")
            .span_id
            .clone();
        let mut b = Builder::new(TRACE);
        b.spans = spans;
        let again = b.add(
            Some(&event),
            "my-consumer",
            "process scan.completed",
            Consumer,
        );
        b.add(Some(&again), "my-consumer", "record_history", Internal);
        spans = b.spans;
        spans
            .iter_mut()
            .find(|s| s.span_id == again)
            .expect("again")
            .attributes
            .insert("event.duplicate".to_owned(), "true".to_owned());
        // A request scan-api refused (503): its own trace, not a scan, not a stray.
        let mut refused = Builder::new("0af7651916cd43dd8448eb211c80319c");
        let root = refused.add(None, "scan-api", "POST /scan", Server);
        refused.add(Some(&root), "scan-api", "validate_request", Internal);
        refused.add(Some(&root), "scan-api", "publish scan.tasks", Producer);
        refused.spans[0]
            .attributes
            .insert("http.response.status_code".to_owned(), "503".to_owned());
        spans.extend(refused.spans.clone());
        let (summary, problems) = verdict(&spans);
        assert_eq!(problems, []);
        assert_eq!(
            (
                summary.complete,
                summary.duplicate_deliveries,
                summary.refused,
                summary.stray_spans
            ),
            (1, 2, 1, 0)
        );
        // Answered 202, the same root would be a stray: the rule reads the status.
        let mut accepted = refused.spans;
        accepted[0]
            .attributes
            .insert("http.response.status_code".to_owned(), "202".to_owned());
        let mut spans = scan(1);
        spans.extend(accepted);
        assert_eq!(verdict(&spans).0.stray_spans, 3);
    }

    /// One scan whose my consumer lost the context: its spans in `trace`, the consumer a root
    /// carrying the task id as its message id.
    fn consumer_started_over(trace: &str) -> Vec<Span> {
        let mut spans = scan(1);
        let i = spans
            .iter()
            .position(|s| s.service == "my-consumer" && s.kind == Kind::Consumer)
            .expect("my consumer");
        let consumer_id = spans[i].span_id.clone();
        for s in spans.iter_mut().filter(|s| {
            s.span_id == consumer_id || s.parent_span_id.as_deref() == Some(&consumer_id)
        }) {
            s.trace_id = trace.to_owned();
        }
        spans[i].parent_span_id = None;
        spans[i]
            .attributes
            .insert("messaging.message.id".to_owned(), "task-1".to_owned());
        spans
    }

    /// One scan whose Vision server lost the context: it roots `trace`, no message id leads
    /// to it.
    fn server_started_over(trace: &str) -> Vec<Span> {
        let mut spans = scan(1);
        let server = spans
            .iter()
            .position(|s| s.name == "POST /v1/analyze")
            .expect("server");
        spans[server].trace_id = trace.to_owned();
        spans[server].parent_span_id = None;
        spans
    }

    #[test]
    fn a_complete_scan_and_a_retried_one_are_complete() {
        for attempts in [1, 3] {
            let (summary, problems) = verdict(&scan(attempts));
            assert_eq!(problems, [], "{attempts} attempts");
            assert_eq!(
                (summary.expected, summary.complete, summary.stray_spans),
                (1, 1, 0)
            );
        }
    }

    #[test]
    fn a_consumer_that_started_over_is_a_broken_edge_found_by_its_message_id() {
        // The consumer lost the context: a new trace, no parent, the task id as message id.
        let (summary, problems) = verdict(&consumer_started_over(&"a".repeat(32)));
        assert_eq!(
            problems,
            [Problem::BrokenEdge(
                "worker/publish scan.completed → my-consumer/process scan.completed".to_owned()
            )]
        );
        assert_eq!(summary.complete, 0);
        assert_eq!(
            summary.stray_spans, 0,
            "the stray trace belongs to the scan"
        );
    }

    #[test]
    fn judging_owned_spans_gives_the_same_verdicts_as_judging_borrowed_ones() {
        let mut spans = scan(2);
        // A second scan whose trace holds a single span.
        spans.push(Span {
            trace_id: "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee".to_owned(),
            ..spans[0].clone()
        });
        let scans = [
            Scan {
                task_id: "task-1".to_owned(),
                trace_id: TRACE.to_owned(),
            },
            Scan {
                task_id: "task-2".to_owned(),
                trace_id: "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee".to_owned(),
            },
        ];
        let template = Template::seed_pipeline(Relation::Child);
        let borrowed = judge(&template, &scans, &spans, |_| true);
        let owned = judge_owned(&template, &scans, spans, |_| true, false);
        assert_eq!(borrowed, owned);
        assert_eq!(
            owned.1[0].spans.len() + owned.1[1].spans.len(),
            borrowed.1[0].spans.len() + 1
        );
    }

    #[test]
    fn spans_lost_as_telemetry_are_telemetry_loss_not_broken_edges() {
        // The Vision server span and my consumer's spans never reached the backend.
        let spans: Vec<Span> = scan(1)
            .into_iter()
            .filter(|s| s.name != "POST /v1/analyze" && s.service != "my-consumer")
            .collect();
        let scans = the_scan();
        let template = Template::seed_pipeline(Relation::Child);
        let (lost, _) = judge_with_loss(&template, &scans, &spans, |_| true, true);
        assert_eq!(lost.telemetry_loss, 1);
        assert!(lost.broken_edges.is_empty(), "{:?}", lost.broken_edges);
        assert!(lost.missing_spans.is_empty(), "{:?}", lost.missing_spans);
        // Nothing left to judge: no propagation failure is claimed.
        assert_eq!(lost.complete_ratio, 1.0);
        // The same spans in a run that lost none: a broken edge and missing spans.
        let (whole, _) = judge(&template, &scans, &spans, |_| true);
        assert_eq!(whole.telemetry_loss, 0);
        assert!(!whole.broken_edges.is_empty());
        assert!(!whole.missing_spans.is_empty());
        assert_eq!(whole.complete_ratio, 0.0);
    }

    #[test]
    fn a_server_that_started_over_stays_a_broken_edge_when_spans_were_lost() {
        // The Vision server lost the context: it roots a trace of its own, which no message
        // id leads to. Spans lost elsewhere in the run do not excuse it.
        let summary = verdict_with_loss(&server_started_over(&"d".repeat(32)));
        assert_eq!(summary.telemetry_loss, 0);
        assert_eq!(
            summary
                .broken_edges
                .get("worker/call_vision_api → vision-api/POST /v1/analyze"),
            Some(&1)
        );
    }

    #[test]
    fn a_call_that_failed_in_transport_owes_no_server_span() {
        // The Vision API was down: the client span recorded the error, got no status, and no
        // server span exists anywhere. That is an outage, not broken propagation.
        let mut spans = scan(1);
        let server = spans
            .iter()
            .position(|s| s.name == "POST /v1/analyze")
            .expect("server");
        spans.remove(server);
        let client = spans
            .iter_mut()
            .find(|s| s.name == "call_vision_api")
            .expect("client");
        client.error = true;
        client
            .attributes
            .insert("error.type".to_owned(), "transport".to_owned());
        let (summary, problems) = verdict(&spans);
        assert_eq!(problems, [], "{:?}", summary.broken_edges);
        // Answered, the same call owes its server: the edge is broken.
        let client = spans
            .iter_mut()
            .find(|s| s.name == "call_vision_api")
            .expect("client");
        client
            .attributes
            .insert("http.response.status_code".to_owned(), "500".to_owned());
        let (_, problems) = verdict(&spans);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn a_stray_root_stays_a_broken_edge_when_spans_were_lost() {
        // Losing spans never starts a new trace: a consumer that did is a broken edge still.
        let summary = verdict_with_loss(&consumer_started_over(&"c".repeat(32)));
        assert_eq!(summary.telemetry_loss, 0);
        assert_eq!(summary.broken_edges.len(), 1);
    }

    #[test]
    fn lost_server_context_orphans_and_wrong_kinds_are_named() {
        // The Vision server span lost its context: it roots a trace of its own, unclaimed.
        let (summary, problems) = verdict(&server_started_over(&"b".repeat(32)));
        let edge = "worker/call_vision_api → vision-api/POST /v1/analyze";
        assert_eq!(problems, [Problem::MissingServer(edge.to_owned())]);
        // With no span lost, a client without its server is a broken edge.
        assert_eq!(summary.broken_edges.get(edge), Some(&1));
        assert_eq!(summary.stray_spans, 1);

        let mut spans = scan(1);
        let rule = spans
            .iter()
            .position(|s| s.name == "rule_match")
            .expect("rule");
        spans[rule].parent_span_id = Some("ffffffffffffffff".to_owned());
        spans[rule + 1].kind = Kind::Client;
        let (_, problems) = verdict(&spans);
        assert!(
            problems.contains(&Problem::Orphan("worker/rule_match".to_owned())),
            "{problems:?}"
        );
        assert!(
            problems.contains(&Problem::WrongKind("worker/answer_gen".to_owned())),
            "{problems:?}"
        );
    }

    #[test]
    fn a_missing_span_is_reported_and_an_unsampled_scan_must_leave_nothing() {
        let spans: Vec<Span> = scan(1)
            .into_iter()
            .filter(|s| s.name != "grant_reward")
            .collect();
        let (_, problems) = verdict(&spans);
        assert_eq!(
            problems,
            [Problem::MissingSpan(
                "character-consumer/grant_reward".to_owned()
            )]
        );

        let scans = the_scan();
        let (summary, _) = judge(
            &Template::seed_pipeline(Relation::Child),
            &scans,
            &scan(1),
            |_| false,
        );
        assert_eq!((summary.expected, summary.complete_ratio), (0, 1.0));
        assert_eq!(summary.stray_spans, scan(1).len() as u64);
    }

    #[test]
    fn linked_consumers_are_complete_under_the_link_relation() {
        let mut spans = scan(1);
        let ids: HashMap<String, String> = spans
            .iter()
            .map(|s| (s.span_id.clone(), s.name.clone()))
            .collect();
        for s in spans.iter_mut().filter(|s| s.kind == Kind::Consumer) {
            let parent = s.parent_span_id.take().expect("parent");
            assert!(ids.contains_key(&parent));
            s.links.push(Link {
                trace_id: TRACE.to_owned(),
                span_id: parent,
            });
        }
        // Linked consumers start traces of their own (one per consumer service).
        let mut moved = HashSet::new();
        for s in spans
            .iter_mut()
            .filter(|s| s.service.ends_with("-consumer"))
        {
            s.trace_id = if s.service == "my-consumer" {
                "c".repeat(32)
            } else {
                "d".repeat(32)
            };
            moved.insert(s.trace_id.clone());
        }
        let scans = the_scan();
        let (summary, verdicts) = judge(
            &Template::seed_pipeline(Relation::Link),
            &scans,
            &spans,
            |_| true,
        );
        assert_eq!(verdicts[0].problems, [], "{:?}", verdicts[0].problems);
        assert_eq!(summary.complete, 1);
        // Under `child`, the same spans are wrong.
        let (summary, _) = judge(
            &Template::seed_pipeline(Relation::Child),
            &scans,
            &spans,
            |_| true,
        );
        assert_eq!(summary.complete, 0);
        assert_eq!(moved.len(), 2);
    }

    #[test]
    fn cardinalities_parse() {
        assert_eq!(Cardinality::parse("1"), Ok(Cardinality::ONE));
        assert_eq!(Cardinality::parse("0..1"), Ok(Cardinality::OPTIONAL));
        assert_eq!(Cardinality::parse("1..n"), Ok(Cardinality::ONE_OR_MORE));
        assert_eq!(Cardinality::parse("0..n"), Ok(Cardinality::ANY));
        assert!(Cardinality::parse("2..1").is_err());
        assert!(Cardinality::parse("some").is_err());
    }
}
