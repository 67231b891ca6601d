//! The `tracebench` binary as users call it: `check` and `run` with their exit codes, and the
//! smoke scenario end to end (needs RabbitMQ at 127.0.0.1:5672 or `TB_AMQP_URL`).

use std::path::Path;

mod common;

use common::{report_html, run_file, scratch, tracebench};

/// `tracebench run scenarios/<name>.yaml --out <dir> --quiet <extra>`: asserts the exit code
/// and returns the parsed `result.json`.
fn run_scenario(name: &str, dir: &Path, extra: &[&str], exit: i32) -> serde_json::Value {
    run_scenario_with(name, dir, extra, &[], exit)
}

/// [`run_scenario`] with `env` added to the harness's environment (its children inherit it).
fn run_scenario_with(
    name: &str,
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
    exit: i32,
) -> serde_json::Value {
    run_file(&format!("scenarios/{name}.yaml"), dir, extra, env, exit).1
}

#[test]
fn check_accepts_the_shipped_scenarios() {
    for file in [
        "smoke",
        "seed-pipeline",
        "burst",
        "errors",
        "strip-kafka",
        "sampled",
        "capacity",
        "overhead",
        "overhead-self-test",
        "outage-rabbitmq",
        "outage-kafka",
        "api-faults",
        "collector-down",
        "worker-crash",
        "soak",
    ] {
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
        (
            "name: t\nduration: 5s\nload:\n  arrival: poisson\n  rate: 5\nfaults:\n  schedule:\n    - {at: 4s, for: 3s, fault: {outage: rabbitmq}}\n",
            "faults.schedule[0].for",
        ),
        (
            "name: t\nduration: 9s\nload:\n  arrival: poisson\n  rate: 5\nfaults:\n  schedule:\n    - {at: 1s, for: 3s, fault: {blackhole: kafka}}\n",
            "faults.schedule[0].fault",
        ),
        (
            "name: t\nduration: 5s\nload:\n  arrival: poisson\n  rate: 5\nservices:\n  store: postgres\n  postgres: {schema: Bad-Name}\n",
            "services.postgres.schema",
        ),
        (
            "name: t\nduration: 5s\nload:\n  arrival: poisson\n  rate: 5\nservices:\n  postgres: {schema: tb}\n",
            "services.postgres",
        ),
        (
            "name: t\nduration: 5s\nload:\n  arrival: poisson\n  rate: 5\nservices:\n  store: sqlite\n",
            "services.store",
        ),
        (
            "name: t\nduration: 9s\nload:\n  arrival: poisson\n  rate: 5\nfaults:\n  schedule:\n    - {at: 1s, for: 3s, fault: {outage: worker}}\n",
            "faults.schedule[0].fault",
        ),
        (
            "name: t\nduration: 9s\nload:\n  arrival: poisson\n  rate: 5\nfaults:\n  schedule:\n    - {at: 1s, for: 3s, fault: {bandwidth: {hop: rabbitmq, bytes_per_s: 0}}}\n",
            "faults.schedule[0].fault.bandwidth.bytes_per_s",
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
fn a_rabbitmq_outage_mid_run_is_refused_meanwhile_and_loses_no_accepted_scan() {
    let dir = scratch("outage-rabbitmq");
    let result = run_scenario_with("outage-rabbitmq", &dir, &[], &[], 0);
    assert_eq!(result["passed"], true, "{result}");
    assert_eq!(result["faults"][0]["fault"], "outage rabbitmq", "{result}");
    // Refused while RabbitMQ was away (503), accepted before and after, nothing lost.
    let failed = result["requests"]["failed"].as_u64().expect("failed");
    assert!(failed > 0, "{result}");
    assert_eq!(
        result["requests"]["refused"], failed,
        "every failure a refusal"
    );
    assert_eq!(result["requests"]["timed_out"], 0);
    assert!(
        result["sample_errors"].to_string().contains("503"),
        "{}",
        result["sample_errors"]
    );
    assert_eq!(result["scans"]["lost"], 0);
    assert_eq!(result["scans"]["completed"], result["scans"]["accepted"]);
    assert_eq!(
        result["traces"]["complete_ratio"], 1.0,
        "{}",
        result["traces"]
    );
}

#[test]
fn faults_on_the_api_hops_are_retried_in_the_same_trace_and_lose_no_scan() {
    let dir = scratch("api-faults");
    let result = run_scenario_with("api-faults", &dir, &[], &[], 0);
    assert_eq!(result["passed"], true, "{result}");
    let played: Vec<&str> = result["faults"]
        .as_array()
        .expect("faults")
        .iter()
        .filter_map(|f| f["fault"].as_str())
        .collect();
    assert_eq!(played, ["outage vision", "latency llm 300ms"], "{result}");
    assert_all_served_none_broken(&result);
    // The outage reached the worker (it retried), and the latency the end-to-end time (a
    // scan's LLM call waits twice: request and answer).
    let log = std::fs::read_to_string(dir.join("services.log")).expect("services.log");
    assert!(
        log.contains("attempt failed; retrying"),
        "no retry in the log"
    );
    let slowest = result["latency"]["end_to_end"]["uncorrected"]["max"]
        .as_f64()
        .expect("max");
    assert!(slowest >= 600.0, "e2e max {slowest} ms");
}

/// Every request served, every accepted scan completed, and no edge broken.
fn assert_all_served_none_broken(result: &serde_json::Value) {
    assert_eq!(result["requests"]["failed"], 0, "{}", result["requests"]);
    assert_eq!(result["scans"]["lost"], 0);
    assert_eq!(result["scans"]["completed"], result["scans"]["accepted"]);
    assert_eq!(
        result["traces"]["broken_edges"],
        serde_json::json!({}),
        "{}",
        result["traces"]
    );
}

#[test]
fn a_killed_worker_is_restarted_its_tasks_redelivered_and_nothing_lost_or_granted_twice() {
    // worker-crash.yaml: process mode by default (the schedule kills a process).
    let dir = scratch("worker-crash");
    let result = run_scenario("worker-crash", &dir, &[], 0);
    assert_eq!(result["faults"][0]["fault"], "worker_crash", "{result}");
    assert_eq!(
        result["spans"]["killed_processes"], 1,
        "{}",
        result["spans"]
    );
    // What the dead worker held is telemetry loss, never a broken edge.
    assert_all_served_none_broken(&result);
    let lines = |file: &str, message: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join(file))
            .expect("a child's log")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["message"] == message)
            .collect()
    };
    // The restarted worker got the dead one's unacked tasks again.
    let redelivered = lines("worker.log", "processing scan")
        .iter()
        .filter(|l| l["redelivered"] == true)
        .count();
    assert!(redelivered > 0, "no task was redelivered");
    // One reward per scan, however often a scan's event arrived.
    let granted = lines("character-consumer.log", "reward granted");
    let tasks: std::collections::HashSet<&str> = granted
        .iter()
        .filter_map(|l| l["task.id"].as_str())
        .collect();
    assert_eq!(tasks.len(), granted.len(), "a task was granted twice");
    assert!(tasks.len() as u64 >= result["scans"]["accepted"].as_u64().expect("accepted"));
    // Memory was sampled over the 22 s of load, about a second apart, through the restart.
    let worker = result["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["process"] == "worker")
        .expect("the worker's row")
        .clone();
    let samples = worker["rss_samples_kb"].as_array().map_or(0, Vec::len);
    assert!(samples >= 10, "{worker}");
    assert_eq!(worker["rss_sample_every_s"], 1.0);
    assert!(worker["rss_growth"].is_f64(), "{worker}");

    // In one process there is no worker process to kill: refused before anything starts.
    let out = tracebench(&[
        "run",
        "scenarios/worker-crash.yaml",
        "--services",
        "in-process",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--services process"));
}

#[test]
fn a_dark_collector_costs_spans_at_most_never_scans() {
    // collector-down.yaml, shortened: 8 s of blackholed OTLP inside 15 s of load.
    let dir = scratch("collector-down");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/collector-down.yaml"),
    )
    .expect("collector-down.yaml")
    .replace("duration: 45s", "duration: 15s")
    .replace("{at: 7s, for: 30s,", "{at: 3s, for: 8s,");
    let file = dir.join("collector-down.yaml");
    std::fs::write(&file, text).expect("write");
    let (_, result) = run_file(file.to_str().expect("utf-8"), &dir, &[], &[], 0);
    assert_eq!(
        result["faults"][0]["fault"], "blackhole collector",
        "{result}"
    );
    assert_eq!(result["faults"][0]["for_s"], 8.0);
    // Every scan served and completed while the exporters could not export; what was lost
    // (the queue holds about 5 s of spans) is telemetry's, reported as such: never a broken
    // edge.
    assert_all_served_none_broken(&result);
    let lost = result["spans"]["dropped"].as_u64().expect("dropped")
        + result["spans"]["evicted"].as_u64().expect("evicted");
    assert!(lost > 0, "{}", result["spans"]);
    assert!(
        result["traces"]["telemetry_loss"].as_u64() > Some(0),
        "{}",
        result["traces"]
    );
    let verdict = result["expectations"]
        .as_array()
        .expect("expectations")
        .iter()
        .find(|v| v["name"] == "telemetry.spans_lost")
        .expect("the telemetry verdict")
        .clone();
    assert_eq!(verdict["actual"].as_f64(), Some(lost as f64), "{verdict}");
    assert_eq!(verdict["passed"], true);
}

#[test]
fn the_smoke_scenario_passes_and_writes_result_json() {
    let dir = scratch("smoke");
    let junit = dir.join("junit.xml");
    let result = run_scenario(
        "smoke",
        &dir,
        &["--junit", junit.to_str().expect("utf-8")],
        0,
    );
    assert_eq!(result["scenario"], "smoke");
    assert_eq!(result["passed"], true);
    assert_eq!(result["infra"]["kafka"]["source"], "embedded");
    let sent = result["requests"]["sent"].as_u64().expect("sent");
    assert!(sent > 100, "{sent}");
    assert_eq!(result["scans"]["completed"], result["scans"]["accepted"]);
    assert_eq!(result["scans"]["lost"], 0);
    // Everything ran in this one process: its CPU time and memory, read from /proc.
    let processes = result["processes"].as_array().expect("processes");
    assert_eq!(processes.len(), 1, "{processes:?}");
    assert_eq!(processes[0]["process"], "tracebench");
    assert!(processes[0]["cpu_s"].as_f64() > Some(0.0));
    assert!(processes[0]["switches_per_scan"].as_f64() > Some(0.0));
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
    // Every scan is one complete trace, read back from the embedded OTLP sink.
    let traces = &result["traces"];
    assert_eq!(traces["source"], "embedded");
    assert_eq!(traces["complete_ratio"], 1.0, "{traces}");
    assert_eq!(traces["expected"], traces["scans"]);
    assert_eq!(traces["stray_spans"], 0, "{traces}");
    assert!(
        traces["median"]["spans"]
            .as_array()
            .is_some_and(|s| s.len() >= 20),
        "{traces}"
    );
    let shares = result["critical_path"]["by_service"]
        .as_object()
        .expect("shares");
    let total: f64 = shares.values().filter_map(serde_json::Value::as_f64).sum();
    assert!((total - 1.0).abs() < 1e-6, "{shares:?}");

    // The JUnit file has one case per expectation; the HTML report draws the waterfalls.
    let junit = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml");
    let cases = result["expectations"]
        .as_array()
        .expect("expectations")
        .len();
    assert_eq!(junit.matches("<testcase ").count(), cases, "{junit}");
    assert!(!junit.contains("<failure"), "{junit}");
    let page = report_html(&dir.join("result.json"), &dir.join("report.html"));
    assert!(page.contains("Median trace") && page.contains("Slowest trace"));
    assert!(
        page.matches("<svg").count() >= 4,
        "waterfalls, histogram and shares are drawn"
    );
    assert!(page.contains("POST /scan") && page.contains("process_image"));

    // `compare`: a result holds against itself; half the traces complete and triple the p99
    // are two regressions, both listed, exit 1.
    let base = dir.join("result.json");
    let base = base.to_str().expect("utf-8");
    let out = tracebench(&["compare", base, base]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("the candidate holds"), "{stdout}");
    let mut worse = result.clone();
    let ratio = worse["traces"]["complete_ratio"].as_f64().expect("ratio");
    worse["traces"]["complete_ratio"] = (ratio / 2.0).into();
    let p99 = &mut worse["latency"]["end_to_end"]["corrected"]["p99"];
    *p99 = (p99.as_f64().expect("p99") * 3.0).into();
    let candidate = dir.join("worse.json");
    std::fs::write(&candidate, serde_json::to_vec(&worse).expect("json")).expect("write");
    let junit = dir.join("compare.xml");
    let out = tracebench(&[
        "compare",
        base,
        candidate.to_str().expect("utf-8"),
        "--junit",
        junit.to_str().expect("utf-8"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let regressions: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("REGRESSION"))
        .collect();
    assert_eq!(regressions.len(), 2, "{stdout}");
    assert!(
        stdout.contains("traces.complete_ratio") && stdout.contains("p99"),
        "{stdout}"
    );
    let junit = std::fs::read_to_string(&junit).expect("compare.xml");
    assert_eq!(junit.matches("<failure").count(), 2, "{junit}");
    // Different kinds, or not a result at all: exit 2.
    let out = tracebench(&["compare", base, "scenarios/smoke.yaml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn headers_stripped_at_the_kafka_hop_are_reported_as_that_edge_broken() {
    let dir = scratch("strip");
    // The default expectation (every trace complete) fails: exit 1, not 0 or 2.
    let result = run_scenario("strip-kafka", &dir, &[], 1);
    let traces = &result["traces"];
    assert!(
        traces["expected"].as_u64().expect("expected") >= 1000,
        "{traces}"
    );
    let shares = traces["broken_share"].as_object().expect("broken_share");
    assert_eq!(shares.len(), 2, "exactly the two Kafka edges: {shares:?}");
    for (edge, share) in shares {
        assert!(edge.ends_with("/process scan.completed"), "{edge}");
        let share = share.as_f64().expect("share");
        assert!((0.08..=0.12).contains(&share), "{edge}: {share}");
    }
    // Nothing else broke.
    assert!(
        traces["missing_spans"]
            .as_object()
            .is_some_and(serde_json::Map::is_empty),
        "{traces}"
    );
    assert!(
        traces["orphans"]
            .as_object()
            .is_some_and(serde_json::Map::is_empty),
        "{traces}"
    );
}

#[test]
fn ratio_sampling_traces_about_a_tenth_of_scans_each_complete_and_nothing_else() {
    let dir = scratch("sampled");
    let result = run_scenario("sampled", &dir, &[], 0);
    let traces = &result["traces"];
    let (scans, expected) = (
        traces["scans"].as_f64().expect("scans"),
        traces["expected"].as_f64().expect("expected"),
    );
    let share = expected / scans;
    // ~900 scans at 10 %: σ ≈ 1 point, so 6–14 % is a four-σ band.
    assert!((0.06..=0.14).contains(&share), "{expected} of {scans}");
    assert_eq!(traces["complete"], traces["expected"]);
    assert_eq!(
        traces["stray_spans"], 0,
        "an unsampled scan left spans behind: {traces}"
    );
}

#[test]
fn the_smoke_scenario_passes_with_every_service_in_its_own_process_at_log_level_warn() {
    let dir = scratch("process");
    // At `warn` no service logs a line per scan: completions must reach the harness as
    // structured events, not through the text of a log message.
    let result = run_scenario_with(
        "smoke",
        &dir,
        &["--services", "process"],
        &[("RUST_LOG", "warn")],
        0,
    );
    // Six processes, one trace per scan: the spans came from the children over OTLP.
    assert_eq!(
        result["traces"]["complete_ratio"], 1.0,
        "{}",
        result["traces"]
    );
    assert!(result["scans"]["accepted"].as_u64() > Some(0), "{result}");
    assert_eq!(result["scans"]["completed"], result["scans"]["accepted"]);
    assert_eq!(result["scans"]["lost"], 0);
    // Each child's own CPU time and memory, read from /proc before it stopped.
    let processes = result["processes"].as_array().expect("processes");
    assert_eq!(processes.len(), 6, "{processes:?}");
    for p in processes {
        assert!(p["cpu_s"].as_f64() > Some(0.0), "{p}");
        assert!(p["peak_rss_kb"].as_u64() > Some(0), "{p}");
        assert!(p["switches_per_scan"].as_f64() > Some(0.0), "{p}");
    }
    for service in [
        "scan-api",
        "worker",
        "vision-api",
        "llm-api",
        "character-consumer",
        "my-consumer",
    ] {
        let log =
            std::fs::read_to_string(dir.join(format!("{service}.log"))).expect("a log per child");
        assert!(
            !log.contains(r#""level":"INFO""#),
            "{service} logged at info under RUST_LOG=warn: {log}"
        );
        let processed = log
            .lines()
            .filter(|l| l.contains(r#"{"processed":"#))
            .count();
        let is_consumer = service.ends_with("-consumer");
        assert_eq!(
            processed > 0,
            is_consumer,
            "{service}: {processed} processed lines"
        );
    }
}

#[test]
fn the_seed_pipeline_reads_the_same_bottlenecks_as_the_design() {
    // The design: Vision API ≈ 39 %, LLM API ≈ 46 % of end-to-end time.
    let dir = scratch("seed");
    let result = run_scenario("seed-pipeline", &dir, &[], 0);
    let shares = &result["critical_path"]["by_service"];
    let llm = shares["llm-api"].as_f64().expect("llm-api share");
    let vision = shares["vision-api"].as_f64().expect("vision-api share");
    // Absolute shares move with the machine's load (a busy CI stretches scan-api's own span
    // and dilutes both; measured 45/37 % alone, 38/31 % beside the other CLI tests), so the
    // test holds the reading itself: the two APIs dominate, in the design's ratio (46/39 ≈ 1.18).
    let others = shares
        .as_object()
        .expect("shares")
        .iter()
        .filter(|(k, _)| !k.ends_with("-api") || k.as_str() == "scan-api")
        .filter_map(|(_, v)| v.as_f64())
        .fold(0.0, f64::max);
    assert!(vision > others && llm > vision, "{shares}");
    assert!(
        (1.0..=1.5).contains(&(llm / vision)),
        "llm/vision {}",
        llm / vision
    );
    assert!(llm + vision > 0.6, "{shares}");
    assert_eq!(
        result["critical_path"]["bottleneck"], "POST /v1/chat/completions",
        "{shares}"
    );
}

#[test]
fn a_capacity_search_stops_at_a_rate_that_does_not_hold_twice() {
    let dir = scratch("search");
    let file = dir.join("search.yaml");
    // 10, 20, 30 scans/s hold easily; the p99 bound is far above a 50 ms scan.
    std::fs::write(
        &file,
        "name: search\nduration: 1m\ntime_scale: 0.01\n\
         load:\n  arrival: {search: {from: 10, to: 30, step: 10, hold: 2s, max_p99_ms: 2000}}\n\
         tracing:\n  sampler: off\n  exporter: discard\n",
    )
    .expect("scenario written");
    let (file, out) = (file.to_str().expect("utf-8"), dir.join("out"));
    let (stdout, result) = run_file(file, &out, &[], &[], 0);
    assert!(stdout.contains("capacity  30 scans/s"), "{stdout}");
    let capacity = &result["capacity"];
    assert_eq!(capacity["max_rate"], 30.0, "{capacity}");
    let steps = capacity["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 3);
    assert!(
        steps
            .iter()
            .all(|s| s["passed"] == true && s["scans"]["lost"] == 0)
    );

    // A bound no scan can meet: the first rate does not hold, nor its second try; the search
    // would step down, but the scenario's 5 s leave no time for it. No rate held: exit 1.
    let strict = std::fs::read_to_string(file)
        .expect("read")
        .replace("max_p99_ms: 2000", "max_p99_ms: 1")
        .replace("duration: 1m", "duration: 5s");
    std::fs::write(file, strict).expect("scenario written");
    let (stdout, result) = run_file(file, &out, &[], &[], 1);
    assert_eq!(result["capacity"]["max_rate"], serde_json::Value::Null);
    let steps = result["capacity"]["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(
        (steps[0]["rate"].as_f64(), steps[1]["rate"].as_f64()),
        (Some(10.0), Some(10.0))
    );
    assert_eq!(steps[1]["retry"], true, "the second try is marked");
    assert!(stdout.contains("did not hold (again)"), "{stdout}");
}

#[test]
fn spans_dropped_by_the_sdk_are_telemetry_loss_not_broken_propagation() {
    let dir = scratch("loss");
    let file = dir.join("loss.yaml");
    // A batch queue of 16 spans exported once a second: most of every second's spans are
    // dropped before they leave the process.
    std::fs::write(
        &file,
        [
            "name: loss",
            "duration: 3s",
            "time_scale: 0.01",
            "load: {arrival: constant, rate: 40}",
            "tracing:",
            "  sampler: always_on",
            "  exporter: embedded",
            "  batch: {max_queue_size: 16, max_export_batch_size: 16, scheduled_delay: 1s}",
        ]
        .join("\n"),
    )
    .expect("scenario written");
    let file = file.to_str().expect("utf-8");
    let (_, result) = run_file(file, &dir.join("out"), &[], &[], 1);
    assert!(
        result["spans"]["dropped"].as_u64() > Some(0),
        "{}",
        result["spans"]
    );
    let traces = &result["traces"];
    assert!(traces["telemetry_loss"].as_u64() > Some(0), "{traces}");
    // Nothing is blamed on propagation: no broken edge, no missing span, every judged trace
    // complete; the run fails on its own verdict.
    assert_eq!(traces["broken_edges"], serde_json::json!({}), "{traces}");
    assert_eq!(traces["missing_spans"], serde_json::json!({}), "{traces}");
    assert_eq!(traces["complete_ratio"], 1.0, "{traces}");
    let verdicts = result["expectations"].as_array().expect("expectations");
    let failed: Vec<&str> = verdicts
        .iter()
        .filter(|v| v["passed"] == false)
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(failed, ["telemetry.spans_lost"]);
}

#[test]
fn a_service_appends_its_json_logs_to_its_log_file_and_stops_on_sigterm() {
    use std::time::{Duration, Instant};
    let dir = scratch("log-file");
    let log = dir.join("llm.jsonl");
    std::fs::write(&log, "{\"earlier\":true}\n").expect("an earlier line");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tracebench"))
        .args([
            "service",
            "llm-api",
            "--llm-addr",
            "127.0.0.1:0",
            "--sampling",
            "off",
        ])
        .arg("--log-file")
        .arg(&log)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("tracebench service runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("services running")
    {
        assert!(
            Instant::now() < deadline,
            "no start-up line in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    common::stop_with_sigterm(&mut child, Duration::from_secs(20));
    let text = std::fs::read_to_string(&log).expect("the log file");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("{\"earlier\":true}"),
        "appended, not truncated"
    );
    for line in lines {
        let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert!(
            value["level"].is_string() && value["message"].is_string(),
            "{line}"
        );
    }
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut stdout)
        .expect("stdout");
    assert!(
        stdout.contains("services running"),
        "stdout still gets the logs: {stdout}"
    );
}
