//! The Docker path end to end: RabbitMQ, Apache Kafka (KRaft) and Grafana Tempo started by
//! testcontainers, one scan through the pipeline, exported over OTLP to Tempo, and read back
//! through Tempo's API by the same client and verifier the embedded sink uses.
//!
//! Needs a Docker engine: `cargo test -p tracebench --features docker --test docker`. The
//! machines this project is developed on have none, so it has never run there.
#![cfg(feature = "docker")]

mod common;

use std::time::Duration;

use common::{assert_only_kafka_edges_broken, run_file, scratch, strip_kafka_over_otlp};

use tb_pipeline::{Pipeline, PipelineConfig, SERVICES, Wiring};
use tb_runner::infra::{Env, provision};
use tb_scenario::{Infra, InfraMode};
use tb_telemetry::{Exporter, Protocol, Sampling, TelemetryConfig};
use tb_traces::TraceClient;
use tb_verify::{Relation, Scan, Template, judge};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_carry_one_scan_traced_into_tempo() {
    let infra = Infra {
        rabbitmq: InfraMode::Docker,
        amqp_url: None,
        kafka: InfraMode::Docker,
        kafka_brokers: None,
        traces: InfraMode::Docker,
        otlp_endpoint: None,
        tempo_url: None,
    };
    let provisioned = provision(&infra, &Env::default(), true)
        .await
        .expect("containers start");
    assert_eq!(provisioned.report.rabbitmq.source, "docker");
    assert_eq!(provisioned.report.kafka.source, "docker");
    assert_eq!(provisioned.report.traces.source, "docker");
    let guard = tb_telemetry::init_services(
        &SERVICES,
        TelemetryConfig {
            sampling: Sampling::AlwaysOn,
            exporter: Exporter::Otlp {
                protocol: Protocol::Grpc,
                endpoint: provisioned.otlp_endpoint.clone(),
                timeout: Duration::from_secs(10),
            },
            ..TelemetryConfig::default()
        },
    )
    .expect("telemetry");

    let mut config = PipelineConfig::seed(0.01);
    config.wiring = Wiring::ephemeral(
        provisioned.amqp_url.clone(),
        provisioned.kafka.clone(),
        tb_messaging::amqp::SCAN_TASKS.to_owned(),
    );
    let mut pipeline = Pipeline::start(config).await.expect("pipeline starts");
    let addr = pipeline.scan_api.expect("scan-api");
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{addr}/scan"))
        .json(&serde_json::json!({"image_url": "https://img.example/can.jpg", "user_id": "u1"}))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let scan = Scan {
        task_id: body["task_id"].as_str().expect("task id").to_owned(),
        trace_id: body["trace_id"].as_str().expect("trace id").to_owned(),
    };
    let mut seen = 0;
    while seen < 2 {
        let p = tokio::time::timeout(Duration::from_secs(120), pipeline.processed.recv())
            .await
            .expect("both consumers process the scan")
            .expect("channel open");
        if p.task_id == scan.task_id {
            seen += 1;
        }
    }
    guard.flush().expect("exported to Tempo");

    let tempo = TraceClient::new(provisioned.tempo_url.clone().expect("Tempo's query URL"));
    let template = Template::seed_pipeline(Relation::Child);
    let one = std::slice::from_ref(&scan);
    let polled = tempo
        .trace_until(
            &scan.trace_id,
            |spans| judge(&template, one, spans, |_| true).0.complete == 1,
            tokio::time::Instant::now() + Duration::from_secs(60),
            Duration::from_millis(500),
        )
        .await
        .expect("Tempo answers");
    let (summary, verdicts) = judge(&template, one, &polled.spans, |_| true);
    assert_eq!(summary.complete, 1, "{:?}", verdicts[0].problems);
    pipeline.shutdown().await;
}

/// The verifier's query path against a real Tempo: `strip-kafka` with every backend in a
/// container, spans exported to Tempo and read back through its API (tag search included),
/// reaching the same verdict as `tests/tempo.rs` does against `tracebench sink`.
#[test]
fn through_tempo_the_stripped_kafka_edges_are_broken_not_missing() {
    let dir = scratch("docker-tempo");
    let file = dir.join("strip-kafka-docker.yaml");
    let scenario = strip_kafka_over_otlp(
        "strip-kafka-docker",
        "rabbitmq: docker, kafka: docker, traces: docker",
    );
    std::fs::write(&file, scenario).expect("written");
    let (_, result) = run_file(file.to_str().expect("utf-8"), &dir, &[], &[], 1);
    let traces = &result["traces"];
    assert!(
        traces["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("http")),
        "{traces}"
    );
    assert_only_kafka_edges_broken(traces);
}
