//! Test support, behind the `testing` feature: an exporter that keeps finished spans in memory
//! so a test can assert on them (`Exporter::Memory`). Production builds carry none of it.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::Key;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_semantic_conventions::resource::SERVICE_NAME;

use crate::service::FinishedSpan;

/// Spans exported by [`Exporter::Memory`](crate::Exporter::Memory); clones share one buffer.
#[derive(Clone, Default)]
pub struct MemorySpans(Arc<Mutex<Vec<FinishedSpan>>>);

impl MemorySpans {
    /// Everything exported so far, in export order.
    pub fn spans(&self) -> Vec<FinishedSpan> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Removes and returns everything exported so far.
    pub fn take(&self) -> Vec<FinishedSpan> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl fmt::Debug for MemorySpans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("MemorySpans").field("spans", &n).finish()
    }
}

/// Two handles are equal when they share a buffer.
impl PartialEq for MemorySpans {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The exporter behind [`Exporter::Memory`](crate::Exporter::Memory); learns its service from the resource.
#[derive(Debug)]
pub(crate) struct MemoryExporter {
    pub(crate) spans: MemorySpans,
    pub(crate) service: String,
}

impl SpanExporter for MemoryExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut spans = self.spans.0.lock().unwrap_or_else(PoisonError::into_inner);
        spans.extend(batch.into_iter().map(|span| FinishedSpan {
            service: self.service.clone(),
            span,
        }));
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(name) = resource.get(&Key::from_static_str(SERVICE_NAME)) {
            self.service = name.to_string();
        }
    }
}
