//! Helpers the end-to-end test files share: one telemetry setup per test binary (the
//! production `init_services` path into memory), a queue of each test's own, the pipeline's
//! fast test configuration, and polling for a trace's spans.
// Each test file uses a subset; what one of them leaves unused is not dead.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::trace::TraceId;
use serde_json::Value;
use tb_mocks::Latency;
use tb_pipeline::{KafkaChoice, PipelineConfig, SERVICES, Wiring};
use tb_telemetry::testing::MemorySpans;
use tb_telemetry::{Exporter, FinishedSpan, Sampling, TelemetryConfig, TelemetryGuard};

/// The RabbitMQ the tests use: `TB_AMQP_URL`, else the local default.
pub(crate) fn amqp_url() -> String {
    std::env::var("TB_AMQP_URL").unwrap_or_else(|_| tb_messaging::amqp::DEFAULT_URL.to_owned())
}

/// Log lines, kept in memory so a test can find the worker's line for its scan.
#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Logs {
    pub(crate) fn lines(&self) -> Vec<Value> {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

pub(crate) struct Telemetry {
    pub(crate) spans: MemorySpans,
    pub(crate) logs: Logs,
    pub(crate) guard: TelemetryGuard,
}

/// One telemetry setup for the whole test binary (a process has one global subscriber), the
/// same `init_services` path `tracebench service all` takes, exporting every service's spans
/// into memory under its own `service.name` and the JSON logs into a buffer.
pub(crate) fn telemetry() -> &'static Telemetry {
    static T: OnceLock<Telemetry> = OnceLock::new();
    T.get_or_init(|| {
        let spans = MemorySpans::default();
        let logs = Logs::default();
        let config = TelemetryConfig {
            sampling: Sampling::AlwaysOn,
            exporter: Exporter::Memory(spans.clone()),
            log_filter: Some("info".to_owned()),
            ..TelemetryConfig::default()
        };
        let guard = tb_telemetry::init_services_with_writer(&SERVICES, config, logs.clone())
            .expect("telemetry");
        Telemetry { spans, logs, guard }
    })
}

/// A queue of the test's own.
pub(crate) fn queue() -> String {
    tb_messaging::amqp::scoped_queue(tb_messaging::amqp::SCAN_TASKS, "test")
}

/// Every service on `queue`, fast mocks, the real RabbitMQ and the embedded Kafka (or
/// `TB_KAFKA_BROKERS`).
pub(crate) fn config(queue: &str) -> PipelineConfig {
    let kafka =
        std::env::var("TB_KAFKA_BROKERS").map_or(KafkaChoice::Embedded, KafkaChoice::External);
    let mut c = PipelineConfig {
        wiring: Wiring::ephemeral(amqp_url(), kafka, queue.to_owned()),
        store_latency: Duration::from_millis(1),
        ..PipelineConfig::default()
    };
    c.vision.latency = Latency::Constant { ms: 5.0 };
    c.llm.ttft = Latency::Constant { ms: 5.0 };
    c.llm.per_token = Latency::Constant { ms: 0.1 };
    c.llm.tokens = 10;
    c.worker.rule_match_work = Duration::from_millis(1);
    c.worker.retry_backoff = Duration::from_millis(10);
    c.consumers.handle_latency = Duration::from_millis(1);
    c.consumers.grant_latency = Duration::from_millis(1);
    c
}

/// The spans of `trace_id`, polled until `done` holds for them or 10 s passed (spans end after
/// the consumers report, and export in batches).
pub(crate) async fn trace_until(
    trace_id: TraceId,
    done: impl Fn(&[FinishedSpan]) -> bool,
) -> Vec<FinishedSpan> {
    let t = telemetry();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        t.guard.flush().ok();
        let spans: Vec<FinishedSpan> = t
            .spans
            .spans()
            .into_iter()
            .filter(|s| s.span.span_context.trace_id() == trace_id)
            .collect();
        if done(&spans) || Instant::now() > deadline {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deletes a test's queue (durable, so it would otherwise outlive the test).
pub(crate) async fn drop_queue(queue: &str) {
    let connection = tb_messaging::amqp::connect(&amqp_url())
        .await
        .expect("amqp");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
        .await
        .expect("queue deleted");
}

/// A PostgreSQL schema of the test's own on `TB_POSTGRES_URL` (else the local server).
pub(crate) fn postgres() -> tb_store::PgConfig {
    let schema = format!("tb_test_{}", uuid::Uuid::new_v4().simple());
    tb_store::PgConfig::resolve(None, Some(schema))
}
