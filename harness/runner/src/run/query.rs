//! Reading a run's traces through a Tempo-shaped query API (a real Tempo, or a sink in another
//! process) so that the verdict matches the embedded store's.
//!
//! Each sampled scan's trace is fetched by id, many at a time. A trace that still lacks an
//! expected span may be a context lost on the way: the receiver then started a trace of its own,
//! which no by-id query of the scan's trace finds. So the scan's task id is looked up by tag
//! search on `messaging.message.id` (every receiver records it, whichever trace it is in), and
//! the traces found are fetched too; the judge then sees the broken edge, as it does from the
//! embedded store. A scan is polled, round after round, until its unit (its trace and the
//! strays of its task) is settled or the deadline passes; a scan whose trace the backend never
//! returned is "not yet queryable", reported on its own and never judged as missing spans.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tb_traces::{Span, TraceClient};
use tb_verify::{Problem, Scan, Template};
use tokio::time::Instant;

/// Requests in flight at once: enough to hide each round trip, few enough not to crowd a
/// backend that is still ingesting.
const IN_FLIGHT: usize = 16;
/// The pause between rounds for the scans not yet settled.
const POLL: Duration = Duration::from_millis(250);
/// Traces asked of one search: a task's receivers start one each, redeliveries a few more.
const STRAY_LIMIT: usize = 20;
/// The attribute in which each receiver of a task records its id.
const MESSAGE_ID: &str = "messaging.message.id";

/// What the query API gave.
#[derive(Debug, Default)]
pub(crate) struct Queried {
    /// Every span of the scans' traces and of the stray traces found for their tasks.
    pub spans: Vec<Span>,
    /// Trace ids of the scans whose trace the backend never returned before the deadline.
    pub not_queryable: HashSet<String>,
    /// Traces fetched by id, over every round.
    pub fetches: u64,
    /// Tag searches made.
    pub searches: u64,
}

/// Whether a unit with these problems is worth judging now: a missing span, a client without
/// its server, or an orphan may still arrive; a broken edge or a wrong parent will not change.
fn settled(problems: &[Problem]) -> bool {
    !problems.iter().any(|p| {
        matches!(
            p,
            Problem::MissingSpan(_) | Problem::MissingServer(_) | Problem::Orphan(_)
        )
    })
}

/// The traces read so far, by id, and the stray traces found for each task.
#[derive(Default)]
struct Read {
    traces: HashMap<String, Vec<Span>>,
    strays: HashMap<String, Vec<String>>,
}

impl Read {
    /// Whether `scan`'s trace arrived and its unit leaves nothing to wait for.
    fn settled(&self, template: &Template, scan: &Scan) -> bool {
        let Some(own) = self.traces.get(&scan.trace_id) else {
            return false;
        };
        let strays = self.strays.get(&scan.task_id).into_iter().flatten();
        let unit: Vec<Span> = own
            .iter()
            .chain(strays.filter_map(|t| self.traces.get(t)).flatten())
            .cloned()
            .collect();
        let (_, verdicts) = tb_verify::judge(template, std::slice::from_ref(scan), &unit, |_| true);
        verdicts.first().is_some_and(|v| settled(&v.problems))
    }
}

/// Fetches these traces by id, [`IN_FLIGHT`] at a time; a trace not found, or a failed fetch
/// (retried next round), is left out.
async fn fetch(client: &TraceClient, ids: Vec<String>) -> Vec<(String, Vec<Span>)> {
    stream::iter(ids)
        .map(|id| async move {
            let spans = client.trace(&id).await.ok().flatten();
            spans.map(|s| (id, s))
        })
        .buffer_unordered(IN_FLIGHT)
        .filter_map(|found| async move { found })
        .collect()
        .await
}

/// The traces other than its own that carry each task's id.
async fn search(client: &TraceClient, scans: &[&Scan]) -> Vec<(String, Vec<String>)> {
    stream::iter(scans)
        .map(|scan| async move {
            let hits = client
                .search(&[(MESSAGE_ID, scan.task_id.as_str())], STRAY_LIMIT)
                .await
                .unwrap_or_default();
            let others = hits
                .into_iter()
                .map(|h| h.trace_id)
                .filter(|t| *t != scan.trace_id)
                .collect();
            (scan.task_id.clone(), others)
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await
}

/// Reads `scans`' traces, and the stray traces of those that lack spans, until every scan is
/// settled or `deadline` passes.
pub(crate) async fn read(
    client: &TraceClient,
    template: &Template,
    scans: &[&Scan],
    deadline: Instant,
) -> Queried {
    let mut read = Read::default();
    let mut queried = Queried::default();
    let mut pending: Vec<&Scan> = scans.to_vec();
    loop {
        let own: Vec<String> = pending.iter().map(|s| s.trace_id.clone()).collect();
        queried.fetches += own.len() as u64;
        read.traces.extend(fetch(client, own).await);
        pending.retain(|s| !read.settled(template, s));
        // Only a trace that arrived can tell that something is missing from it.
        let short: Vec<&Scan> = pending
            .iter()
            .copied()
            .filter(|s| read.traces.contains_key(&s.trace_id))
            .collect();
        queried.searches += short.len() as u64;
        let found = search(client, &short).await;
        let stray_ids: Vec<String> = found.iter().flat_map(|(_, t)| t.clone()).collect();
        read.strays.extend(found);
        queried.fetches += stray_ids.len() as u64;
        read.traces.extend(fetch(client, stray_ids).await);
        pending.retain(|s| !read.settled(template, s));
        if pending.is_empty() || Instant::now() + POLL > deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    queried.not_queryable = pending
        .iter()
        .filter(|s| !read.traces.contains_key(&s.trace_id))
        .map(|s| s.trace_id.clone())
        .collect();
    queried.spans = read.traces.into_values().flatten().collect();
    queried
}

#[cfg(test)]
mod tests {
    use tb_traces::sink::{self, SinkConfig};
    use tb_verify::Relation;

    use super::*;

    #[test]
    fn only_missing_spans_servers_and_orphans_are_worth_waiting_for() {
        assert!(settled(&[]));
        assert!(settled(&[Problem::BrokenEdge("a → b".into())]));
        assert!(settled(&[Problem::WrongParent("a ← b".into())]));
        for waiting in [
            Problem::MissingSpan("a".into()),
            Problem::MissingServer("a → b".into()),
            Problem::Orphan("a".into()),
        ] {
            assert!(
                !settled(&[Problem::BrokenEdge("x".into()), waiting.clone()]),
                "{waiting:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_trace_the_backend_never_returns_is_not_queryable_and_polled_until_the_deadline() {
        let sink = sink::start(SinkConfig {
            grpc_addr: "127.0.0.1:0".parse().expect("addr"),
            http_addr: "127.0.0.1:0".parse().expect("addr"),
            limits: sink::Limits::spans(100),
        })
        .await
        .expect("sink starts");
        let scan = Scan {
            task_id: "task-1".to_owned(),
            trace_id: "0af7651916cd43dd8448eb211c80319c".to_owned(),
        };
        let template = Template::seed_pipeline(Relation::Child);
        let deadline = Instant::now() + Duration::from_millis(700);
        let queried = read(&sink.client(), &template, &[&scan], deadline).await;
        assert_eq!(
            queried.not_queryable,
            HashSet::from([scan.trace_id.clone()])
        );
        assert!(queried.spans.is_empty());
        assert!(queried.fetches >= 2, "asked again: {}", queried.fetches);
        assert_eq!(
            queried.searches, 0,
            "nothing to search for without the trace"
        );
    }
}
