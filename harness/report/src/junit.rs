//! JUnit XML for CI systems: one test case per expectation.

use std::fmt::Write as _;

use super::schema::RunResult;
use super::xml_escape;

/// JUnit XML: one test suite for the scenario, one test case per expectation.
pub fn junit(r: &RunResult) -> String {
    let failures = r.expectations.iter().filter(|v| !v.passed).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites><testsuite name=\"tracebench.{}\" tests=\"{}\" failures=\"{failures}\" timestamp=\"{}\">",
        xml_escape(&r.scenario),
        r.expectations.len(),
        xml_escape(&r.started_at)
    );
    for v in &r.expectations {
        let _ = write!(
            x,
            "  <testcase classname=\"tracebench.{}\" name=\"{}\">",
            xml_escape(&r.scenario),
            xml_escape(&v.name)
        );
        if !v.passed {
            let _ = write!(
                x,
                "<failure message=\"expected {} got {}\">{} expected {} got {}</failure>",
                v.expected,
                v.actual,
                xml_escape(&v.name),
                v.expected,
                v.actual
            );
        }
        x.push_str("</testcase>\n");
    }
    x.push_str("</testsuite></testsuites>\n");
    x
}
