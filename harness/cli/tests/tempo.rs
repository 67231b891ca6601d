//! The verifier through a Tempo-shaped query API, as CI users with a trace backend run it: the
//! services export OTLP to `tracebench sink` in a process of its own, and the run reads the
//! traces back through that sink's query API (`infra.tempo_url`), not from its own memory.
//! Needs RabbitMQ at 127.0.0.1:5672 (or `TB_AMQP_URL`), as the other end-to-end tests.

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_only_kafka_edges_broken, run_file, scratch, strip_kafka_over_otlp};
use tb_traces::TraceClient;
use tb_verify::{Relation, Scan, Template};

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

/// `tracebench sink` in a child process, killed when dropped.
struct SinkProcess(Child);

impl SinkProcess {
    fn start(grpc: u16, http: u16) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_tracebench"))
            .args(["sink", "--grpc-addr", &format!("127.0.0.1:{grpc}")])
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the sink starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", http)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the sink never listened on {http}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self(child)
    }
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every trace the sink holds, judged here by the embedded path's rules over all of their spans
/// at once; the scans are the traces holding scan-api's `create_task` span.
async fn judged_from_everything(url: &str) -> tb_verify::TraceSummary {
    let client = TraceClient::new(url);
    let hits = client.search(&[], 10_000).await.expect("search");
    let mut spans = Vec::new();
    for hit in &hits {
        let trace = client.trace(&hit.trace_id).await.expect("fetch");
        spans.extend(trace.unwrap_or_default());
    }
    let scans: Vec<Scan> = spans
        .iter()
        .filter(|s| s.name == "create_task")
        .map(|s| Scan {
            task_id: s.attr("task.id").expect("task.id").to_owned(),
            trace_id: s.trace_id.clone(),
        })
        .collect();
    let template = Template::seed_pipeline(Relation::Child);
    tb_verify::judge(&template, &scans, &spans, |_| true).0
}

#[test]
fn through_a_sink_in_its_own_process_the_query_path_reaches_the_embedded_verdict() {
    let (grpc, http) = (free_port(), free_port());
    let _sink = SinkProcess::start(grpc, http);
    let url = format!("http://127.0.0.1:{http}");
    let dir = scratch("tempo-path");
    // `strip-kafka.yaml`, shorter, with its spans sent to the sink process.
    let file = dir.join("strip-kafka-tempo.yaml");
    let infra = format!("otlp_endpoint: 'http://127.0.0.1:{grpc}', tempo_url: '{url}'");
    std::fs::write(&file, strip_kafka_over_otlp("strip-kafka-tempo", &infra)).expect("written");
    // The default expectation (every trace complete) fails: the breakage was caught.
    let (_, result) = run_file(file.to_str().expect("utf-8"), &dir, &[], &[], 1);
    let traces = &result["traces"];
    assert_eq!(traces["source"], url.as_str(), "{traces}");
    assert_only_kafka_edges_broken(traces);
    let broken = traces["broken_edges"].as_object().expect("broken_edges");

    // The same verdict as judging every span the sink holds at once, as the embedded store does.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let embedded = runtime.block_on(judged_from_everything(&url));
    let by_edge: serde_json::Map<String, serde_json::Value> = embedded
        .broken_edges
        .iter()
        .map(|(edge, n)| (edge.clone(), (*n).into()))
        .collect();
    assert_eq!(broken, &by_edge, "query path against everything at once");
    assert_eq!(traces["expected"], embedded.expected);
    assert_eq!(traces["complete"], embedded.complete);
    assert!(embedded.missing_spans.is_empty(), "{embedded:?}");
}
