//! Judging a run's traces: did every scan come out as one complete trace, where did the ones
//! that did not break, and where did the time go.
//!
//! | module          | what                                                                   |
//! |-----------------|------------------------------------------------------------------------|
//! | [`template`]    | the expected trace: [`Template`] (seed pipeline or a YAML tree)         |
//! | [`judge`]       | [`judge`](judge::judge) every scan per edge: [`TraceSummary`], verdicts |
//! | [`attribution`] | the critical path of a scan and latency shares over many               |
//! | [`waterfall`]   | one scan's spans in tree order, as the reports draw them               |
//!
//! Spans come as [`tb_traces::Span`]s, from the embedded sink or a real Tempo alike.

pub mod attribution;
pub mod judge;
pub mod template;
pub mod waterfall;

pub use attribution::{Attribution, CriticalPath, attribute, attribute_paths, critical_path};
pub use judge::{
    Example, Problem, Scan, ScanVerdict, TraceSummary, judge, judge_owned, judge_with_loss,
};
pub use template::{Cardinality, CardinalityError, Node, Relation, Template, TemplateError};
pub use waterfall::{Edge, Waterfall, WaterfallSpan};
