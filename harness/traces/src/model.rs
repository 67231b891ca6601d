//! The span model the verifier and the reports work on, whatever the spans came from: the
//! embedded sink, real Tempo, or the in-process exporter. Ids are lowercase hex.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// A span's kind, as OpenTelemetry defines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Internal work.
    Internal,
    /// Incoming request.
    Server,
    /// Outgoing request.
    Client,
    /// Message sent.
    Producer,
    /// Message processed.
    Consumer,
}

/// A link to another span.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Linked trace id (32 hex).
    pub trace_id: String,
    /// Linked span id (16 hex).
    pub span_id: String,
}

/// One finished span.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Trace id (32 hex).
    pub trace_id: String,
    /// Span id (16 hex).
    pub span_id: String,
    /// Parent span id (16 hex), `None` for a root.
    pub parent_span_id: Option<String>,
    /// `service.name` of the span's resource.
    pub service: String,
    /// Span name.
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// Start, Unix nanoseconds.
    pub start_ns: u64,
    /// End, Unix nanoseconds.
    pub end_ns: u64,
    /// Whether the status is error.
    pub error: bool,
    /// Links.
    pub links: Vec<Link>,
    /// Attributes, values rendered as strings.
    pub attributes: BTreeMap<String, String>,
}

impl Span {
    /// Duration in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// An attribute's value.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// Spans arranged as a tree: the roots, and the children of each span id. A span whose parent
/// is not among `spans` but that links to one of them (a consumer under the link relation)
/// hangs from the linked span; otherwise it is a root.
pub fn tree(spans: &[Span]) -> (Vec<&Span>, HashMap<&str, Vec<&Span>>) {
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<&Span>> = HashMap::new();
    let mut roots = Vec::new();
    for s in spans {
        let parent = s
            .parent_span_id
            .as_deref()
            .filter(|p| ids.contains(p))
            .or_else(|| {
                s.links
                    .iter()
                    .map(|l| l.span_id.as_str())
                    .find(|p| ids.contains(p))
            });
        match parent {
            Some(p) => children.entry(p).or_default().push(s),
            None => roots.push(s),
        }
    }
    (roots, children)
}

/// What Tempo reports as a trace's root service while no span without a parent has arrived.
pub const ROOT_NOT_YET_RECEIVED: &str = "<root span not yet received>";

/// One search hit, shaped like an entry of Tempo's `/api/search` answer. Reading, fields Tempo
/// leaves out when empty or zero (its JSON omits defaults) default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceSummary {
    /// Trace id, 32 lowercase hex digits.
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// Service of the root span, or [`ROOT_NOT_YET_RECEIVED`].
    #[serde(default)]
    pub root_service_name: String,
    /// Name of the root span; empty while it has not arrived.
    #[serde(default)]
    pub root_trace_name: String,
    /// Earliest span start, Unix nanoseconds (a decimal string in JSON, as Tempo writes it).
    #[serde(default, with = "u64_string")]
    pub start_time_unix_nano: u64,
    /// Latest span end minus earliest start, whole milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
}

/// 64-bit integers as JSON strings, read from strings or numbers (protobuf JSON writes 64-bit
/// integers as strings; not every writer does).
pub(crate) mod u64_string {
    use serde::{Deserialize, Deserializer, Serializer, de};

    /// Writes `value` as a decimal string.
    pub(crate) fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }

    /// Reads a number or a decimal string.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(n),
            Either::Text(s) => s.parse().map_err(de::Error::custom),
        }
    }
}
