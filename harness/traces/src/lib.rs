//! Spans as the harness judges them, and where they come from.
//!
//! | module       | what                                                                      |
//! |--------------|---------------------------------------------------------------------------|
//! | [`model`]    | [`Span`]: one span with its service, kind, parent and links, backend-free |
//! | [`sink`]     | the embedded OTLP sink: receivers, the bounded store, Tempo's query API   |
//! | [`client`]   | [`TraceClient`]: reads traces from the sink or a real Tempo               |
//! | [`convert`]  | OTLP and in-process spans into [`Span`]; id and attribute rendering       |
//!
//! Nothing here knows the scan pipeline: the verifier (`tb-verify`) gives spans their meaning.

pub mod client;
pub mod convert;
pub mod model;
pub mod sink;

pub use client::{ClientError, Polled, TraceClient};
pub use model::{Kind, Link, Span};
