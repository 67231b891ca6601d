//! The `tracebench` binary as users call it: `check` and `run` with their exit codes, and the
//! smoke scenario end to end (needs RabbitMQ at 127.0.0.1:5672 or `TB_AMQP_URL`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tracebench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tracebench"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("tracebench runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracebench-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn check_accepts_the_shipped_scenarios() {
    for file in ["smoke", "seed-pipeline", "burst", "errors"] {
        let out = tracebench(&["check", &format!("scenarios/{file}.yaml")]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_bad_scenario_exits_2_naming_the_field() {
    let dir = scratch("bad");
    for (text, field) in [
        (
            "name: t\nduration: 5s\nload:\n  arrival: poisson\n  rate: 5\n  surprise: 1\n",
            "load.surprise",
        ),
        (
            "name: t\nduration: 5s\nload:\n  arrival: poisson\n  rate: -5\n",
            "load.rate",
        ),
        (
            "name: t\nduration: 5s\nload:\n  arrival: poisson\n  rate: 5\nservices:\n  vision:\n    latency: {lognormal: {median_ms: 100, p99_ms: 10}}\n",
            "services.vision.latency",
        ),
    ] {
        let file = dir.join("bad.yaml");
        std::fs::write(&file, text).expect("write");
        for command in ["check", "run"] {
            let out = tracebench(&[command, file.to_str().expect("utf-8")]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {field}: {stderr}");
            assert!(
                stderr.contains(field) && stderr.contains("bad.yaml"),
                "{command}: {stderr}"
            );
        }
    }
}

#[test]
fn the_smoke_scenario_passes_and_writes_result_json() {
    let dir = scratch("smoke");
    let out = tracebench(&[
        "run",
        "scenarios/smoke.yaml",
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
        serde_json::from_slice(&std::fs::read(dir.join("result.json")).expect("result.json"))
            .expect("json");
    assert_eq!(result["scenario"], "smoke");
    assert_eq!(result["passed"], true);
    assert_eq!(result["infra"]["kafka"]["source"], "embedded");
    let sent = result["requests"]["sent"].as_u64().expect("sent");
    assert!(sent > 100, "{sent}");
    assert_eq!(result["scans"]["completed"], result["scans"]["accepted"]);
    assert_eq!(result["scans"]["lost"], 0);
    for kind in ["http", "end_to_end"] {
        for way in ["corrected", "uncorrected"] {
            let p = &result["latency"][kind][way];
            let (p50, p99) = (
                p["p50"].as_f64().expect("p50"),
                p["p99"].as_f64().expect("p99"),
            );
            assert!(p50 > 0.0 && p99 >= p50, "{kind} {way}: {p}");
        }
    }
    assert_eq!(result["spans"]["dropped"], 0);
    assert!(dir.join("services.log").exists());
}
