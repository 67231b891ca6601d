//! The saturation search (`load.arrival: {search: …}`): constant load at each rate in turn,
//! each held and drained on its own, until a rate loses a scan, skips or fails a request, or
//! lets the end-to-end p99 past its bound. The highest rate that held is the capacity.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tb_load::{Arrival, LoadReport, Plan};
use tb_verify::Scan;

use super::target::ScanTarget;
use super::{CurrentTracker, RunError, drive};
use crate::report::{CapacitySection, CapacityStep, SpanSummary, Verdict};
use crate::scenario::{CapacitySearch, Scenario};

/// What a search found.
pub(crate) struct Found {
    /// The load report of the highest rate that held (the first step's when none did).
    pub(crate) report: LoadReport,
    /// Every step.
    pub(crate) section: CapacitySection,
    /// The scans of the steps that held, to be verified.
    pub(crate) scans: Vec<Scan>,
    /// The trace ids of the step that did not hold: overloaded on purpose, not judged.
    pub(crate) unjudged: HashSet<String>,
    /// This process's span counts at the end of the last step that held.
    pub(crate) spans: Option<SpanSummary>,
}

/// Whether a step held.
fn held(report: &LoadReport, max_p99_ms: f64) -> bool {
    let r = &report.requests;
    let s = &report.followed;
    s.accepted > 0
        && s.lost == 0
        && r.skipped == 0
        && r.failed == 0
        && report.end_to_end.corrected.p99 <= max_p99_ms
}

/// Runs the search: step after step, until one does not hold, the last rate was tried, or the
/// scenario's `duration` is spent.
///
/// # Errors
///
/// Fails when the load generator cannot run.
pub(crate) async fn search(
    scenario: &Scenario,
    search: &CapacitySearch,
    target: &Arc<ScanTarget>,
    trackers: &CurrentTracker,
    counted: &dyn Fn() -> SpanSummary,
    quiet: bool,
) -> Result<Found, RunError> {
    let mut spans = None;
    let began = Instant::now();
    // A step's scans have as long to finish as the scenario's slowest scan can take (retries
    // and their backoffs included); a step that holds is drained long before that.
    let drain = super::plan(scenario).drain;
    let mut steps = Vec::new();
    // The search stops at the first step that does not hold, so when none held, the step
    // that did not is the first.
    let mut best: Option<LoadReport> = None;
    let mut failed: Option<LoadReport> = None;
    let mut scans = Vec::new();
    let mut unjudged = HashSet::new();
    for (i, rate) in search.rates().enumerate() {
        if began.elapsed() + search.hold > scenario.duration && i > 0 {
            break;
        }
        let plan = Plan {
            load: tb_load::Load {
                arrival: Arrival::Constant { rate },
                ..scenario.load
            },
            warmup: Duration::ZERO,
            duration: search.hold,
            seed: scenario.seed.wrapping_add(i as u64),
            drain,
        };
        let report = drive(plan, target.clone(), trackers.renew(), true).await?;
        let step_scans = target.take().0;
        let passed = held(&report, search.max_p99_ms);
        if !quiet {
            eprintln!(
                "tracebench: search {rate:.0}/s: served {:.0}/s, e2e p99 {:.1} ms, lost {}, skipped {}, failed {}: {}",
                report.throughput_rps,
                report.end_to_end.corrected.p99,
                report.followed.lost,
                report.requests.skipped,
                report.requests.failed,
                if passed { "held" } else { "did not hold" }
            );
        }
        steps.push(CapacityStep {
            rate,
            throughput_rps: report.throughput_rps,
            p99_ms: report.end_to_end.corrected.p99,
            scans: report.followed,
            requests: report.requests,
            passed,
        });
        if !passed {
            unjudged.extend(step_scans.into_iter().map(|s| s.trace_id));
            failed = Some(report);
            break;
        }
        scans.extend(step_scans);
        spans = Some(counted());
        best = Some(report);
    }
    let max_rate = steps.iter().take_while(|s| s.passed).map(|s| s.rate).last();
    Ok(Found {
        report: best.or(failed).unwrap_or_default(),
        section: CapacitySection {
            max_p99_ms: search.max_p99_ms,
            max_rate,
            steps,
        },
        scans,
        unjudged,
        spans,
    })
}

/// The search's own expectation: some rate held.
pub(crate) fn verdict(c: &CapacitySection) -> Verdict {
    Verdict {
        name: "capacity.max_rate".to_owned(),
        expected: c.steps.first().map_or(0.0, |s| s.rate),
        actual: c.max_rate.unwrap_or(0.0),
        passed: c.max_rate.is_some(),
    }
}
