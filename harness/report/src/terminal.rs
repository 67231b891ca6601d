//! The terminal summary of a run.

use std::fmt::Write as _;

use tb_verify::Attribution;

use super::schema::{CapacitySection, ProcessUsage, RunResult, TracesSection};
use crate::machine::Machine;

/// The terminal summary.
pub fn summary(r: &RunResult) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "scenario {} (seed {}), {:.0} s measured",
        r.scenario, r.seed, r.duration_s
    );
    let _ = writeln!(
        s,
        "requests  sent {}  ok {}  failed {} (refused {}, timed out {})  late {}  skipped {}   {:.1}/s served of {:.1}/s offered",
        r.requests.sent,
        r.requests.ok,
        r.requests.failed,
        r.requests.refused,
        r.requests.timed_out,
        r.requests.late,
        r.requests.skipped,
        r.throughput_rps,
        r.target_rps
    );
    let _ = writeln!(
        s,
        "scans     accepted {}  completed {}  lost {}",
        r.scans.accepted, r.scans.completed, r.scans.lost
    );
    let _ = write!(
        s,
        "spans     ended {}  exported {}  dropped {}  evicted {}",
        r.spans.ended, r.spans.exported, r.spans.dropped, r.spans.evicted
    );
    let _ = match r.spans.killed_processes {
        0 => writeln!(s),
        n => writeln!(s, "  + what {n} killed process(es) held, uncounted"),
    };
    let _ = writeln!(
        s,
        "\nlatency ms           p50       p90       p99      p99.9       max"
    );
    for (name, l) in r.latency.rows() {
        let _ = writeln!(
            s,
            "{name:<17}{:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>9.1}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
    }
    if !r.processes.is_empty() {
        processes(&mut s, &r.processes);
    }
    if let Some(c) = &r.capacity {
        capacity(&mut s, c, &r.machine);
    }
    if let Some(t) = &r.traces {
        traces(&mut s, t, r.verification_ms);
    }
    if let Some(a) = &r.critical_path {
        critical_path(&mut s, a);
    }
    let _ = writeln!(s);
    for v in &r.expectations {
        let _ = writeln!(
            s,
            "{} {:<26} expected {:<10} got {:.4}",
            if v.passed { "PASS" } else { "FAIL" },
            v.name,
            v.expected,
            v.actual
        );
    }
    for e in &r.sample_errors {
        let _ = writeln!(s, "error: {e}");
    }
    let _ = writeln!(s, "{}", if r.passed { "PASSED" } else { "FAILED" });
    s
}

/// CPU per scan and peak memory of every process, and their sum.
fn processes(s: &mut String, processes: &[ProcessUsage]) {
    let trends = processes.iter().any(|p| p.rss_growth.is_some());
    let _ = writeln!(
        s,
        "\nprocess              cpu s   µs/scan  peak RSS MiB{}",
        if trends {
            "  RSS settled → end MiB"
        } else {
            ""
        }
    );
    for p in processes {
        let _ = write!(
            s,
            "  {:<18}{:>7.2} {:>9.0} {:>13.1}",
            p.process,
            p.cpu_s,
            p.cpu_us_per_scan,
            p.peak_rss_kb as f64 / 1024.0
        );
        let _ = match (p.rss_settled_kb, p.rss_end_kb, p.rss_growth) {
            (Some(from), Some(to), Some(g)) => writeln!(
                s,
                "  {:>8.1} → {:.1} ({:+.1} %)",
                from as f64 / 1024.0,
                to as f64 / 1024.0,
                g * 100.0
            ),
            _ => writeln!(s),
        };
    }
    if processes.len() > 1 {
        let cpu: f64 = processes.iter().map(|p| p.cpu_s).sum();
        let per_scan: f64 = processes.iter().map(|p| p.cpu_us_per_scan).sum();
        let _ = writeln!(s, "  {:<18}{cpu:>7.2} {per_scan:>9.0}", "total");
    }
}

/// The saturation search: every step, then the capacity found.
/// The machine goes beside the capacity: what a thread hand-off costs there sets most of it.
fn capacity(s: &mut String, c: &CapacitySection, machine: &Machine) {
    let _ = writeln!(
        s,
        "\nsearch (e2e p99 ≤ {} ms)   offered/s  served/s   p99 ms   lost  skipped  failed",
        c.max_p99_ms
    );
    for step in &c.steps {
        let _ = writeln!(
            s,
            "  {:<22}{:>9.0} {:>9.1} {:>8.1} {:>6} {:>8} {:>7}",
            match (step.passed, step.retry) {
                (true, false) => "held",
                (true, true) => "held (again)",
                (false, false) => "did not hold",
                (false, true) => "did not hold (again)",
            },
            step.rate,
            step.throughput_rps,
            step.p99_ms,
            step.scans.lost,
            step.requests.skipped,
            step.requests.failed
        );
    }
    match c.max_rate {
        Some(rate) => {
            let _ = writeln!(s, "capacity  {rate:.0} scans/s on {}", machine.summary());
        }
        None => {
            let lowest = c.steps.iter().map(|s| s.rate).fold(f64::INFINITY, f64::min);
            let _ = writeln!(s, "capacity  none: no rate held, down to {lowest:.0}/s");
        }
    }
}

/// The verification section: counts, then each kind of problem by edge or span.
fn traces(s: &mut String, t: &TracesSection, verification_ms: f64) {
    let t2 = &t.summary;
    let _ = writeln!(
        s,
        "\ntraces    expected {} of {} scans  complete {} ({:.1} %)  stray spans {}  (from {}, verdict in {:.0} ms)",
        t2.expected,
        t2.scans,
        t2.complete,
        t2.complete_ratio * 100.0,
        t2.stray_spans,
        t.source,
        verification_ms
    );
    if t.not_queryable > 0 {
        let _ = writeln!(
            s,
            "  not yet queryable: {} traces the backend had not returned by the deadline (not judged)",
            t.not_queryable
        );
    }
    if t2.telemetry_loss > 0 {
        let _ = writeln!(
            s,
            "  telemetry loss: {} traces lost spans before the verifier saw them (not judged)",
            t2.telemetry_loss
        );
    }
    if t2.refused > 0 || t2.duplicate_deliveries > 0 {
        let _ = writeln!(
            s,
            "  refused requests {} (traces that end at the front door)  duplicate deliveries {} (set aside)",
            t2.refused, t2.duplicate_deliveries
        );
    }
    for (edge, n) in &t2.broken_edges {
        let share = t2.broken_share.get(edge).copied().unwrap_or(0.0) * 100.0;
        let _ = writeln!(s, "  broken  {edge}: {n} ({share:.1} %)");
    }
    for (span, n) in &t2.missing_spans {
        let _ = writeln!(s, "  missing {span}: {n}");
    }
    for (span, n) in &t2.orphans {
        let _ = writeln!(s, "  orphan  {span}: {n}");
    }
    for (p, n) in &t2.other_problems {
        let _ = writeln!(s, "  other   {p}: {n}");
    }
    for e in &t2.stray_examples {
        let _ = writeln!(s, "  stray   {e}");
    }
}

/// The critical-path section: the mean, the bottleneck, each service's share.
fn critical_path(s: &mut String, a: &Attribution) {
    let _ = writeln!(
        s,
        "\ncritical path over {} scans, mean {:.1} ms (root span {:.1} ms); bottleneck {}",
        a.scans,
        a.mean_total_ms,
        a.root_mean_ms,
        a.bottleneck.as_deref().unwrap_or("-")
    );
    let mut by_service: Vec<_> = a.by_service.iter().collect();
    by_service.sort_by(|x, y| y.1.total_cmp(x.1));
    for (service, share) in by_service {
        let _ = writeln!(s, "  {service:<20} {:>5.1} %", share * 100.0);
    }
}
