//! The span processor and exporters [`crate::setup`] wires together: counting what ends and
//! what is exported ([`SpanStats`]), burning the overhead bench's synthetic cost, routing each
//! span to its service's resource, and discarding.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::trace::Span as _;
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_semantic_conventions::resource::SERVICE_NAME;

/// The span attribute that carries a span's service from the processor to the routing exporter
/// in a multi-service process; the exporter removes it before the span leaves.
pub(crate) const SERVICE_ROUTE: &str = "tracebench.service";

/// Span counts of one provider, for reporting what tracing itself lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpanCounts {
    /// Sampled spans that ended (and so were handed to the batch processor).
    pub ended: u64,
    /// Spans the exporter accepted.
    pub exported: u64,
    /// Spans in export calls that failed.
    pub export_failed: u64,
}

impl SpanCounts {
    /// Spans neither exported nor failed: dropped by a full queue, or still queued. After
    /// [`TelemetryGuard::flush`] nothing is queued, so this is the drop count.
    pub fn dropped_or_pending(&self) -> u64 {
        self.ended
            .saturating_sub(self.exported)
            .saturating_sub(self.export_failed)
    }

    /// Spans that never reached the backend: dropped by a full queue, in a failed export, or
    /// still queued.
    pub fn not_exported(&self) -> u64 {
        self.ended.saturating_sub(self.exported)
    }
}

#[derive(Debug, Default)]
struct Counters {
    ended: AtomicU64,
    exported: AtomicU64,
    export_failed: AtomicU64,
}

/// Readable span counters shared by a provider's counting processor and exporter.
#[derive(Clone, Debug, Default)]
pub struct SpanStats(Arc<Counters>);

impl SpanStats {
    /// The counts so far.
    pub fn counts(&self) -> SpanCounts {
        SpanCounts {
            ended: self.0.ended.load(Ordering::Relaxed),
            exported: self.0.exported.load(Ordering::Relaxed),
            export_failed: self.0.export_failed.load(Ordering::Relaxed),
        }
    }
}

/// Counts sampled spans as they end, then hands them to the batch processor, whose own drop
/// counter is private; `ended - exported - failed` gives the drops.
///
/// It wraps the batch processor rather than sitting beside it because the SDK clones every
/// span's data once per processor when there are two or more.
#[derive(Debug)]
pub(crate) struct Counted<P> {
    pub(crate) inner: P,
    pub(crate) stats: SpanStats,
    /// In a multi-service process, the service for spans started outside any
    /// [`crate::service::scope`]; `None` when the process is one service and nothing is stamped.
    pub(crate) stamp: Option<&'static str>,
    /// [`TelemetryConfig::synthetic_span_cost`], charged by [`charge`].
    pub(crate) synthetic: Duration,
}

thread_local! {
    /// The synthetic cost this thread has charged and not yet burnt; `None` on a thread that
    /// never parked through [`pay_synthetic_cost`], which burns it at once.
    static OWED: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// Burns the synthetic cost this thread owes, and from then on lets it owe the cost of the
/// spans it ends instead of burning it at once: tokio's `on_thread_park`, called by an async
/// runtime's worker threads just before they go idle (a blocking-pool thread never calls it, so
/// it never owes a cost it would not pay).
pub fn pay_synthetic_cost() {
    if let Some(cost) =
        OWED.with(|owed| owed.replace(Some(Duration::ZERO)).filter(|c| !c.is_zero()))
    {
        burn(cost);
    }
}

/// Charges `cost` to this thread: owed until it goes idle on a runtime's worker thread, burnt
/// at once on any other.
///
/// Burnt at once, a millisecond's spin in the middle of a request leaves the request's data to
/// go cold: on these VMs data left alone for 1 ms loses much of its place in the cache (the
/// host's other tenants share it), and the code after the spin pays to bring it back. The
/// overhead bench's self-test (`scenarios/overhead-self-test.yaml`) saw that as about 40 µs
/// more a span than the 1,000 µs charged (+4 %, in every service alike, with hand-offs per scan
/// unchanged). Paid when the thread is about to park, the spin stands where the thread would go
/// idle anyway, and what follows it would have started cold without it.
fn charge(cost: Duration) {
    let deferred = OWED.with(|owed| match owed.get() {
        Some(owed_so_far) => {
            owed.set(Some(owed_so_far + cost));
            true
        }
        None => false,
    });
    if !deferred {
        burn(cost);
    }
}

/// Keeps this thread busy until it has spent `cost` of CPU time: the overhead bench's known
/// cost per span, spent on the thread that ends it. The thread's own CPU clock, not the wall
/// clock: a spin preempted halfway on a busy machine would otherwise burn less than it says.
///
/// Burning it on a thread of its own instead was tried and measured worse: the hand-off (a
/// polling thread, then a parked one woken per burst) added a cost of its own that the
/// self-test found too (+14 %, then +9.5 %). Near saturation no cost is additive: with the
/// machine close to busy every thread batches more and wakes less, and 20 µs a span at 60 % of
/// saturation on 2 cores measured as 14.5 µs inline (15.1 µs on a burner thread). The
/// self-test therefore runs where the machine has room (`scenarios/overhead-self-test.yaml`).
fn burn(cost: Duration) {
    let cpu = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(
            t.tv_sec.unsigned_abs(),
            u32::try_from(t.tv_nsec).unwrap_or(0),
        )
    };
    let until = cpu() + cost;
    while cpu() < until {
        std::hint::spin_loop();
    }
}

impl<P: SpanProcessor> SpanProcessor for Counted<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if let Some(default) = self.stamp {
            let service = crate::service::current().unwrap_or(default);
            span.set_attribute(KeyValue::new(SERVICE_ROUTE, service));
        }
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        // The batch processor exports only sampled spans; count what it will see.
        if span.span_context.is_sampled() {
            self.stats.0.ended.fetch_add(1, Ordering::Relaxed);
            if !self.synthetic.is_zero() {
                charge(self.synthetic);
            }
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Wraps an exporter to count what it exported and what failed.
#[derive(Debug)]
pub(crate) struct CountingExporter<E> {
    pub(crate) inner: E,
    pub(crate) stats: SpanStats,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        let counter = match result {
            Ok(()) => &self.stats.0.exported,
            Err(_) => &self.stats.0.export_failed,
        };
        counter.fetch_add(n, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Sends each span to the exporter of its service (the [`SERVICE_ROUTE`] attribute stamped at
/// start), whose resource names that service. With one route nothing is stamped or inspected.
#[derive(Debug)]
pub(crate) struct Routed<E> {
    pub(crate) routes: Vec<(String, E)>,
}

impl<E: SpanExporter> SpanExporter for Routed<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if let [(_, only)] = self.routes.as_slice() {
            return only.export(batch).await;
        }
        let mut groups: Vec<Vec<SpanData>> = self.routes.iter().map(|_| Vec::new()).collect();
        for mut span in batch {
            let mut route = 0;
            if let Some(i) = span
                .attributes
                .iter()
                .position(|kv| kv.key.as_str() == SERVICE_ROUTE)
            {
                let stamped = span.attributes.swap_remove(i);
                if let Value::String(name) = &stamped.value {
                    route = self
                        .routes
                        .iter()
                        .position(|(service, _)| service == name.as_str())
                        .unwrap_or(0);
                }
            }
            groups[route].push(span);
        }
        let mut result = Ok(());
        for ((_, exporter), group) in self.routes.iter().zip(groups) {
            if !group.is_empty() {
                let r = exporter.export(group).await;
                if result.is_ok() {
                    result = r;
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let mut result = Ok(());
        for (_, exporter) in &self.routes {
            let r = exporter.shutdown_with_timeout(timeout);
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        let mut result = Ok(());
        for (_, exporter) in &self.routes {
            let r = exporter.force_flush();
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        for (service, exporter) in &mut self.routes {
            let attributes = resource
                .iter()
                .filter(|(k, _)| k.as_str() != SERVICE_NAME)
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone()));
            let own = Resource::builder_empty()
                .with_attributes(attributes)
                .with_service_name(service.clone())
                .build();
            exporter.set_resource(&own);
        }
    }
}

/// An exporter that accepts and discards every batch.
#[derive(Debug, Default)]
pub struct DiscardExporter;

impl SpanExporter for DiscardExporter {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}
