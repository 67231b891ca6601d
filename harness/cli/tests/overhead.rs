//! `tracebench overhead` end to end, in a test binary of its own: cargo runs test binaries one
//! after another, so the CPU it measures is not shared with the other CLI tests running beside
//! it (in `cli.rs` it was, and a twin arm inflated by 30 % failed the self-test).

mod common;

use std::path::Path;

use common::{report_html, scratch, tracebench};

/// The overhead bench finds a known cost again (`scenarios/overhead-self-test.yaml`): an arm
/// charged 1000 µs of CPU per span against its twin without, five rounds of every arm, every
/// service its own process. The recovered cost must be within ±10 % (the bench's own
/// self-test), and `overhead.json`, the table and the HTML page must say so. (The cost is
/// large on purpose: a repeat's CPU per scan varies by ±5 % from run to run in this debug build;
/// 20 ms a scan stands well clear of that.)
#[test]
fn the_overhead_bench_recovers_a_synthetic_span_cost() {
    let dir = scratch("overhead");
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/overhead-self-test.yaml");
    let out = tracebench(&[
        "overhead",
        file.to_str().expect("utf-8"),
        "--out",
        dir.to_str().expect("utf-8"),
        "--quiet",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("overhead.json")).expect("overhead.json"))
            .expect("json");
    let arms = result["arms"].as_array().expect("arms");
    assert_eq!(arms.len(), 3);
    for arm in arms {
        assert_eq!(arm["repeats"].as_array().map(Vec::len), Some(5), "{arm}");
        for repeat in arm["repeats"].as_array().expect("repeats") {
            assert_eq!(repeat["lost"], 0, "{repeat}");
            assert!(repeat["cpu_us_per_scan"]["total"].as_f64() > Some(0.0));
            assert_eq!(
                repeat["cpu_us_per_scan"].as_object().map(|m| m.len()),
                Some(7),
                "six services and the total: {repeat}"
            );
        }
    }
    // Tracing exported spans into the sink process; off exported none.
    assert!(
        arms[1]["repeats"][0]["otlp_bytes"].as_u64() > Some(0),
        "{}",
        arms[1]
    );
    assert_eq!(arms[0]["repeats"][0]["spans_ended"], 0);
    assert!(
        arms[1]["spans_per_scan"].as_f64() > Some(15.0),
        "{}",
        arms[1]
    );
    let test = &result["self_test"][0];
    assert_eq!(test["expected_us"], 1000.0);
    let recovered = test["recovered_us"].as_f64().expect("recovered");
    assert!((900.0..=1100.0).contains(&recovered), "{test}");
    assert_eq!(test["passed"], true);
    assert!(
        stdout.contains("self-test") && stdout.contains("ok"),
        "{stdout}"
    );
    assert_eq!(result["order"].as_array().map(Vec::len), Some(15));

    let page = report_html(&dir.join("overhead.json"), &dir.join("overhead.html"));
    assert_eq!(page.matches("<svg").count(), 2);
    assert!(page.contains("always_on+otlp+1000us"));
    // An overhead result holds against itself.
    let json = dir.join("overhead.json");
    let json = json.to_str().expect("utf-8");
    assert_eq!(tracebench(&["compare", json, json]).status.code(), Some(0));
}
