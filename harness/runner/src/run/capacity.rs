//! The saturation search (`load.arrival: {search: …}`): constant load at each rate in turn,
//! each held and drained on its own, until a rate loses a scan, skips or fails a request, or
//! lets the end-to-end p99 past its bound. The highest rate that held is the capacity.
//!
//! The capacity is found wherever it lies. A step that does not hold is tried once more before
//! it counts: on a shared 2-vCPU VM, `off`'s search in `scenarios/overhead.yaml` once read an
//! e2e p99 of 106.9 ms against its 100 ms bound at 500/s, and held 750/s a minute later. When
//! the first rate does not hold either time, the search steps down, halving the rate until one
//! holds, then bisects between that rate and the one above it that failed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tb_load::{Arrival, LoadReport, Plan};
use tb_verify::Scan;

use super::RunError;
use super::generator::{drive, plan};
use super::session::CurrentTracker;
use super::target::ScanTarget;
use tb_report::{CapacitySection, CapacityStep, SpanSummary, Verdict};
use tb_scenario::{CapacitySearch, Scenario};

/// What a search found.
pub(crate) struct Found {
    /// The load report of the highest rate that held (the first failed step's when none did).
    pub(crate) report: LoadReport,
    /// Every step.
    pub(crate) section: CapacitySection,
    /// The scans of the steps that held, to be verified.
    pub(crate) scans: Vec<Scan>,
    /// The trace ids of the steps that did not hold: overloaded on purpose, not judged.
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

/// How many times the search halves a first rate that did not hold before it gives up.
const HALVINGS: u32 = 5;
/// Bisection steps between the rate that held and the one above it that did not, after the
/// search stepped down.
const BISECTIONS: u32 = 2;

/// Runs the search: step after step as [`Course`] decides, until it ends or the scenario's
/// `duration` is spent.
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
    let mut s = Searching {
        scenario,
        search,
        target,
        trackers,
        counted,
        quiet,
        began: Instant::now(),
        // A step's scans have as long to finish as the scenario's slowest scan can take
        // (retries and their backoffs included); a step that holds is drained long before that.
        drain: plan(scenario).drain,
        tried: 0,
        steps: Vec::new(),
        best: None,
        failed: None,
        scans: Vec::new(),
        unjudged: HashSet::new(),
        spans: None,
    };
    let mut course = Course::new(*search);
    let mut held = None;
    while let Some(next) = course.next(held) {
        if s.out_of_time() {
            break;
        }
        held = Some(s.step(next).await?);
    }
    Ok(s.found())
}

/// One step the search takes: a rate, and whether it is that rate's second try.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Try {
    pub(crate) rate: f64,
    pub(crate) retry: bool,
}

/// Where the search is: going up the scenario's rates, halving down from a first rate that
/// did not hold, or bisecting between a rate that held and the one above it that did not.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// At the `n`-th rate of [`CapacitySearch::rates`].
    Up(usize),
    /// Halving; `halvings` done so far.
    Down { halvings: u32 },
    /// Between `low` (held) and `high` (did not); `left` steps to go after this one.
    Bisect { low: f64, high: f64, left: u32 },
}

/// The search's decisions, apart from driving any load: given how the last step went, the
/// next rate to try.
#[derive(Clone, Debug)]
pub(crate) struct Course {
    search: CapacitySearch,
    phase: Phase,
    last: Option<Try>,
}

impl Course {
    pub(crate) fn new(search: CapacitySearch) -> Self {
        Self {
            search,
            phase: Phase::Up(0),
            last: None,
        }
    }

    /// The next step after the last one held (`Some(true)`) or did not; `None` for the first.
    /// `None` when the search is over.
    pub(crate) fn next(&mut self, held: Option<bool>) -> Option<Try> {
        let next = self.decide(held);
        self.last = next;
        next
    }

    fn decide(&mut self, held: Option<bool>) -> Option<Try> {
        let first = |rate| Some(Try { rate, retry: false });
        let Some((last, held)) = self.last.zip(held) else {
            return self.search.rates().next().and_then(first);
        };
        if !held && !last.retry {
            return Some(Try {
                rate: last.rate,
                retry: true,
            });
        }
        match self.phase {
            Phase::Up(n) if held => {
                self.phase = Phase::Up(n + 1);
                self.search.rates().nth(n + 1).and_then(first)
            }
            // Only a first rate that does not hold sends the search down; a later one is the
            // capacity's upper edge.
            Phase::Up(0) => {
                self.phase = Phase::Down { halvings: 1 };
                first(last.rate / 2.0)
            }
            Phase::Up(_) => None,
            Phase::Down { halvings } if !held => {
                if halvings >= HALVINGS {
                    return None;
                }
                self.phase = Phase::Down {
                    halvings: halvings + 1,
                };
                first(last.rate / 2.0)
            }
            Phase::Down { .. } => self.bisect(last.rate, last.rate * 2.0, BISECTIONS),
            Phase::Bisect { low, high, left } => {
                let (low, high) = if held {
                    (last.rate, high)
                } else {
                    (low, last.rate)
                };
                self.bisect(low, high, left)
            }
        }
    }

    fn bisect(&mut self, low: f64, high: f64, left: u32) -> Option<Try> {
        if left == 0 {
            return None;
        }
        self.phase = Phase::Bisect {
            low,
            high,
            left: left - 1,
        };
        Some(Try {
            rate: (low + high) / 2.0,
            retry: false,
        })
    }
}

/// The most steps a search of `search` can take: every rate tried twice, and the step-down's.
pub fn most_steps(search: &CapacitySearch) -> u32 {
    let rates = search.rates().count() as u32;
    2 * (rates.max(1) + HALVINGS + BISECTIONS)
}

/// A search under way.
struct Searching<'a> {
    scenario: &'a Scenario,
    search: &'a CapacitySearch,
    target: &'a Arc<ScanTarget>,
    trackers: &'a CurrentTracker,
    counted: &'a dyn Fn() -> SpanSummary,
    quiet: bool,
    began: Instant,
    drain: Duration,
    /// Steps driven so far (each seeds its load apart).
    tried: u64,
    steps: Vec<CapacityStep>,
    /// The report of the highest rate that held.
    best: Option<(f64, LoadReport)>,
    /// The report of the first step that did not hold.
    failed: Option<LoadReport>,
    scans: Vec<Scan>,
    unjudged: HashSet<String>,
    spans: Option<SpanSummary>,
}

impl Searching<'_> {
    /// Whether another step would overrun the scenario's `duration` (the first always runs).
    fn out_of_time(&self) -> bool {
        self.tried > 0 && self.began.elapsed() + self.search.hold > self.scenario.duration
    }

    /// Drives one step; returns whether it held.
    async fn step(&mut self, Try { rate, retry }: Try) -> Result<bool, RunError> {
        let plan = Plan {
            load: tb_load::Load {
                arrival: Arrival::Constant { rate },
                ..self.scenario.load
            },
            warmup: Duration::ZERO,
            duration: self.search.hold,
            seed: self.scenario.seed.wrapping_add(self.tried),
            drain: self.drain,
        };
        self.tried += 1;
        let report = drive(plan, self.target.clone(), self.trackers.renew(), true).await?;
        let step_scans = self.target.take().0;
        let passed = held(&report, self.search.max_p99_ms);
        if !self.quiet {
            eprintln!(
                "tracebench: search {rate:.0}/s{}: served {:.0}/s, e2e p99 {:.1} ms, lost {}, skipped {}, failed {}: {}",
                if retry { " (again)" } else { "" },
                report.throughput_rps,
                report.end_to_end.corrected.p99,
                report.followed.lost,
                report.requests.skipped,
                report.requests.failed,
                if passed { "held" } else { "did not hold" }
            );
        }
        self.steps.push(CapacityStep {
            rate,
            throughput_rps: report.throughput_rps,
            p99_ms: report.end_to_end.corrected.p99,
            scans: report.followed,
            requests: report.requests,
            passed,
            retry,
        });
        if passed {
            self.scans.extend(step_scans);
            if self.best.as_ref().is_none_or(|(best, _)| rate > *best) {
                self.spans = Some((self.counted)());
                self.best = Some((rate, report));
            }
        } else {
            // Overloaded on purpose: its traces are not judged.
            self.unjudged
                .extend(step_scans.into_iter().map(|s| s.trace_id));
            if self.failed.is_none() {
                self.failed = Some(report);
            }
        }
        Ok(passed)
    }

    fn found(self) -> Found {
        let max_rate = self.best.as_ref().map(|(rate, _)| *rate);
        Found {
            report: self
                .best
                .map(|(_, r)| r)
                .or(self.failed)
                .unwrap_or_default(),
            section: CapacitySection {
                max_p99_ms: self.search.max_p99_ms,
                max_rate,
                steps: self.steps,
            },
            scans: self.scans,
            unjudged: self.unjudged,
            spans: self.spans,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn search(from: f64, to: f64, step: f64) -> CapacitySearch {
        CapacitySearch {
            from,
            to,
            step,
            hold: Duration::from_secs(1),
            max_p99_ms: 100.0,
        }
    }

    /// The steps a search takes against a pipeline whose answer at each try is `holds`.
    fn course(search: CapacitySearch, mut holds: impl FnMut(Try) -> bool) -> Vec<(f64, bool)> {
        let mut course = Course::new(search);
        let (mut held, mut steps) = (None, Vec::new());
        while let Some(next) = course.next(held) {
            let h = holds(next);
            steps.push((next.rate, h));
            held = Some(h);
            assert!(steps.len() <= most_steps(&search) as usize, "{steps:?}");
        }
        steps
    }

    #[test]
    fn the_search_climbs_until_a_rate_fails_twice() {
        let steps = course(search(100.0, 500.0, 100.0), |t| t.rate <= 300.0);
        assert_eq!(
            steps,
            [
                (100.0, true),
                (200.0, true),
                (300.0, true),
                (400.0, false),
                (400.0, false)
            ]
        );
    }

    #[test]
    fn a_noisy_step_is_tried_again_and_the_climb_goes_on() {
        let mut noisy = true;
        let steps = course(search(100.0, 300.0, 100.0), |t| {
            if t.rate == 200.0 && noisy {
                noisy = false;
                return false;
            }
            true
        });
        let rates: Vec<f64> = steps.iter().map(|s| s.0).collect();
        assert_eq!(rates, [100.0, 200.0, 200.0, 300.0]);
    }

    #[test]
    fn a_first_rate_too_high_steps_down_then_bisects() {
        // The pipeline holds up to 300/s; the search starts at 1000.
        let steps = course(search(1000.0, 2000.0, 250.0), |t| t.rate <= 300.0);
        let rates: Vec<f64> = steps.iter().map(|s| s.0).collect();
        assert_eq!(
            rates,
            [
                1000.0, 1000.0, 500.0, 500.0, 250.0, 375.0, 375.0, 312.5, 312.5
            ]
        );
        let best = steps
            .iter()
            .filter(|s| s.1)
            .map(|s| s.0)
            .fold(0.0, f64::max);
        assert_eq!(best, 250.0);
    }

    #[test]
    fn the_step_down_gives_up_after_its_halvings() {
        let steps = course(search(1000.0, 2000.0, 250.0), |_| false);
        assert_eq!(steps.len(), 2 * (1 + HALVINGS as usize));
        assert_eq!(steps.last().map(|s| s.0), Some(1000.0 / 32.0));
    }
}
