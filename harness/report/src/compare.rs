//! `tracebench compare BASE CAND`: does a candidate's result hold against a base's? Both are
//! `result.json` files (`tracebench run`) or both `overhead.json` files (`tracebench
//! overhead`); each check compares one figure under a threshold, and any check that does not
//! hold is a regression (exit 1).
//!
//! The defaults respect what this bench's own noise was measured to be: a run's e2e p99 moves
//! by tens of percent between identical runs on a shared 2-core machine, so it gets a wide
//! bound; counts that should be zero (broken edges, stray spans, lost spans and scans) get
//! none; CPU per scan counts as regressed only past both the relative bound and the two
//! arms' mean interquartile range, so a noisy pair of arms does not fail a pull request.

use std::fmt::Write as _;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::overhead::schema::{OverheadResult, TOTAL};
use crate::{RunResult, xml_escape};

/// The thresholds of a comparison.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Largest relative drop in throughput, and rise in CPU per scan, allowed (0.05 = 5 %).
    pub max_regression: f64,
    /// Largest relative rise in corrected end-to-end p99 allowed.
    pub max_p99_regression: f64,
    /// Largest absolute drop in the complete-trace ratio allowed (0.01 = one point).
    pub max_complete_drop: f64,
    /// Largest rise allowed in counts that should stay at zero: broken edges, stray spans,
    /// lost spans, lost scans.
    pub max_count_increase: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            max_regression: 0.05,
            max_p99_regression: 0.25,
            max_complete_drop: 0.01,
            max_count_increase: 0,
        }
    }
}

/// Parses a share given as a percentage (`5%`, `5`) into a fraction (0.05).
///
/// # Errors
///
/// A message for the command line when it is not a number from 0 upwards.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%').trim();
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v / 100.0),
        _ => Err(format!("{text:?} is not a percentage such as 5%")),
    }
}

/// One figure compared.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// What was compared (`traces.complete_ratio`, `overhead.always_on+otlp.cpu_us_per_scan`).
    pub name: String,
    /// The base's figure.
    pub base: f64,
    /// The candidate's figure.
    pub candidate: f64,
    /// The limit the candidate had to stay within, in words (`≥ 0.99`).
    pub limit: String,
    /// Whether it did.
    pub held: bool,
}

/// What `compare` found.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// `run` or `overhead`.
    pub kind: &'static str,
    /// Every check.
    pub checks: Vec<Check>,
    /// What could not be compared, and why (an arm missing from one side).
    pub notes: Vec<String>,
}

impl Comparison {
    /// The checks that did not hold.
    pub fn regressions(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.held)
    }
}

/// Why two files could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A file could not be read.
    #[error("reading {0}: {1}")]
    Read(String, std::io::Error),
    /// A file is not a result of either kind.
    #[error("{0} is not a tracebench result.json or overhead.json: {1}")]
    Parse(String, String),
    /// The files are of different kinds.
    #[error("{0} is a {1} result but {2} is a {3} result; compare like with like")]
    Kinds(String, &'static str, String, &'static str),
}

enum Loaded {
    Run(Box<RunResult>),
    Overhead(Box<OverheadResult>),
}

impl Loaded {
    fn kind(&self) -> &'static str {
        match self {
            Self::Run(_) => "run",
            Self::Overhead(_) => "overhead",
        }
    }
}

fn load(path: &Path) -> Result<Loaded, CompareError> {
    let name = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| CompareError::Read(name.clone(), e))?;
    let value: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| CompareError::Parse(name.clone(), e.to_string()))?;
    fn typed<T: DeserializeOwned>(v: serde_json::Value, name: &str) -> Result<T, CompareError> {
        serde_json::from_value(v).map_err(|e| CompareError::Parse(name.to_owned(), e.to_string()))
    }
    if value.get("overhead_schema_version").is_some() {
        Ok(Loaded::Overhead(Box::new(typed(value, &name)?)))
    } else if value.get("schema_version").is_some() {
        Ok(Loaded::Run(Box::new(typed(value, &name)?)))
    } else {
        Err(CompareError::Parse(
            name,
            "it has neither schema_version nor overhead_schema_version".to_owned(),
        ))
    }
}

/// Compares the result at `candidate` against the one at `base`.
///
/// # Errors
///
/// Fails when a file cannot be read or parsed, or the two are of different kinds.
pub fn compare(base: &Path, candidate: &Path, t: Thresholds) -> Result<Comparison, CompareError> {
    match (load(base)?, load(candidate)?) {
        (Loaded::Run(b), Loaded::Run(c)) => Ok(compare_runs(&b, &c, t)),
        (Loaded::Overhead(b), Loaded::Overhead(c)) => Ok(compare_overhead(&b, &c, t)),
        (b, c) => Err(CompareError::Kinds(
            base.display().to_string(),
            b.kind(),
            candidate.display().to_string(),
            c.kind(),
        )),
    }
}

/// The candidate must stay at most (`true`) or at least (`false`) at `limit`.
fn bounded(name: &str, base: f64, candidate: f64, limit: f64, at_most: bool) -> Check {
    Check {
        name: name.to_owned(),
        base,
        candidate,
        limit: format!("{} {limit:.4}", if at_most { "≤" } else { "≥" }),
        held: if at_most {
            candidate <= limit
        } else {
            candidate >= limit
        },
    }
}

fn at_most(name: &str, base: f64, candidate: f64, limit: f64) -> Check {
    bounded(name, base, candidate, limit, true)
}

fn at_least(name: &str, base: f64, candidate: f64, limit: f64) -> Check {
    bounded(name, base, candidate, limit, false)
}

/// Run results: propagation (complete ratio, broken edges, stray spans), telemetry loss, lost
/// scans, e2e p99 and throughput.
pub fn compare_runs(b: &RunResult, c: &RunResult, t: Thresholds) -> Comparison {
    let mut checks = Vec::new();
    let mut notes = Vec::new();
    let count = |name: &str, base: u64, cand: u64| {
        at_most(
            name,
            base as f64,
            cand as f64,
            (base + t.max_count_increase) as f64,
        )
    };
    match (&b.traces, &c.traces) {
        (Some(bt), Some(ct)) => {
            let (bs, cs) = (&bt.summary, &ct.summary);
            checks.push(at_least(
                "traces.complete_ratio",
                bs.complete_ratio,
                cs.complete_ratio,
                bs.complete_ratio - t.max_complete_drop,
            ));
            checks.push(count(
                "traces.broken_edges",
                bs.broken_edges.values().sum(),
                cs.broken_edges.values().sum(),
            ));
            checks.push(count("traces.stray_spans", bs.stray_spans, cs.stray_spans));
            checks.push(count(
                "traces.telemetry_loss",
                bs.telemetry_loss,
                cs.telemetry_loss,
            ));
        }
        _ => notes.push(
            "traces: not compared (a side collected no spans: sampling off or a discard exporter)"
                .to_owned(),
        ),
    }
    checks.push(count("spans.lost", b.spans.lost(), c.spans.lost()));
    checks.push(count("scans.lost", b.scans.lost, c.scans.lost));
    let (bp, cp) = (
        b.latency.end_to_end.corrected.p99,
        c.latency.end_to_end.corrected.p99,
    );
    checks.push(at_most(
        "latency.end_to_end.p99_ms",
        bp,
        cp,
        bp * (1.0 + t.max_p99_regression),
    ));
    checks.push(at_least(
        "throughput_rps",
        b.throughput_rps,
        c.throughput_rps,
        b.throughput_rps * (1.0 - t.max_regression),
    ));
    Comparison {
        kind: "run",
        checks,
        notes,
    }
}

/// Overhead results: each arm's total CPU per scan, arm by arm by name.
pub fn compare_overhead(b: &OverheadResult, c: &OverheadResult, t: Thresholds) -> Comparison {
    let mut checks = Vec::new();
    let mut notes = Vec::new();
    for arm in &b.arms {
        let Some(theirs) = c.arms.iter().find(|a| a.name == arm.name) else {
            notes.push(format!("arm {}: not in the candidate", arm.name));
            continue;
        };
        let (Some(bs), Some(cs)) = (
            arm.cpu_us_per_scan.get(TOTAL),
            theirs.cpu_us_per_scan.get(TOTAL),
        ) else {
            notes.push(format!("arm {}: no CPU figures", arm.name));
            continue;
        };
        let allowed = (bs.median * t.max_regression).max((bs.iqr + cs.iqr) / 2.0);
        checks.push(at_most(
            &format!("overhead.{}.cpu_us_per_scan", arm.name),
            bs.median,
            cs.median,
            bs.median + allowed,
        ));
    }
    for arm in &c.arms {
        if !b.arms.iter().any(|a| a.name == arm.name) {
            notes.push(format!("arm {}: not in the base", arm.name));
        }
    }
    Comparison {
        kind: "overhead",
        checks,
        notes,
    }
}

/// The comparison for the terminal: every check, regressions marked.
pub fn render(c: &Comparison) -> String {
    let mut out = String::new();
    // `writeln!` to a `String` cannot fail; the results are ignored for that reason.
    for check in &c.checks {
        let _ = writeln!(
            out,
            "{:<10} {:<44} base {:>12.4}  candidate {:>12.4}  ({})",
            if check.held { "ok" } else { "REGRESSION" },
            check.name,
            check.base,
            check.candidate,
            check.limit
        );
    }
    for note in &c.notes {
        let _ = writeln!(out, "note       {note}");
    }
    let regressions = c.regressions().count();
    let _ = writeln!(
        out,
        "{} {} checks: {}",
        c.kind,
        c.checks.len(),
        if regressions == 0 {
            "the candidate holds".to_owned()
        } else {
            format!("{regressions} regression(s)")
        }
    );
    out
}

/// JUnit XML: one test case per check.
pub fn junit(c: &Comparison) -> String {
    let failures = c.regressions().count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites><testsuite name=\"tracebench.compare.{}\" tests=\"{}\" failures=\"{failures}\">",
        c.kind,
        c.checks.len()
    );
    for check in &c.checks {
        let _ = write!(
            x,
            "  <testcase classname=\"tracebench.compare.{}\" name=\"{}\">",
            c.kind,
            xml_escape(&check.name)
        );
        if !check.held {
            let message = format!(
                "base {} candidate {} limit {}",
                check.base, check.candidate, check.limit
            );
            let _ = write!(
                x,
                "<failure message=\"{m}\">{m}</failure>",
                m = xml_escape(&message)
            );
        }
        x.push_str("</testcase>\n");
    }
    x.push_str("</testsuite></testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::overhead::schema::{ArmResult, Machine};
    use crate::overhead::stats::Spread;

    #[test]
    fn percentages_parse_with_or_without_the_sign() {
        assert_eq!(parse_percent("5%"), Ok(0.05));
        assert_eq!(parse_percent("12.5"), Ok(0.125));
        assert!(parse_percent("-1%").is_err());
        assert!(parse_percent("five").is_err());
    }

    fn arm(name: &str, median: f64, iqr: f64) -> ArmResult {
        ArmResult {
            name: name.to_owned(),
            sampler: "always_on".to_owned(),
            exporter: "otlp".to_owned(),
            synthetic_span_cost_us: 0.0,
            repeats: Vec::new(),
            cpu_us_per_scan: BTreeMap::from([(TOTAL.to_owned(), Spread { median, iqr })]),
            vs_off: None,
            vs_off_by_service: BTreeMap::new(),
            spans_per_scan: 0.0,
            added_us_per_span: None,
            e2e_p50_ms: Spread::default(),
            e2e_p99_ms: Spread::default(),
            throughput_rps: Spread::default(),
            otlp_bytes_per_scan: Spread::default(),
            switches_per_scan: None,
        }
    }

    fn overhead(arms: Vec<ArmResult>) -> OverheadResult {
        OverheadResult {
            overhead_schema_version: 1,
            scenario: "o".to_owned(),
            seed: 1,
            started_at: String::new(),
            machine: Machine::default(),
            rate_rps: 100.0,
            off_saturation_rps: None,
            warmup_s: 1.0,
            duration_s: 1.0,
            ci_method: String::new(),
            order: Vec::new(),
            arms,
            per_hop_us: None,
            self_test: Vec::new(),
        }
    }

    #[test]
    fn cpu_regresses_only_past_both_the_bound_and_the_noise() {
        let base = overhead(vec![arm("off", 500.0, 4.0), arm("on", 600.0, 4.0)]);
        let same = compare_overhead(&base, &base, Thresholds::default());
        assert_eq!(same.regressions().count(), 0);
        // +4 % on `off`: inside 5 %. +10 % on `on`: a regression.
        let worse = overhead(vec![arm("off", 520.0, 4.0), arm("on", 660.0, 4.0)]);
        let c = compare_overhead(&base, &worse, Thresholds::default());
        let names: Vec<&str> = c.regressions().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["overhead.on.cpu_us_per_scan"]);
        // The same +10 % with IQRs of 80 µs is noise.
        let noisy_base = overhead(vec![arm("on", 600.0, 80.0)]);
        let noisy = overhead(vec![arm("on", 660.0, 80.0), arm("new", 1.0, 0.0)]);
        let c = compare_overhead(&noisy_base, &noisy, Thresholds::default());
        assert_eq!(c.regressions().count(), 0);
        assert_eq!(c.notes, ["arm new: not in the base"]);
        assert!(junit(&c).contains("tests=\"1\" failures=\"0\""));
    }
}
