//! Reading the run's spans back and judging them: every scan per edge, latency attributed over
//! the complete ones, the median and slowest waterfalls.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tb_traces::Span;
use tb_traces::TraceClient;
use tb_traces::sink::TraceStore;
use tb_verify::{
    Attribution, CriticalPath, Scan, ScanVerdict, Waterfall, attribute_paths, critical_path,
};

use super::query;
use tb_report::TracesSection;
use tb_scenario::Scenario;

/// How long the query path waits for a scan's trace to settle after the load: Tempo's
/// ingesters take a few seconds after the exporters' last batch.
const QUERY_DEADLINE: Duration = Duration::from_secs(30);

/// Where the run's spans can be read after the load.
#[derive(Clone)]
pub enum SpanSource {
    /// The embedded sink's store, in this process.
    Store(Arc<TraceStore>),
    /// A Tempo-shaped query API (real Tempo, or a sink elsewhere).
    Query(TraceClient),
    /// Spans are not collected (sampling off, or a discard exporter).
    None,
}

impl SpanSource {
    /// Spans the source dropped to stay within its bound (the embedded sink's evictions).
    pub fn evicted(&self) -> u64 {
        match self {
            Self::Store(store) => store.stats().spans_evicted,
            Self::Query(_) | Self::None => 0,
        }
    }
}

/// Whether the root of `trace_id` was sampled under the scenario's sampler, decided by the
/// SDK's own sampler so the verifier and the services can never disagree.
fn sampled_by(sampling: tb_telemetry::Sampling) -> impl Fn(&str) -> bool {
    use opentelemetry::trace::{SpanKind, TraceId};
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};
    let sampler = match sampling {
        tb_telemetry::Sampling::Off => None,
        other => tb_telemetry::setup::sampler(other).ok(),
    };
    move |trace_id: &str| {
        let (Some(sampler), Ok(id)) = (&sampler, TraceId::from_hex(trace_id)) else {
            return false;
        };
        sampler
            .should_sample(None, id, "POST /scan", &SpanKind::Server, &[], &[])
            .decision
            == SamplingDecision::RecordAndSample
    }
}

/// Reads the run's spans, judges every scan and attributes latency over the complete ones.
/// With `telemetry_lost` (spans were dropped or evicted), a trace that lost spans is telemetry
/// loss rather than a propagation failure ([`tb_verify::judge_with_loss`]). Spans of the traces in `unjudged` (scans the run drove but does not judge, such as the
/// failing step of a saturation search) are set aside, neither judged nor stray.
pub(crate) async fn verify_traces(
    scenario: &Scenario,
    scans: &[Scan],
    source: &SpanSource,
    probe: Option<&str>,
    unjudged: &HashSet<String>,
    telemetry_lost: bool,
) -> (Option<TracesSection>, Option<Attribution>) {
    let sampled = sampled_by(scenario.tracing.sampling);
    let mut not_queryable = HashSet::new();
    let (spans, name): (Vec<Span>, String) = match source {
        SpanSource::None => return (None, None),
        SpanSource::Store(store) => (store.all(), "embedded".to_owned()),
        SpanSource::Query(client) => {
            // A backend assembles a trace from what it has ingested, so each scan is polled
            // until its unit settles, up to a deadline that leaves room for Tempo's ingest.
            let deadline = tokio::time::Instant::now() + QUERY_DEADLINE;
            let expected: Vec<&Scan> = scans.iter().filter(|s| sampled(&s.trace_id)).collect();
            let queried = query::read(client, &scenario.expect.template, &expected, deadline).await;
            not_queryable = queried.not_queryable;
            (queried.spans, client.base_url().to_owned())
        }
    };
    let spans: Vec<Span> = spans
        .into_iter()
        .filter(|s| !unjudged.contains(&s.trace_id))
        .collect();
    // A scan whose trace the backend never returned is counted on its own, not judged.
    let queryable: Vec<Scan>;
    let scans = if not_queryable.is_empty() {
        scans
    } else {
        queryable = scans
            .iter()
            .filter(|s| !not_queryable.contains(&s.trace_id))
            .cloned()
            .collect();
        &queryable
    };
    let (summary, verdicts) = tb_verify::judge_owned(
        &scenario.expect.template,
        scans,
        spans,
        &sampled,
        telemetry_lost,
    );
    let complete: Vec<&ScanVerdict> = verdicts
        .iter()
        .filter(|v| v.sampled && v.problems.is_empty() && Some(v.task_id.as_str()) != probe)
        .collect();
    // Each critical path once: for the shares, and to rank the traces by length.
    let paths: Vec<(&ScanVerdict, CriticalPath)> = complete
        .iter()
        .filter_map(|v| critical_path(&v.spans).map(|p| (*v, p)))
        .collect();
    let attribution = attribute_paths(paths.iter().map(|(v, p)| (v.spans.as_slice(), p)));
    let mut by_length: Vec<(&CriticalPath, &ScanVerdict)> =
        paths.iter().map(|(v, p)| (p, *v)).collect();
    by_length.sort_by_key(|(p, _)| p.total_ns);
    let median = by_length
        .get(by_length.len() / 2)
        .map(|(p, v)| Waterfall::of(v, p));
    let slowest = by_length.last().map(|(p, v)| Waterfall::of(v, p));
    // The verdicts own every span read: freeing 200 k of them took 0.15 s of the verdict
    // (1.04 s → 0.89 s for 10,000 scans), which it need not wait for.
    drop(by_length);
    drop((paths, complete));
    std::thread::spawn(move || drop(verdicts));
    (
        Some(TracesSection {
            source: name,
            not_queryable: not_queryable.len() as u64,
            summary,
            median,
            slowest,
        }),
        (attribution.scans > 0).then_some(attribution),
    )
}
