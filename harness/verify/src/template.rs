//! The expected trace: a tree of spans (service, name, kind) with each span's relation to its
//! parent (`child`, `link` or `either`) and a cardinality, flattened to signatures so that a
//! node that repeats (a retried `process_image` under the retry's publish) needs no recursion:
//! each signature knows every parent signature it may hang from. [`Template::seed_pipeline`]
//! is the seed design's tree.

use serde::{Deserialize, Serialize};

use tb_telemetry::spans::ConsumerRelation;
use tb_traces::model::{Kind, Span};

/// How a span relates to its template parent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// The parent span is its parent.
    #[default]
    Child,
    /// It roots a new trace that links to the parent span.
    Link,
    /// Either of the two.
    Either,
}

/// The relation the services are configured to produce is what the verifier expects.
impl From<ConsumerRelation> for Relation {
    fn from(relation: ConsumerRelation) -> Self {
        match relation {
            ConsumerRelation::Child => Self::Child,
            ConsumerRelation::Link => Self::Link,
        }
    }
}

/// A cardinality that is not `1`, `0..1`, `1..n` or `0..n`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CardinalityError {
    /// Not a count or a range of counts.
    #[error("expected 1, 0..1, 1..n or 0..n, got {0:?}")]
    NotACount(String),
    /// A range whose upper bound is below its lower one.
    #[error("{0:?}: upper bound below lower bound")]
    Inverted(String),
}

/// Why a tree is not a template.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A node's `count` is not a cardinality.
    #[error("{node}: count: {error}")]
    Count {
        /// The node, as `service/name`.
        node: String,
        /// What is wrong with its count.
        error: CardinalityError,
    },
}

/// How many spans of a node a complete scan has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cardinality {
    /// At least.
    pub min: u32,
    /// At most (`None`: unbounded).
    pub max: Option<u32>,
}

impl Cardinality {
    /// Exactly one.
    pub const ONE: Self = Self {
        min: 1,
        max: Some(1),
    };
    /// Zero or one.
    pub const OPTIONAL: Self = Self {
        min: 0,
        max: Some(1),
    };
    /// One or more (retries).
    pub const ONE_OR_MORE: Self = Self { min: 1, max: None };
    /// Any number.
    pub const ANY: Self = Self { min: 0, max: None };

    /// Parses `1`, `0..1`, `1..n`, `0..n`.
    ///
    /// # Errors
    ///
    /// Fails on anything else.
    pub fn parse(text: &str) -> Result<Self, CardinalityError> {
        let t = text.trim();
        let num = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| CardinalityError::NotACount(text.to_owned()))
        };
        match t.split_once("..") {
            None => {
                let n = num(t)?;
                Ok(Self {
                    min: n,
                    max: Some(n),
                })
            }
            Some((lo, "n")) => Ok(Self {
                min: num(lo)?,
                max: None,
            }),
            Some((lo, hi)) => {
                let (min, max) = (num(lo)?, num(hi)?);
                if max < min {
                    return Err(CardinalityError::Inverted(text.to_owned()));
                }
                Ok(Self {
                    min,
                    max: Some(max),
                })
            }
        }
    }
}

/// A node of the expected tree, as written in a scenario's `expect.trace`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// `service.name`.
    pub service: String,
    /// Span name; a trailing `*` matches any suffix (`publish scan.tasks*`).
    pub name: String,
    /// Span kind.
    pub kind: Kind,
    /// Relation to the parent node. Default `child`.
    #[serde(default)]
    pub relation: Relation,
    /// `1` (default), `0..1`, `1..n`, `0..n`.
    #[serde(default)]
    pub count: Option<String>,
    /// Child nodes.
    #[serde(default)]
    pub children: Vec<Node>,
}

impl Node {
    fn new(service: &str, name: &str, kind: Kind) -> Self {
        Self {
            service: service.to_owned(),
            name: name.to_owned(),
            kind,
            relation: Relation::Child,
            count: None,
            children: Vec::new(),
        }
    }

    fn count(mut self, c: &str) -> Self {
        self.count = Some(c.to_owned());
        self
    }

    fn relation(mut self, r: Relation) -> Self {
        self.relation = r;
        self
    }

    fn with(mut self, children: Vec<Node>) -> Self {
        self.children = children;
        self
    }
}

/// One signature's expectations, gathered from every node that has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) service: String,
    pub(crate) name: String,
    pub(crate) kind: Kind,
    /// Signatures (indexes) it may hang from, each with how many of it one parent span has;
    /// empty for the root.
    pub(crate) parents: Vec<(usize, Cardinality)>,
    pub(crate) relation: Relation,
}

impl Expected {
    pub(crate) fn matches_name(&self, span: &Span) -> bool {
        span.service == self.service
            && match self.name.strip_suffix('*') {
                Some(prefix) => span.name.starts_with(prefix),
                None => span.name == self.name,
            }
    }

    pub(crate) fn label(&self) -> String {
        format!("{}/{}", self.service, self.name.trim_end_matches('*'))
    }
}

/// The expected topology, flattened to signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub(crate) sigs: Vec<Expected>,
}

impl Template {
    /// Flattens a tree.
    ///
    /// # Errors
    ///
    /// Fails on an invalid cardinality, naming the node.
    pub fn from_tree(root: &Node) -> Result<Self, TemplateError> {
        let mut t = Self { sigs: Vec::new() };
        t.add(root, None)?;
        Ok(t)
    }

    fn add(&mut self, node: &Node, parent: Option<usize>) -> Result<(), TemplateError> {
        let count = match &node.count {
            Some(c) => Cardinality::parse(c).map_err(|error| TemplateError::Count {
                node: format!("{}/{}", node.service, node.name),
                error,
            })?,
            None => Cardinality::ONE,
        };
        let at = self
            .sigs
            .iter()
            .position(|e| e.service == node.service && e.name == node.name && e.kind == node.kind);
        let index = match at {
            Some(i) => {
                // A repeated signature: one more parent it may hang from.
                let e = &mut self.sigs[i];
                if let Some(p) = parent
                    && !e.parents.iter().any(|(q, _)| *q == p)
                {
                    e.parents.push((p, count));
                }
                if e.relation != node.relation {
                    e.relation = Relation::Either;
                }
                i
            }
            None => {
                self.sigs.push(Expected {
                    service: node.service.clone(),
                    name: node.name.clone(),
                    kind: node.kind,
                    parents: parent.map(|p| (p, count)).into_iter().collect(),
                    relation: node.relation,
                });
                self.sigs.len() - 1
            }
        };
        for child in &node.children {
            self.add(child, Some(index))?;
        }
        Ok(())
    }

    /// The seed pipeline's tree (see `docs/design.md`), with the consumers'
    /// relation to their producers as the scenario configures it. A failed attempt republishes
    /// the task (`publish scan.tasks*` under `process_image`), whose child is the next attempt.
    pub fn seed_pipeline(relation: Relation) -> Self {
        use Kind::{Client, Consumer, Internal, Producer, Server};
        let attempt_children = || {
            vec![
                Node::new("worker", "vision_scan", Internal).with(vec![
                    Node::new("worker", "call_vision_api", Client).with(vec![Node::new(
                        "vision-api",
                        "POST /v1/analyze",
                        Server,
                    )]),
                ]),
                Node::new("worker", "rule_match", Internal).count("0..1"),
                Node::new("worker", "answer_gen", Internal)
                    .count("0..1")
                    .with(vec![Node::new("worker", "call_llm_api", Client).with(
                        vec![Node::new("llm-api", "POST /v1/chat/completions", Server)],
                    )]),
                // With `store: postgres`, the write is a database CLIENT span of its own.
                Node::new("worker", "save_to_event_store", Internal)
                    .count("0..1")
                    .with(vec![
                        Node::new("worker", "UPDATE scans", Client).count("0..1"),
                    ]),
                Node::new("worker", "publish scan.completed", Producer)
                    .count("0..1")
                    .with(vec![
                        Node::new("character-consumer", "process scan.completed", Consumer)
                            .relation(relation)
                            .with(vec![
                                Node::new("character-consumer", "handle_scan_completed", Internal)
                                    .with(vec![Node::new(
                                        "character-consumer",
                                        "grant_reward",
                                        Internal,
                                    )]),
                                Node::new(
                                    "character-consumer",
                                    "publish character.granted",
                                    Producer,
                                )
                                .count("0..1"),
                            ]),
                        Node::new("my-consumer", "process scan.completed", Consumer)
                            .relation(relation)
                            .with(vec![Node::new("my-consumer", "record_history", Internal)]),
                    ]),
            ]
        };
        let mut retry_publish = Node::new("worker", "publish scan.tasks*", Producer).count("0..n");
        retry_publish.children = vec![
            Node::new("worker", "process_image", Consumer)
                .relation(relation)
                .count("0..n"),
        ];
        let mut children = attempt_children();
        children.push(retry_publish);
        let root = Node::new("scan-api", "POST /scan", Server).with(vec![
            Node::new("scan-api", "validate_request", Internal),
            Node::new("scan-api", "create_task", Internal),
            Node::new("scan-api", "publish scan.tasks*", Producer).with(vec![
                Node::new("worker", "process_image", Consumer)
                    .relation(relation)
                    .with(children),
            ]),
        ]);
        // The tree above is well-formed; flattening only fails on a bad count string.
        Self::from_tree(&root).unwrap_or(Self { sigs: Vec::new() })
    }

    /// Whether `span` is the template's root: its service, name and kind.
    pub(crate) fn is_root(&self, span: &Span) -> bool {
        self.sigs
            .iter()
            .any(|e| e.parents.is_empty() && e.matches_name(span) && e.kind == span.kind)
    }

    /// The signature a span matches by service and name (any kind), and whether the kind fits.
    pub(crate) fn classify(&self, span: &Span) -> Option<(usize, bool)> {
        let mut by_name = None;
        for (i, e) in self.sigs.iter().enumerate() {
            if e.matches_name(span) {
                if e.kind == span.kind {
                    return Some((i, true));
                }
                by_name.get_or_insert((i, false));
            }
        }
        by_name
    }
}
