//! `tracebench demo` as its users meet it: its API (judged traces, waterfalls with edges and
//! the critical path, switches that take effect and refuse bad values), and its page in
//! headless Chromium. Needs RabbitMQ, as every pipeline test does; the browser test needs
//! Debian's `chromium` and playwright-core, which `.ci/run` installs.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

/// A `tracebench demo` child on a free port, stopped (SIGTERM) when dropped.
struct Demo {
    child: Child,
    url: String,
}

impl Demo {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tracebench"))
            .args(["demo", "--addr", "127.0.0.1:0", "--rate", "20"])
            .args(["--time-scale", "0.01"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tracebench demo runs");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("the demo's first line");
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {first:?}"))
            .trim_end_matches('/')
            .to_owned();
        Self { child, url }
    }

    /// Stops the demo as `docker stop` would and asserts a clean exit.
    fn stop(mut self) {
        common::stop_with_sigterm(&mut self.child, Duration::from_secs(30));
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(url: &str) -> Value {
    let response = reqwest::get(url).await.expect("GET");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.expect("JSON")
}

async fn knobs(demo: &Demo, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/knobs", demo.url))
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// Polls the recent traces until one has `verdict`; returns it with its waterfall.
async fn a_trace(demo: &Demo, verdict: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = get(&format!("{}/api/state", demo.url)).await;
        let found = state["traces"]
            .as_array()
            .expect("traces")
            .iter()
            .find(|t| t["verdict"] == verdict)
            .map(|t| t["trace_id"].as_str().expect("id").to_owned());
        if let Some(id) = found {
            return get(&format!("{}/api/traces/{id}", demo.url)).await;
        }
        assert!(Instant::now() < deadline, "no {verdict} trace: {state}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls the state until `holds` says so; returns that state.
async fn wait_until(demo: &Demo, what: &str, holds: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = get(&format!("{}/api/state", demo.url)).await;
        if holds(&state) {
            return state;
        }
        assert!(Instant::now() < deadline, "never {what}: {state}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn total(state: &Value, what: &str) -> u64 {
    state["totals"][what]
        .as_u64()
        .unwrap_or_else(|| panic!("totals.{what}: {state}"))
}

fn edges(trace: &Value) -> Vec<&str> {
    trace["waterfall"]["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .filter_map(|s| s["edge"].as_str())
        .collect()
}

#[tokio::test]
async fn the_demo_judges_its_traces_and_a_stripped_kafka_hop_shows_as_broken_edges() {
    let demo = Demo::start();
    let page = reqwest::get(&demo.url).await.expect("GET /");
    assert!(page.status().is_success());
    assert!(
        page.text()
            .await
            .expect("page")
            .contains("<title>tracebench demo</title>")
    );

    let complete = a_trace(&demo, "complete").await;
    let spans = complete["waterfall"]["spans"].as_array().expect("spans");
    assert!(spans.len() >= 15, "the whole pipeline: {complete}");
    assert!(spans.iter().any(|s| s["critical"] == true), "{complete}");
    let continued = edges(&complete);
    assert!(
        continued.len() >= 5 && continued.iter().all(|e| *e == "continued"),
        "every hop continued: {continued:?}"
    );

    let (status, state) = knobs(&demo, json!({"strip_kafka": 1.0})).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["knobs"]["strip_kafka"], 1.0);
    let broken = a_trace(&demo, "broken").await;
    assert!(edges(&broken).contains(&"broken"), "{broken}");
    let problems = broken["problems"].to_string();
    assert!(
        problems.contains("scan.completed"),
        "the Kafka hop: {problems}"
    );

    for bad in [
        json!({"strip_kafka": 2}),
        json!({"rate": 0}),
        json!({"vision_latency_factor": -1}),
        json!({"no_such_knob": 1}),
    ] {
        let (status, body) = knobs(&demo, bad.clone()).await;
        assert!((400..500).contains(&status), "{bad}: {status}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    let state = get(&format!("{}/api/state", demo.url)).await;
    assert_eq!(
        state["knobs"]["strip_kafka"], 1.0,
        "a refused change changes nothing"
    );
    assert_eq!(state["knobs"]["rate"], 20.0);
    brokers_down_and_back(&demo).await;
    demo.stop();
}

/// RabbitMQ away: scans are refused; back: accepted and completed again. Kafka away: scans are
/// accepted and wait; back: they complete, none lost.
async fn brokers_down_and_back(demo: &Demo) {
    let (status, state) = knobs(demo, json!({"strip_kafka": 0, "rabbitmq_down": true})).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["knobs"]["rabbitmq_down"], true);
    let failed = total(&state, "failed");
    wait_until(demo, "refused while RabbitMQ is down", |s| {
        total(s, "failed") >= failed + 5
    })
    .await;
    let (status, state) = knobs(demo, json!({"rabbitmq_down": false})).await;
    assert_eq!(status, 200, "{state}");
    let completed = total(&state, "completed");
    wait_until(demo, "completing again after RabbitMQ came back", |s| {
        total(s, "completed") >= completed + 10
    })
    .await;

    let (status, state) = knobs(demo, json!({"kafka_down": true})).await;
    assert_eq!(status, 200, "{state}");
    // 20 scans/s keep coming in; with Kafka away none of them gets past the worker.
    wait_until(demo, "scans piling up while Kafka is down", |s| {
        total(s, "in_flight") >= 20
    })
    .await;
    let (status, state) = knobs(demo, json!({"kafka_down": false})).await;
    assert_eq!(status, 200, "{state}");
    let state = wait_until(demo, "the scans held by the outage completed", |s| {
        total(s, "in_flight") <= 10
    })
    .await;
    assert_eq!(total(&state, "lost"), 0, "{state}");
}

/// Debian's chromium, or `TB_CHROMIUM`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TB_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The `node_modules` holding playwright-core: `TB_NODE_MODULES`, or where `.ci/run` puts it.
fn node_modules() -> Option<PathBuf> {
    let dir = std::env::var_os("TB_NODE_MODULES").map_or_else(
        || PathBuf::from("/var/tmp/tracebench-node/node_modules"),
        PathBuf::from,
    );
    dir.join("playwright-core").exists().then_some(dir)
}

#[test]
#[ignore = "needs chromium and playwright-core (TB_CHROMIUM, TB_NODE_MODULES; .ci/run provides them)"]
fn the_page_in_headless_chromium_shows_a_trace_broken_edges_and_a_critical_path_that_moves() {
    let (Some(chromium), Some(modules)) = (chromium(), node_modules()) else {
        panic!(
            "needs chromium and playwright-core (TB_CHROMIUM, TB_NODE_MODULES); .ci/run installs them"
        );
    };
    // The course's screenshots are these: `TB_SCREENSHOTS=docs/tutorial/img` (relative to the
    // repository's root) writes them where chapter 00 shows them.
    let shots = std::env::var_os("TB_SCREENSHOTS").map_or_else(
        || common::scratch("demo-screenshots"),
        |dir| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(dir)
        },
    );
    std::fs::create_dir_all(&shots).expect("screenshot directory");
    let demo = Demo::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/demo/browser.cjs");
    let out = Command::new("node")
        .arg(script)
        .arg(&demo.url)
        .arg(chromium)
        .arg(&shots)
        .env("NODE_PATH", modules)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["00-healthy.png", "00-strip-kafka.png", "00-slow-llm.png"] {
        let png = std::fs::read(shots.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is not a PNG");
    }
    demo.stop();
}
