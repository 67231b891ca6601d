//! The overhead ladder as people read it: a terminal table, and a page with two bar charts
//! (each arm's CPU per scan with its interquartile range; each arm's difference to `off` with
//! its 95 % confidence interval).

use std::fmt::Write as _;

use plotters::prelude::*;

use super::schema::{OverheadResult, TOTAL};
use crate::html::{DrawError, draw_err};
use crate::xml_escape;

/// The terminal table of `result`.
pub fn overhead_summary(result: &OverheadResult) -> String {
    let mut out = String::new();
    // `writeln!` to a `String` cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        out,
        "overhead: {} at {:.0} scans/s{}, {} arms × {} repeats of {:.0} s (warm-up {:.0} s), in rounds (seed {})",
        result.scenario,
        result.rate_rps,
        result
            .off_saturation_rps
            .map(|s| format!(
                " ({:.0} % of off's saturation, {s:.0}/s)",
                result.rate_rps / s * 100.0
            ))
            .unwrap_or_default(),
        result.arms.len(),
        result.arms.first().map_or(0, |a| a.repeats.len()),
        result.duration_s,
        result.warmup_s,
        result.seed,
    );
    let header = [
        "arm",
        "CPU µs/scan ± IQR",
        "vs off (95 % CI)",
        "µs/span",
        "switches/scan",
        "e2e p99 ms",
        "scans/s",
        "dropped",
    ];
    let rows: Vec<Vec<String>> = result.arms.iter().map(arm_row).collect();
    out.push_str(&table(&header, &rows));
    let _ = writeln!(
        out,
        "(~: within noise, the interval holds 0; {})",
        result.ci_method
    );
    if let Some(h) = &result.per_hop_us {
        let _ = writeln!(
            out,
            "added CPU per traced hop, receiving side ({}): HTTP {:.1} µs, AMQP publish {:.1} µs, Kafka {:.1} µs",
            h.arm, h.http, h.amqp, h.kafka
        );
    }
    for t in &result.self_test {
        let _ = writeln!(
            out,
            "self-test {}: {:.1} µs a span recovered of {:.1} µs ({:+.1} %, against {}): {}",
            t.arm,
            t.recovered_us,
            t.expected_us,
            t.error_pct,
            t.baseline,
            if t.passed {
                "ok"
            } else {
                "OFF BY MORE THAN 10 %"
            }
        );
    }
    out
}

/// One arm's row of the terminal table.
fn arm_row(arm: &super::schema::ArmResult) -> Vec<String> {
    let total = arm.cpu_us_per_scan.get(TOTAL).copied().unwrap_or_default();
    let vs_off = arm.vs_off.as_ref().map_or_else(
        || "—".to_owned(),
        |d| {
            format!(
                "{:+.1} [{:+.1}, {:+.1}] {:+.1} %{}",
                d.diff,
                d.ci95[0],
                d.ci95[1],
                d.diff_pct,
                if d.within_noise { " ~" } else { "" }
            )
        },
    );
    let dropped: u64 = arm.repeats.iter().map(|r| r.spans_dropped).sum();
    vec![
        arm.name.clone(),
        format!("{:.1} ± {:.1}", total.median, total.iqr),
        vs_off,
        arm.added_us_per_span
            .map_or_else(|| "—".to_owned(), |u| format!("{u:.2}")),
        arm.switches_per_scan
            .as_ref()
            .map_or_else(|| "—".to_owned(), |s| format!("{:.1}", s.median)),
        format!("{:.1}", arm.e2e_p99_ms.median),
        format!("{:.0}", arm.throughput_rps.median),
        dropped.to_string(),
    ]
}

/// A table whose every column is as wide as its widest cell, two spaces apart: the first column
/// left-aligned (names), the others right-aligned (figures). Widths count characters, as
/// `format!`'s padding does, not bytes (`µ`, `±` and `—` are two bytes each).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .filter_map(|r| r.get(i))
            .map(|c| c.chars().count())
            .chain([header[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut s = format!("{:<w$}", cells[0], w = widths[0]);
        for (cell, w) in cells.iter().zip(&widths).skip(1) {
            let _ = write!(s, "  {cell:>w$}");
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header);
    for row in rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

/// Bars with whiskers: one bar per arm at `value`, whiskers from `lo` to `hi`.
fn bars_svg(
    title: &str,
    y_desc: &str,
    rows: &[(String, f64, f64, f64)],
) -> Result<String, DrawError> {
    let mut svg = String::new();
    {
        let width = 160 + 110 * rows.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (width, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let lo = rows.iter().map(|r| r.1.min(r.2)).fold(0.0_f64, f64::min);
        let hi = rows.iter().map(|r| r.1.max(r.3)).fold(0.0_f64, f64::max);
        let pad = (hi - lo).max(1.0) * 0.1;
        let n = rows.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(90)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..n as f64, (lo - pad)..(hi + pad))
            .map_err(draw_err)?;
        let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 1e-9 {
                    labels.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(y_desc)
            .draw()
            .map_err(draw_err)?;
        for (i, (_, value, whisker_lo, whisker_hi)) in rows.iter().enumerate() {
            let x = i as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x + 0.15, 0.0), (x + 0.85, *value)],
                    RGBColor(31, 119, 180).mix(0.75).filled(),
                )))
                .map_err(draw_err)?;
            let mid = x + 0.5;
            let black = BLACK.stroke_width(2);
            chart
                .draw_series([
                    PathElement::new(vec![(mid, *whisker_lo), (mid, *whisker_hi)], black),
                    PathElement::new(
                        vec![(mid - 0.1, *whisker_lo), (mid + 0.1, *whisker_lo)],
                        black,
                    ),
                    PathElement::new(
                        vec![(mid - 0.1, *whisker_hi), (mid + 0.1, *whisker_hi)],
                        black,
                    ),
                ])
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// The self-contained HTML page of `result`.
///
/// # Errors
///
/// Fails when a chart cannot be drawn.
pub fn overhead_html(result: &OverheadResult) -> Result<String, DrawError> {
    let cpu: Vec<(String, f64, f64, f64)> = result
        .arms
        .iter()
        .map(|a| {
            let values: Vec<f64> = a
                .repeats
                .iter()
                .filter_map(|r| r.cpu_us_per_scan.get(TOTAL).copied())
                .collect();
            (
                a.name.clone(),
                crate::overhead::stats::median(&values),
                crate::overhead::stats::quantile(&values, 0.25),
                crate::overhead::stats::quantile(&values, 0.75),
            )
        })
        .collect();
    let diffs: Vec<(String, f64, f64, f64)> = result
        .arms
        .iter()
        .map(|a| match &a.vs_off {
            Some(d) => (a.name.clone(), d.diff, d.ci95[0], d.ci95[1]),
            None => (a.name.clone(), 0.0, 0.0, 0.0),
        })
        .collect();
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tracebench overhead: {name}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}pre{{background:#f6f6f6;padding:1em}}</style>\
         </head><body><h1>What tracing costs: {name}</h1>",
        name = xml_escape(&result.scenario)
    );
    let _ = write!(
        page,
        "<p>{} arms at {:.0} scans/s on {} ({} CPUs, kernel {}{}), tracebench {}, started {}.</p>",
        result.arms.len(),
        result.rate_rps,
        xml_escape(&result.machine.cpu_model),
        result.machine.cpus,
        xml_escape(&result.machine.kernel),
        result
            .machine
            .wake_round_trip_us
            .map_or_else(String::new, |us| format!(", wake-up round trip {us:.1} µs")),
        xml_escape(&result.machine.tracebench),
        xml_escape(&result.started_at),
    );
    page.push_str(&bars_svg(
        "CPU per scan, all service processes (median, whiskers: interquartile range)",
        "µs per scan",
        &cpu,
    )?);
    page.push_str(&bars_svg(
        "Difference to off (median, whiskers: 95 % confidence interval)",
        "µs per scan",
        &diffs,
    )?);
    let _ = write!(
        page,
        "<pre>{}</pre></body></html>",
        xml_escape(&overhead_summary(result))
    );
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn every_column_is_as_wide_as_its_widest_cell() {
        let rows = vec![
            vec!["off".to_owned(), "951.0 ± 12.3".to_owned(), "—".to_owned()],
            vec![
                "always_on+otlp".to_owned(),
                "1234.5 ± 67.8".to_owned(),
                "+1234.5 [+1000.1, +1500.2] +129.8 % ~".to_owned(),
            ],
        ];
        let out = table(&["arm", "CPU µs/scan ± IQR", "vs off"], &rows);
        assert_eq!(
            out,
            "arm             CPU µs/scan ± IQR                                 vs off\n\
             off                  951.0 ± 12.3                                      —\n\
             always_on+otlp      1234.5 ± 67.8  +1234.5 [+1000.1, +1500.2] +129.8 % ~\n"
        );
    }
}
