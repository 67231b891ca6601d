//! Which service a span belongs to when several services share one process
//! (`tracebench service all`).
//!
//! `service.name` is a resource attribute, one per tracer provider, while the `tracing` bridge
//! drives a single tracer. So each service runs its work inside [`scope`], a tokio task-local
//! naming the service; a span processor stamps that name on every span as it starts, and the
//! exporter routes each span to an inner exporter whose resource carries that service's name.
//! Spawned tasks do not inherit task-locals: wrap what you spawn with [`scope`] (or
//! [`in_current`]) as well.

use std::future::Future;

tokio::task_local! {
    static SERVICE: &'static str;
}

/// Runs `fut` as work of `service`: spans that start inside it belong to that service.
pub fn scope<F: Future>(service: &'static str, fut: F) -> impl Future<Output = F::Output> {
    SERVICE.scope(service, fut)
}

/// Runs `fut` in the service of the calling task, if any; use it for futures handed to
/// `tokio::spawn`.
pub fn in_current<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let service = current();
    async move {
        match service {
            Some(service) => SERVICE.scope(service, fut).await,
            None => fut.await,
        }
    }
}

/// The service of the calling task, when it runs inside [`scope`].
pub fn current() -> Option<&'static str> {
    SERVICE.try_with(|s| *s).ok()
}

/// One exported span with the `service.name` of the resource it was exported under.
#[derive(Clone, Debug)]
pub struct FinishedSpan {
    /// `service.name` of the span's resource.
    pub service: String,
    /// The span as the SDK exported it.
    pub span: opentelemetry_sdk::trace::SpanData,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scope_names_the_service_and_spawned_work_keeps_it_only_when_wrapped() {
        assert_eq!(current(), None);
        scope("worker", async {
            assert_eq!(current(), Some("worker"));
            let wrapped = tokio::spawn(in_current(async { current() }));
            let bare = tokio::spawn(async { current() });
            assert_eq!(wrapped.await.ok(), Some(Some("worker")));
            assert_eq!(bare.await.ok(), Some(None));
        })
        .await;
    }
}
