//! What the CLI test binaries share: running the `tracebench` binary and scratch directories.
// Each test binary uses a subset; what one of them leaves unused is not dead.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `tracebench args` from the repository's root.
pub(crate) fn tracebench(args: &[&str]) -> Output {
    tracebench_with(args, &[])
}

/// `tracebench args` from the repository's root, with `env` added to its environment.
pub(crate) fn tracebench_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tracebench"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .expect("tracebench runs")
}

/// A fresh directory for test `name` under the system's temporary directory.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracebench-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `tracebench report JSON --html HTML`, asserted to exit 0; returns the page.
pub(crate) fn report_html(json: &Path, html: &Path) -> String {
    let out = tracebench(&[
        "report",
        json.to_str().expect("utf-8"),
        "--html",
        html.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(html).expect("the page")
}

/// `traces` of a `strip-kafka`-like run: both Kafka edges broken for about a tenth of the
/// scans, and nothing missing or orphaned, so a lost context was told from a receiver that
/// never ran.
pub(crate) fn assert_only_kafka_edges_broken(traces: &serde_json::Value) {
    let broken = traces["broken_edges"].as_object().expect("broken_edges");
    assert_eq!(broken.len(), 2, "exactly the two Kafka edges: {traces}");
    for (edge, share) in traces["broken_share"].as_object().expect("broken_share") {
        assert!(edge.ends_with("/process scan.completed"), "{edge}");
        let share = share.as_f64().expect("share");
        assert!((0.04..=0.16).contains(&share), "{edge}: {share}");
    }
    for field in ["missing_spans", "orphans"] {
        assert!(
            traces[field]
                .as_object()
                .is_some_and(serde_json::Map::is_empty),
            "{field}: {traces}"
        );
    }
    assert_eq!(traces["not_queryable"], 0, "{traces}");
}

/// A `strip-kafka`-like scenario (10 s at 60 scans/s, 10 % of Kafka events without trace
/// headers) with its spans exported over OTLP and `infra` as given (YAML flow mapping body).
pub(crate) fn strip_kafka_over_otlp(name: &str, infra: &str) -> String {
    format!(
        "name: {name}
seed: 5
duration: 10s
time_scale: 0.005
load: {{arrival: constant, rate: 60}}
services: {{worker: {{concurrency: 32}}}}
faults: {{strip_headers: {{hop: kafka, ratio: 0.1}}}}
tracing: {{exporter: otlp}}
infra: {{{infra}}}
"
    )
}

/// `tracebench run FILE --out <dir> --quiet <extra>` with `env` added: asserts the exit code
/// and returns the summary printed and the parsed `result.json`.
pub(crate) fn run_file(
    file: &str,
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
    exit: i32,
) -> (String, serde_json::Value) {
    let mut args = vec![
        "run",
        file,
        "--out",
        dir.to_str().expect("utf-8"),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let out = tracebench_with(&args, env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(exit),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result =
        serde_json::from_slice(&std::fs::read(dir.join("result.json")).expect("result.json"))
            .expect("json");
    (stdout, result)
}

/// Asks `child` to stop as `docker stop` does (SIGTERM) and asserts that it exits cleanly
/// within `within`.
pub(crate) fn stop_with_sigterm(child: &mut std::process::Child, within: std::time::Duration) {
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let deadline = std::time::Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGTERM did not stop it within {within:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "a stop on SIGTERM is a clean exit: {status}"
    );
}
