//! One self-contained HTML page: the waterfalls of the median and slowest traces, the latency
//! histogram and the critical-path shares, drawn as inline SVG with plotters.

use std::fmt::Write as _;

use plotters::prelude::*;
use tb_verify::Waterfall;

use super::schema::{RunResult, TracesSection};
use super::xml_escape;

/// Why a report could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing the report: {0}")]
pub struct DrawError(String);

pub(crate) fn draw_err<E: std::fmt::Debug>(e: E) -> DrawError {
    DrawError(format!("{e:?}"))
}

const SERVICE_COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn colour_of(service: &str, services: &mut Vec<String>) -> RGBColor {
    let i = match services.iter().position(|s| s == service) {
        Some(i) => i,
        None => {
            services.push(service.to_owned());
            services.len() - 1
        }
    };
    SERVICE_COLOURS[i % SERVICE_COLOURS.len()]
}

/// A waterfall as SVG: one row per span, bars coloured by service, labels on the left.
pub fn waterfall_svg(w: &Waterfall) -> Result<String, DrawError> {
    let rows = w.spans.len().max(1);
    let height = 40 + 22 * rows as u32;
    let end = w
        .spans
        .iter()
        .map(|s| s.start_ms + s.duration_ms)
        .fold(w.total_ms, f64::max)
        .max(1e-3);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (labels, bars) = root.split_horizontally(360);
        let mut chart = ChartBuilder::on(&bars)
            .margin(10)
            .x_label_area_size(25)
            .build_cartesian_2d(0.0..end, 0..rows as i32)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_desc("ms")
            .draw()
            .map_err(draw_err)?;
        let mut services = Vec::new();
        for (i, s) in w.spans.iter().enumerate() {
            let y = (rows - 1 - i) as i32;
            let colour = colour_of(&s.service, &mut services);
            let end = s.start_ms + s.duration_ms.max(end / 1000.0);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(s.start_ms, y), (end, y + 1)],
                    colour.mix(if s.error { 1.0 } else { 0.8 }).filled(),
                )))
                .map_err(draw_err)?;
            let text = format!(
                "{}{} · {} ({:.1} ms)",
                "› ".repeat(s.depth as usize),
                s.service,
                s.name,
                s.duration_ms
            );
            labels
                .draw(&Text::new(
                    text,
                    (5, 12 + 22 * i as i32),
                    ("sans-serif", 12).into_font(),
                ))
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// The latency histogram as SVG (log-spaced buckets of corrected end-to-end latency).
pub fn histogram_svg(buckets: &[(f64, u64)]) -> Result<String, DrawError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let max = buckets.iter().map(|b| b.1).max().unwrap_or(1).max(1);
        let n = buckets.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0..n, 0..max)
            .map_err(draw_err)?;
        let labels: Vec<String> = buckets.iter().map(|b| format!("{:.0}", b.0)).collect();
        chart
            .configure_mesh()
            .x_desc("≤ ms (corrected end to end)")
            .y_desc("scans")
            .x_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(
                buckets
                    .iter()
                    .enumerate()
                    .map(|(i, b)| Rectangle::new([(i, 0), (i + 1, b.1)], BLUE.mix(0.7).filled())),
            )
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Horizontal bars of critical-path shares.
pub fn shares_svg(shares: &[(String, f64)]) -> Result<String, DrawError> {
    let rows = shares.len().max(1);
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (900, 40 + 24 * rows as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (labels, bars) = root.split_horizontally(360);
        let mut chart = ChartBuilder::on(&bars)
            .margin(10)
            .x_label_area_size(25)
            .build_cartesian_2d(0.0..100.0, 0..rows as i32)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_desc("% of end-to-end time")
            .draw()
            .map_err(draw_err)?;
        for (i, (name, share)) in shares.iter().enumerate() {
            let y = (rows - 1 - i) as i32;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y), (share * 100.0, y + 1)],
                    GREEN.mix(0.6).filled(),
                )))
                .map_err(draw_err)?;
            labels
                .draw(&Text::new(
                    format!("{name} — {:.1} %", share * 100.0),
                    (5, 12 + 24 * i as i32),
                    ("sans-serif", 12).into_font(),
                ))
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// The whole report as one self-contained HTML page.
///
/// # Errors
///
/// Fails when a chart cannot be drawn.
pub fn html(r: &RunResult) -> Result<String, DrawError> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>tracebench: {name}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1150px}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#eee}}\
         .pass{{color:#080}}.fail{{color:#b00}}</style></head><body>\
         <h1>tracebench: {name}</h1><p>seed {seed}, started {started}, {dur:.0} s measured — \
         <b class=\"{cls}\">{verdict}</b></p>",
        name = xml_escape(&r.scenario),
        seed = r.seed,
        started = xml_escape(&r.started_at),
        dur = r.duration_s,
        cls = if r.passed { "pass" } else { "fail" },
        verdict = if r.passed { "PASSED" } else { "FAILED" },
    );
    h.push_str("<h2>Expectations</h2><table><tr><th>expectation</th><th>expected</th><th>actual</th><th></th></tr>");
    for v in &r.expectations {
        let _ = write!(
            h,
            "<tr><td style=\"text-align:left\">{}</td><td>{}</td><td>{:.4}</td><td class=\"{}\">{}</td></tr>",
            xml_escape(&v.name),
            v.expected,
            v.actual,
            if v.passed { "pass" } else { "fail" },
            if v.passed { "pass" } else { "FAIL" }
        );
    }
    h.push_str("</table><h2>Latency (ms)</h2><table><tr><th></th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
    for (name, l) in r.latency.rows() {
        let _ = write!(
            h,
            "<tr><td style=\"text-align:left\">{name}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
    }
    h.push_str("</table>");
    if !r.histogram.is_empty() {
        h.push_str("<h2>End-to-end latency histogram</h2>");
        h.push_str(&histogram_svg(&r.histogram)?);
    }
    if let Some(a) = &r.critical_path {
        let mut shares: Vec<(String, f64)> =
            a.by_service.iter().map(|(k, v)| (k.clone(), *v)).collect();
        shares.sort_by(|x, y| y.1.total_cmp(&x.1));
        let _ = write!(
            h,
            "<h2>Critical path</h2><p>{} complete traces, mean {:.1} ms; bottleneck: <b>{}</b></p><h3>By service</h3>",
            a.scans,
            a.mean_total_ms,
            xml_escape(a.bottleneck.as_deref().unwrap_or("-"))
        );
        h.push_str(&shares_svg(&shares)?);
        let mut names: Vec<(String, f64)> =
            a.by_name.iter().map(|(k, v)| (k.clone(), *v)).collect();
        names.sort_by(|x, y| y.1.total_cmp(&x.1));
        names.truncate(15);
        h.push_str("<h3>By span</h3>");
        h.push_str(&shares_svg(&names)?);
    }
    if let Some(t) = &r.traces {
        traces_section(&mut h, t)?;
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

/// The verification section: counts, broken edges, and the median and slowest waterfalls.
fn traces_section(h: &mut String, t: &TracesSection) -> Result<(), DrawError> {
    let s = &t.summary;
    let _ = write!(
        h,
        "<h2>Traces</h2><p>{} expected, {} complete ({:.1} %), {} stray spans.</p>",
        s.expected,
        s.complete,
        s.complete_ratio * 100.0,
        s.stray_spans
    );
    if t.not_queryable > 0 {
        let _ = write!(
            h,
            "<p>{} traces were not yet queryable at {} by the deadline (not judged).</p>",
            t.not_queryable,
            xml_escape(&t.source)
        );
    }
    if !s.broken_edges.is_empty() {
        h.push_str("<table><tr><th>broken edge</th><th>count</th><th>share</th></tr>");
        for (edge, n) in &s.broken_edges {
            let _ = write!(
                h,
                "<tr><td style=\"text-align:left\">{}</td><td>{n}</td><td>{:.1} %</td></tr>",
                xml_escape(edge),
                s.broken_share.get(edge).copied().unwrap_or(0.0) * 100.0
            );
        }
        h.push_str("</table>");
    }
    for (title, w) in [("Median trace", &t.median), ("Slowest trace", &t.slowest)] {
        if let Some(w) = w {
            let _ = write!(
                h,
                "<h3 class=\"waterfall\">{title}: {} ({:.1} ms)</h3>",
                w.trace_id, w.total_ms
            );
            h.push_str(&waterfall_svg(w)?);
        }
    }
    Ok(())
}
