//! Tempo's v1 trace-by-id body, built from a stored trace without copying its messages.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use serde::Serialize;

use super::{Origin, Source, Stored, Trace};

/// Tempo's v1 trace-by-id body, borrowing the stored messages.
#[derive(Serialize)]
pub(super) struct TempoTraceView<'a> {
    batches: Vec<BatchView<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a Resource>,
    scope_spans: Vec<ScopeView<'a>>,
    #[serde(skip_serializing_if = "str::is_empty")]
    schema_url: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScopeView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a InstrumentationScope>,
    spans: Vec<OtlpSpan>,
    #[serde(skip_serializing_if = "str::is_empty")]
    schema_url: &'a str,
}

impl Trace {
    /// This trace as Tempo's v1 trace-by-id body.
    pub(super) fn tempo_view(&self) -> TempoTraceView<'_> {
        // Groups sharing a resource become one batch, and groups sharing a scope within it one
        // `scopeSpans`, as in Tempo's answer. A trace has a handful of groups, so linear search.
        let mut sources: Vec<&Arc<Source>> = Vec::new();
        let mut origins: Vec<Vec<&Arc<Origin>>> = Vec::new();
        let mut batches: Vec<BatchView<'_>> = Vec::new();
        for group in &self.groups {
            let origin = &group.origin;
            let b = match sources
                .iter()
                .position(|s| Arc::ptr_eq(s, &origin.resource))
            {
                Some(b) => b,
                None => {
                    sources.push(&origin.resource);
                    origins.push(Vec::new());
                    batches.push(BatchView {
                        resource: origin.resource.resource.as_ref(),
                        scope_spans: Vec::new(),
                        schema_url: &origin.resource.schema_url,
                    });
                    batches.len() - 1
                }
            };
            match origins[b].iter().position(|o| Arc::ptr_eq(o, origin)) {
                Some(s) => batches[b].scope_spans[s]
                    .spans
                    .extend(group.spans.iter().map(Stored::decode)),
                None => {
                    origins[b].push(origin);
                    batches[b].scope_spans.push(ScopeView {
                        scope: origin.scope.as_ref(),
                        spans: group.spans.iter().map(Stored::decode).collect(),
                        schema_url: &origin.schema_url,
                    });
                }
            }
        }
        TempoTraceView { batches }
    }
}
