//! Interop with real Python clients, instrumented with OpenTelemetry, on the real brokers: a
//! Celery worker and a Celery client (opentelemetry-instrumentation-celery) through RabbitMQ,
//! and a confluent-kafka consumer of `scan.completed`. Each test checks that one trace crosses
//! the language boundary: the same trace id on both sides, and the remote parent edge pointing
//! at the other side's PRODUCER span.
//!
//! The scripts live in `interop/python/`; `.ci/run` builds their venv (pinned in
//! `interop/python/requirements.txt`) and passes its interpreter as `TB_PYTHON`. The tests are
//! marked ignored, so a plain `cargo test` lists them as such; `.ci/run` runs them with
//! `--include-ignored`, and one run without `TB_PYTHON` fails, saying so.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{amqp_url, drop_queue, queue, telemetry};
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use serde_json::Value;
use tb_pipeline::{Pipeline, PipelineConfig};
use tb_telemetry::FinishedSpan;

/// How long a Python process may take to show the span a test waits for. Interpreter start-up,
/// Celery's boot and a Kafka group join are a few seconds here; the margin is for a loaded CI.
const PYTHON_DEADLINE: Duration = Duration::from_secs(90);

/// Why the tests here are ignored by a plain `cargo test`.
const NEEDS_PYTHON: &str =
    "needs TB_PYTHON, a venv of interop/python/requirements.txt (.ci/run provides it)";

/// The venv's interpreter from `TB_PYTHON`; a test run without it fails, naming it.
fn python() -> PathBuf {
    match std::env::var_os("TB_PYTHON") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!("{NEEDS_PYTHON}"),
    }
}

/// A directory of its own for one test's span files and process output, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("tb-interop-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Python script running as a child process, killed when dropped (a failed assertion must not
/// leave a Celery worker consuming from the broker). Its stdout and stderr go to files, so a full
/// pipe can never block it and a failure can show what it said.
struct PyProcess {
    name: &'static str,
    child: std::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl PyProcess {
    /// Starts `interop/python/{script}` with `args`.
    fn start(python: &Path, scratch: &Scratch, script: &'static str, args: &[&str]) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/python");
        let stdout = scratch.path(&format!("{script}.stdout"));
        let stderr = scratch.path(&format!("{script}.stderr"));
        let child = Command::new(python)
            .arg(dir.join(script))
            .args(args)
            .current_dir(&dir)
            // No __pycache__ inside the clone; no output held back in Python's buffers.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} {script}: {e}", python.display()));
        Self {
            name: script,
            child,
            stdout,
            stderr,
        }
    }

    /// What the process wrote to stderr (its last 4 KB), for failure messages.
    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let start = text.len().saturating_sub(4096);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].to_owned()
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("child status")
    }

    /// Waits for the process to end by itself, polling; panics with its stderr after `limit`.
    async fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {limit:?}; stderr:\n{}",
                self.name,
                self.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PyProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The complete JSON lines of a span file the Python side writes (a line still being written
/// has no newline yet and is left for the next read).
fn span_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("span line {l:?}: {e}")))
        .collect()
}

/// Polls `path` until a span line matching `wanted` appears while `process` runs, and returns
/// it. Panics with the process's stderr when the process ends or the deadline passes first.
async fn python_span(
    process: &mut PyProcess,
    path: &Path,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + PYTHON_DEADLINE;
    loop {
        if let Some(span) = span_lines(path).into_iter().find(|s| wanted(s)) {
            return span;
        }
        if let Some(status) = process.exited() {
            // One last look: the span may have been written just before the exit.
            if let Some(span) = span_lines(path).into_iter().find(|s| wanted(s)) {
                return span;
            }
            panic!(
                "{} exited ({status}) without the span; stderr:\n{}",
                process.name,
                process.stderr_tail()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} wrote no such span within {PYTHON_DEADLINE:?}; stderr:\n{}",
            process.name,
            process.stderr_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn find<'a>(spans: &'a [FinishedSpan], service: &str, name: &str) -> Option<&'a FinishedSpan> {
    spans
        .iter()
        .find(|s| s.service == service && s.span.name == name)
}

fn has(spans: &[FinishedSpan], service: &str, name: &str) -> bool {
    find(spans, service, name).is_some()
}

fn attribute(span: &FinishedSpan, key: &str) -> Option<String> {
    span.span
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// A Python span line's trace id.
fn py_trace_id(span: &Value) -> TraceId {
    TraceId::from_hex(span["trace_id"].as_str().expect("trace_id")).expect("a trace id")
}

/// A Python span line's span id, or its parent's (`field` = `parent_span_id`).
fn py_span_id(span: &Value, field: &str) -> SpanId {
    let hex = span[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {span}"));
    SpanId::from_hex(hex).expect("a span id")
}

/// The pipeline's `services` only, on `queue`.
fn config(queue: &str, services: &[&'static str]) -> PipelineConfig {
    let mut c = common::config(queue);
    c.services = services.to_vec();
    c
}

const IMAGE_URL: &str = "https://img.example/bottle.jpg";
const USER_ID: &str = "user-7";

/// `POST /scan`; returns the task id and trace id scan-api answered with.
async fn post_scan(pipeline: &Pipeline) -> (String, TraceId) {
    let addr = pipeline.scan_api.expect("scan-api runs");
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/scan"))
        .json(&serde_json::json!({"image_url": IMAGE_URL, "user_id": USER_ID}))
        .send()
        .await
        .expect("scan-api answers");
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.json().await.expect("a JSON body");
    let task_id = body["task_id"].as_str().expect("task_id").to_owned();
    let trace_id =
        TraceId::from_hex(body["trace_id"].as_str().expect("trace_id")).expect("a trace id");
    (task_id, trace_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TB_PYTHON, a venv of interop/python/requirements.txt (.ci/run provides it)"]
async fn python_celery_worker_continues_the_trace_scan_api_published() {
    let python = python();
    telemetry();
    let queue = queue();
    let scratch = Scratch::new();
    let pipeline = Pipeline::start(config(&queue, &[tb_scan_api::SERVICE]))
        .await
        .expect("scan-api starts");
    let out = scratch.path("worker.jsonl");
    let mut worker = PyProcess::start(
        &python,
        &scratch,
        "celery_worker.py",
        &[
            "--broker",
            &amqp_url(),
            "--queue",
            &queue,
            "--out",
            out.to_str().expect("a UTF-8 path"),
        ],
    );

    let (task_id, trace_id) = post_scan(&pipeline).await;
    // scan-api uses the scan's task id as the Celery task id (`messaging.message.id`).
    let run = python_span(&mut worker, &out, |s| {
        s["name"] == "run/scan.process_image"
            && s["attributes"]["messaging.message.id"] == task_id.as_str()
    })
    .await;
    let publish_name = format!("publish {}", tb_messaging::amqp::queue_template(&queue));
    let spans = common::trace_until(trace_id, |s| has(s, "scan-api", &publish_name)).await;
    let publish = find(&spans, "scan-api", &publish_name).expect("scan-api's publish span");

    assert_eq!(publish.span.span_kind, SpanKind::Producer);
    assert_eq!(run["kind"], "CONSUMER");
    assert_eq!(run["service"], "python-celery-worker");
    assert_eq!(py_trace_id(&run), trace_id, "{run}");
    assert_eq!(
        py_span_id(&run, "parent_span_id"),
        publish.span.span_context.span_id(),
        "the Python task span's parent is scan-api's publish span: {run}"
    );
    assert_eq!(run["parent_is_remote"], true);
    // Celery read the Rust-built message's arguments as sent.
    assert_eq!(run["attributes"]["scan.task_id"], task_id.as_str());
    assert_eq!(run["attributes"]["scan.image_url"], IMAGE_URL);
    assert_eq!(run["attributes"]["scan.user_id"], USER_ID);

    drop(worker);
    assert!(pipeline.shutdown().await.is_empty());
    drop_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TB_PYTHON, a venv of interop/python/requirements.txt (.ci/run provides it)"]
async fn rust_worker_continues_the_trace_a_python_celery_client_sent() {
    let python = python();
    telemetry();
    let queue = queue();
    let scratch = Scratch::new();
    let pipeline = Pipeline::start(config(
        &queue,
        &[
            tb_worker::SERVICE,
            tb_mocks::vision::SERVICE,
            tb_mocks::llm::SERVICE,
        ],
    ))
    .await
    .expect("worker starts");
    let out = scratch.path("client.jsonl");
    let scan_task_id = format!("scan-{}", uuid::Uuid::new_v4());
    let mut client = PyProcess::start(
        &python,
        &scratch,
        "celery_client.py",
        &[
            "--broker",
            &amqp_url(),
            "--queue",
            &queue,
            "--task-id",
            &scan_task_id,
            "--image-url",
            IMAGE_URL,
            "--user-id",
            USER_ID,
            "--out",
            out.to_str().expect("a UTF-8 path"),
        ],
    );
    let status = client.wait(PYTHON_DEADLINE).await;
    assert!(
        status.success(),
        "celery_client.py: {status}; stderr:\n{}",
        client.stderr_tail()
    );
    let sent: Value = serde_json::from_str(client.stdout().trim()).expect("the client's JSON");
    let celery_id = sent["celery_task_id"].as_str().expect("celery_task_id");
    let py = span_lines(&out);
    let by_name = |name: &str| {
        py.iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no Python span {name} in {py:?}"))
    };
    let apply = by_name("apply_async/scan.process_image");
    let parent = by_name("send scan");
    assert_eq!(apply["kind"], "PRODUCER");
    assert_eq!(apply["attributes"]["messaging.message.id"], celery_id);
    assert_eq!(py_trace_id(apply), py_trace_id(parent));
    assert_eq!(
        py_span_id(apply, "parent_span_id"),
        py_span_id(parent, "span_id")
    );

    let trace_id = py_trace_id(apply);
    let spans = common::trace_until(trace_id, |s| has(s, "worker", "publish scan.completed")).await;
    let process = find(&spans, "worker", "process_image").unwrap_or_else(|| {
        panic!(
            "no worker span in the Python trace; the worker's spans: {:?}",
            telemetry()
                .spans
                .spans()
                .iter()
                .filter(|s| s.service == "worker")
                .map(|s| (s.span.name.to_string(), attribute(s, "task.id")))
                .collect::<Vec<_>>()
        )
    });
    assert_eq!(process.span.span_kind, SpanKind::Consumer);
    assert_eq!(
        process.span.parent_span_id,
        py_span_id(apply, "span_id"),
        "process_image's parent is the Python apply_async span"
    );
    assert_eq!(attribute(process, "task.id").as_deref(), Some(celery_id));
    let announced = find(&spans, "worker", "publish scan.completed").expect("announced");
    assert_eq!(
        announced.span.parent_span_id,
        process.span.span_context.span_id()
    );
    // The worker read the Python-built message: the scan ran to completion under Celery's id.
    let record = pipeline
        .store
        .get(celery_id)
        .await
        .expect("store")
        .expect("the worker saw the task");
    assert_eq!(record.state, tb_store::ScanState::Completed);
    assert_eq!(
        (record.image_url.as_str(), record.user_id.as_str()),
        (IMAGE_URL, USER_ID)
    );

    assert!(pipeline.shutdown().await.is_empty());
    drop_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TB_PYTHON, a venv of interop/python/requirements.txt (.ci/run provides it)"]
async fn python_kafka_consumer_continues_trace_from_headers() {
    let python = python();
    telemetry();
    let queue = queue();
    let scratch = Scratch::new();
    let pipeline = Pipeline::start(config(
        &queue,
        &[
            tb_scan_api::SERVICE,
            tb_worker::SERVICE,
            tb_mocks::vision::SERVICE,
            tb_mocks::llm::SERVICE,
        ],
    ))
    .await
    .expect("pipeline starts");
    let (task_id, trace_id) = post_scan(&pipeline).await;

    // A new group reads from the earliest offset, so the record is found however early the
    // worker published it.
    let out = scratch.path("consumer.jsonl");
    let group = format!("tb-interop-{}", uuid::Uuid::new_v4());
    let mut consumer = PyProcess::start(
        &python,
        &scratch,
        "kafka_consumer.py",
        &[
            "--brokers",
            &pipeline.kafka_brokers,
            "--group",
            &group,
            "--until-task",
            &task_id,
            "--timeout",
            &PYTHON_DEADLINE.as_secs().to_string(),
            "--out",
            out.to_str().expect("a UTF-8 path"),
        ],
    );
    let process = python_span(&mut consumer, &out, |s| {
        s["attributes"]["scan.task_id"] == task_id.as_str()
    })
    .await;
    let spans = common::trace_until(trace_id, |s| has(s, "worker", "publish scan.completed")).await;
    let publish = find(&spans, "worker", "publish scan.completed").expect("the worker announced");

    assert_eq!(process["name"], "process scan.completed");
    assert_eq!(process["kind"], "CONSUMER");
    assert_eq!(py_trace_id(&process), trace_id, "{process}");
    assert_eq!(
        py_span_id(&process, "parent_span_id"),
        publish.span.span_context.span_id(),
        "the Python consumer span's parent is the worker's publish span: {process}"
    );
    assert_eq!(process["parent_is_remote"], true);
    let status = consumer.wait(PYTHON_DEADLINE).await;
    assert!(status.success(), "kafka_consumer.py: {status}");

    assert!(pipeline.shutdown().await.is_empty());
    drop_queue(&queue).await;
}
