//! Judging a run against the scenario's expectations: one [`Verdict`] each.

use tb_load::Followed;
use tb_verify::TraceSummary;

use tb_report::{LatencySection, Verdict};
use tb_scenario::{Hop, Scenario};

/// Judges the scenario's expectations against a run.
pub fn judge(
    scenario: &Scenario,
    offered: u64,
    scans: &Followed,
    latency: &LatencySection,
    traces: Option<&TraceSummary>,
) -> Vec<Verdict> {
    let e = &scenario.expect;
    // Success means accepted and completed end to end; an arrival skipped for max_in_flight
    // counts as offered and not served.
    let success = if offered == 0 {
        0.0
    } else {
        scans.completed as f64 / offered as f64
    };
    let mut verdicts = vec![Verdict {
        name: "expect.min_success_rate".to_owned(),
        expected: e.min_success_rate,
        actual: success,
        passed: offered > 0 && success >= e.min_success_rate,
    }];
    if let Some(max) = e.max_p99_ms {
        let p99 = latency.end_to_end.corrected.p99;
        verdicts.push(Verdict {
            name: "expect.max_p99_ms".to_owned(),
            expected: max,
            actual: p99,
            passed: latency.end_to_end.corrected.count > 0 && p99 <= max,
        });
    }
    if let Some(t) = traces {
        // Spans are collected: every expected trace must be complete unless the scenario lowers
        // the bar (a fault scenario that means to pass sets `min_complete_ratio` and bounds
        // the broken edges with `max_broken` instead).
        let min = e.min_complete_ratio.unwrap_or(1.0);
        verdicts.push(Verdict {
            name: "expect.min_complete_ratio".to_owned(),
            expected: min,
            actual: t.complete_ratio,
            passed: t.complete_ratio >= min,
        });
        for (key, max) in &e.max_broken {
            let broken: u64 = t
                .broken_edges
                .iter()
                .filter(|(edge, _)| edge_matches(key, edge))
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(0);
            verdicts.push(Verdict {
                name: format!("expect.max_broken.{key}"),
                expected: *max as f64,
                actual: broken as f64,
                passed: broken <= *max,
            });
        }
        // An unsampled scan must leave no span anywhere.
        verdicts.push(Verdict {
            name: "traces.stray_spans".to_owned(),
            expected: 0.0,
            actual: t.stray_spans as f64,
            passed: t.stray_spans == 0 || scenario.strip.is_some_and(|(hop, _)| hop == Hop::Http),
        });
    } else if let Some(min) = e.min_complete_ratio {
        verdicts.push(Verdict {
            name: "expect.min_complete_ratio".to_owned(),
            expected: min,
            actual: 0.0,
            passed: false,
        });
    }
    verdicts
}

/// Whether `key` (a full edge label, or `http`, `amqp`, `kafka`) names `edge`.
pub fn edge_matches(key: &str, edge: &str) -> bool {
    let child = edge.rsplit(" → ").next().unwrap_or_default();
    match key {
        "http" => child.contains("POST /v1/"),
        "amqp" | "rabbitmq" => child.ends_with("/process_image"),
        "kafka" => child.ends_with("/process scan.completed"),
        _ => key == edge,
    }
}
