//! The scan pipeline end to end on the real RabbitMQ (127.0.0.1:5672, or `TB_AMQP_URL`) and
//! Kafka (embedded, or `TB_KAFKA_BROKERS`): one `POST /scan` is one trace holding every span of
//! the seed's design, with the right kinds, services and parent/child edges.
//!
//! Each test uses its own queue, so tests sharing the broker never take each other's tasks.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{config, drop_queue, queue, telemetry, trace_until};
use opentelemetry::trace::{SpanKind, TraceId};
use serde_json::Value;
use tb_consumers::{CHARACTER, MY};
use tb_mocks::Faults;
use tb_pipeline::Pipeline;
use tb_telemetry::FinishedSpan;

async fn post_scan(pipeline: &Pipeline, traceparent: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = traceparent
        .map(|tp| ("traceparent", tp))
        .into_iter()
        .collect();
    post_scan_with(pipeline, &headers).await
}

/// `POST /scan` for user-7 with these request headers: status and body.
async fn post_scan_with(pipeline: &Pipeline, headers: &[(&str, &str)]) -> (u16, Value) {
    let addr = pipeline.scan_api.expect("scan-api runs");
    let mut request = reqwest::Client::new()
        .post(format!("http://{addr}/scan"))
        .json(&serde_json::json!({"image_url": "https://img.example/bottle.jpg", "user_id": "user-7"}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("scan-api answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Waits until both consumers processed `task_id`.
async fn wait_processed(pipeline: &mut Pipeline, task_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while !(seen.contains(&CHARACTER) && seen.contains(&MY)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, pipeline.processed.recv()).await {
            Ok(Some(p)) if p.task_id == task_id => seen.push(p.consumer),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("scan {task_id} not processed by both consumers: {seen:?}"),
        }
    }
}

/// `n` rewards granted and `n` scans in user-7's history: each scan counted once.
async fn assert_granted(pipeline: &Pipeline, n: usize) {
    let rewards = pipeline.rewards.reward_count().await.expect("rewards");
    let history = pipeline.history.history("user-7").await.expect("history");
    assert_eq!((rewards, history.len()), (n as u64, n));
}

/// Waits until both consumers processed every one of `task_ids`, in any order.
async fn wait_all_processed(pipeline: &mut Pipeline, task_ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen: Vec<(String, &'static str)> = Vec::new();
    let done = |seen: &[(String, &'static str)]| {
        task_ids.iter().all(|t| {
            [CHARACTER, MY]
                .iter()
                .all(|c| seen.iter().any(|(id, by)| id == t && by == c))
        })
    };
    while !done(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, pipeline.processed.recv()).await {
            Ok(Some(p)) => seen.push((p.task_id, p.consumer)),
            Ok(None) | Err(_) => {
                panic!("{task_ids:?} not all processed by both consumers: {seen:?}")
            }
        }
    }
}

/// The spans of `trace_id` once `count` arrived.
async fn trace(trace_id: TraceId, count: usize) -> Vec<FinishedSpan> {
    trace_until(trace_id, |spans| spans.len() >= count).await
}

type Shape = (String, String, String, String);

fn kind(k: &SpanKind) -> &'static str {
    match k {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    }
}

/// Each span as (service, name, kind, parent) with the parent as `service/name`, `root` for a
/// root span, or `remote` for a parent outside the trace's spans. Sorted; ids never compared.
fn shape(spans: &[FinishedSpan]) -> Vec<Shape> {
    let by_id: HashMap<_, _> = spans
        .iter()
        .map(|s| (s.span.span_context.span_id(), s))
        .collect();
    let mut out: Vec<Shape> = spans
        .iter()
        .map(|s| {
            let parent = if s.span.parent_span_id == opentelemetry::trace::SpanId::INVALID {
                "root".to_owned()
            } else {
                by_id
                    .get(&s.span.parent_span_id)
                    .map_or("remote".to_owned(), |p| {
                        format!("{}/{}", p.service, p.span.name)
                    })
            };
            (
                s.service.clone(),
                s.span.name.to_string(),
                kind(&s.span.span_kind).to_owned(),
                parent,
            )
        })
        .collect();
    out.sort();
    out
}

fn expected(queue: &str, root_parent: &str, attempts: usize) -> Vec<Shape> {
    // Named for the queue without its test scope: span names stay few.
    let publish = format!("publish {}", tb_messaging::amqp::queue_template(queue));
    let s = |svc: &str, name: &str, kind: &str, parent: &str| {
        (
            svc.to_owned(),
            name.to_owned(),
            kind.to_owned(),
            parent.to_owned(),
        )
    };
    let mut v = vec![
        s("scan-api", "POST /scan", "server", root_parent),
        s(
            "scan-api",
            "validate_request",
            "internal",
            "scan-api/POST /scan",
        ),
        s("scan-api", "create_task", "internal", "scan-api/POST /scan"),
        s("scan-api", &publish, "producer", "scan-api/POST /scan"),
    ];
    // Every failed attempt: process_image → vision_scan → call_vision_api → the mock's 500,
    // then the retry's publish, whose child is the next attempt.
    for i in 0..attempts {
        let parent = if i == 0 {
            format!("scan-api/{publish}")
        } else {
            format!("worker/{publish}")
        };
        v.push(s("worker", "process_image", "consumer", &parent));
        v.push(s(
            "worker",
            "vision_scan",
            "internal",
            "worker/process_image",
        ));
        v.push(s(
            "worker",
            "call_vision_api",
            "client",
            "worker/vision_scan",
        ));
        v.push(s(
            "vision-api",
            "POST /v1/analyze",
            "server",
            "worker/call_vision_api",
        ));
        if i + 1 < attempts {
            v.push(s("worker", &publish, "producer", "worker/process_image"));
        }
    }
    v.extend([
        s("worker", "rule_match", "internal", "worker/process_image"),
        s("worker", "answer_gen", "internal", "worker/process_image"),
        s("worker", "call_llm_api", "client", "worker/answer_gen"),
        s(
            "llm-api",
            "POST /v1/chat/completions",
            "server",
            "worker/call_llm_api",
        ),
        s(
            "worker",
            "save_to_event_store",
            "internal",
            "worker/process_image",
        ),
        s(
            "worker",
            "publish scan.completed",
            "producer",
            "worker/process_image",
        ),
        s(
            "character-consumer",
            "process scan.completed",
            "consumer",
            "worker/publish scan.completed",
        ),
        s(
            "character-consumer",
            "handle_scan_completed",
            "internal",
            "character-consumer/process scan.completed",
        ),
        s(
            "character-consumer",
            "grant_reward",
            "internal",
            "character-consumer/handle_scan_completed",
        ),
        s(
            "character-consumer",
            "publish character.granted",
            "producer",
            "character-consumer/process scan.completed",
        ),
        s(
            "my-consumer",
            "process scan.completed",
            "consumer",
            "worker/publish scan.completed",
        ),
        s(
            "my-consumer",
            "record_history",
            "internal",
            "my-consumer/process scan.completed",
        ),
    ]);
    v.sort();
    v
}

fn trace_id_of(body: &Value) -> TraceId {
    let hex = body["trace_id"].as_str().expect("trace_id in the response");
    TraceId::from_hex(hex).expect("a trace id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scan_is_one_trace_through_http_rabbitmq_and_kafka() {
    let t = telemetry();
    let queue = queue();
    let mut pipeline = Pipeline::start(config(&queue))
        .await
        .expect("pipeline starts");

    let (status, body) = post_scan(&pipeline, None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "processing");
    let task_id = body["task_id"].as_str().expect("task_id").to_owned();
    let trace_id = trace_id_of(&body);
    wait_processed(&mut pipeline, &task_id).await;

    let want = expected(&queue, "root", 1);
    let spans = trace(trace_id, want.len()).await;
    assert_eq!(shape(&spans), want);

    // No span of this scan landed in another trace.
    let elsewhere = t
        .spans
        .spans()
        .into_iter()
        .filter(|s| s.span.span_context.trace_id() != trace_id)
        .filter(|s| {
            s.span
                .attributes
                .iter()
                .any(|kv| kv.value.as_str() == task_id.as_str())
        })
        .count();
    assert_eq!(elsewhere, 0, "spans of the scan outside its trace");

    // The worker's log line for this scan carries the trace id scan-api returned.
    let line = t
        .logs
        .lines()
        .into_iter()
        .find(|l| l["message"] == "processing scan" && l["task.id"] == task_id.as_str())
        .expect("the worker logged the scan");
    assert_eq!(line["trace_id"], body["trace_id"]);
    assert!(line["span_id"].as_str().is_some_and(|s| s.len() == 16));

    // GET /scan/{id} reports the result.
    let addr = pipeline.scan_api.expect("scan-api runs");
    let status: Value = reqwest::get(format!("http://{addr}/scan/{task_id}"))
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(
        status["result"]["category"],
        tb_mocks::vision::category_of("https://img.example/bottle.jpg")
    );
    assert_eq!(pipeline.rewards.reward_count().await.expect("rewards"), 1);
    assert_eq!(
        pipeline.history.history("user-7").await.expect("history"),
        [task_id.as_str()]
    );

    assert!(pipeline.shutdown().await.is_empty());
    drop_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_incoming_traceparent_is_continued_and_an_invalid_one_starts_a_new_trace() {
    telemetry();
    let queue = queue();
    let mut pipeline = Pipeline::start(config(&queue))
        .await
        .expect("pipeline starts");

    let incoming = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (status, body) = post_scan(
        &pipeline,
        Some(&format!("00-{incoming}-00f067aa0ba902b7-01")),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["trace_id"], incoming);
    let task_id = body["task_id"].as_str().expect("task_id").to_owned();
    wait_processed(&mut pipeline, &task_id).await;
    let want = expected(&queue, "remote", 1);
    assert_eq!(shape(&trace(trace_id_of(&body), want.len()).await), want);

    for bad in [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
    ] {
        let (status, body) = post_scan(&pipeline, Some(bad)).await;
        assert_eq!(status, 202, "{bad}: {body}");
        let trace_id = body["trace_id"].as_str().expect("a new trace");
        assert_ne!(trace_id.to_lowercase(), incoming, "{bad}");
        assert_ne!(trace_id, "00000000000000000000000000000000", "{bad}");
        let task_id = body["task_id"].as_str().expect("task_id").to_owned();
        wait_processed(&mut pipeline, &task_id).await;
        let want = expected(&queue, "root", 1);
        assert_eq!(
            shape(&trace(trace_id_of(&body), want.len()).await),
            want,
            "{bad}"
        );
    }
    assert!(pipeline.shutdown().await.is_empty());
    drop_queue(&queue).await;
}

/// `traceparent` and `tracestate` of each record on `topic` whose payload names one of
/// `task_ids`, in their order, read by a consumer group of the test's own.
async fn record_contexts(
    brokers: &str,
    topic: &str,
    task_ids: &[String],
) -> Vec<(String, Option<String>)> {
    use opentelemetry::propagation::Extractor;
    use rdkafka::Message;
    use rdkafka::consumer::Consumer;

    let group = format!("test-{}", uuid::Uuid::new_v4());
    let consumer = tb_messaging::kafka::consumer(brokers, &group).expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribed");
    let mut found: HashMap<String, (String, Option<String>)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while found.len() < task_ids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{topic}: records of {task_ids:?} missing"))
            .expect("a record");
        let payload = String::from_utf8_lossy(message.payload().unwrap_or_default());
        let Some(task_id) = task_ids.iter().find(|t| payload.contains(t.as_str())) else {
            continue;
        };
        let headers = message.headers().expect("trace headers");
        let extractor = tb_telemetry::carrier::kafka::KafkaExtractor::new(headers);
        let read = |key: &str| extractor.get(key).map(str::to_owned);
        let context = (
            read("traceparent").expect("a traceparent"),
            read("tracestate"),
        );
        found.insert(task_id.clone(), context);
    }
    task_ids.iter().map(|t| found[t].clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_random_flag_and_a_level_2_tracestate_survive_http_rabbitmq_and_kafka() {
    telemetry();
    let queue = queue();
    let mut pipeline = Pipeline::start(config(&queue))
        .await
        .expect("pipeline starts");
    let incoming = "4bf92f3577b34da6a3ce929d0e0e4736";
    // Level 2 keys the SDK's TraceState refuses, and a duplicated key.
    let state = "foo@@bar=1,rojo=2,foo@@bar=3,t@vvvvvvvvvvvvvvv=4";
    // Sent flags, and the flags every later hop must carry: 02 and 00 are not sampled, so the
    // SDK drops those spans; a trace started by scan-api has a random id.
    let cases = [
        (Some("02"), "02"),
        (Some("00"), "00"),
        (Some("01"), "01"),
        (None, "03"),
    ];
    let mut task_ids = Vec::new();
    for (sent, _) in cases {
        let traceparent = sent.map(|flags| format!("00-{incoming}-00f067aa0ba902b7-{flags}"));
        let mut headers = vec![("tracestate", state)];
        headers.extend(traceparent.as_deref().map(|tp| ("traceparent", tp)));
        let (status, body) = post_scan_with(&pipeline, &headers).await;
        assert_eq!(status, 202, "{body}");
        task_ids.push(body["task_id"].as_str().expect("task_id").to_owned());
    }
    let ids: Vec<&str> = task_ids.iter().map(String::as_str).collect();
    wait_all_processed(&mut pipeline, &ids).await;
    // scan.completed left the worker (after HTTP into scan-api and AMQP into the worker);
    // character.granted left the character consumer (after a Kafka hop as well).
    for topic in [
        tb_messaging::kafka::SCAN_COMPLETED,
        tb_messaging::kafka::CHARACTER_GRANTED,
    ] {
        let contexts = record_contexts(&pipeline.kafka_brokers, topic, &task_ids).await;
        for ((sent, want), (traceparent, tracestate)) in cases.iter().zip(contexts) {
            assert_eq!(
                &traceparent[53..],
                *want,
                "{sent:?} on {topic}: {traceparent}"
            );
            if sent.is_some() {
                assert_eq!(&traceparent[3..35], incoming, "{topic}");
                assert_eq!(
                    tracestate.as_deref(),
                    Some("foo@@bar=1,rojo=2,t@vvvvvvvvvvvvvvv=4"),
                    "{sent:?} on {topic}"
                );
            } else {
                assert_eq!(
                    tracestate, None,
                    "a tracestate without a traceparent is dropped"
                );
            }
        }
    }
    assert!(pipeline.shutdown().await.is_empty());
    drop_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_attempt_is_retried_in_the_same_trace_and_completes() {
    telemetry();
    let queue = queue();
    let mut c = config(&queue);
    c.vision.faults = Faults {
        fail_first: 1,
        ..Faults::default()
    };
    let mut pipeline = Pipeline::start(c).await.expect("pipeline starts");
    let (status, body) = post_scan(&pipeline, None).await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_id"].as_str().expect("task_id").to_owned();
    wait_processed(&mut pipeline, &task_id).await;

    let want = expected(&queue, "root", 2);
    let spans = trace(trace_id_of(&body), want.len()).await;
    assert_eq!(shape(&spans), want);
    let attempts: Vec<i64> = spans
        .iter()
        .filter(|s| s.span.name == "process_image")
        .filter_map(|s| {
            s.span
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == "celery.retries")
        })
        .filter_map(|kv| kv.value.as_str().parse().ok())
        .collect();
    let mut attempts = attempts;
    attempts.sort_unstable();
    assert_eq!(attempts, [0, 1]);
    assert_eq!(
        pipeline
            .worker
            .retried
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let record = pipeline
        .store
        .get(&task_id)
        .await
        .expect("store")
        .expect("known");
    assert_eq!(record.attempts, 2);
    assert_eq!(record.state, tb_store::ScanState::Completed);
    assert!(pipeline.shutdown().await.is_empty());
    drop_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_waiting_out_its_backoff_holds_no_worker_slot() {
    telemetry();
    let queue = queue();
    let mut c = config(&queue);
    // One slot, and a first attempt that fails into a long backoff.
    c.worker.concurrency = 1;
    c.worker.prefetch = 1;
    c.worker.retry_backoff = Duration::from_secs(4);
    c.vision.faults = Faults {
        fail_first: 1,
        ..Faults::default()
    };
    let mut pipeline = Pipeline::start(c).await.expect("pipeline starts");
    let (_, first) = post_scan(&pipeline, None).await;
    let first = first["task_id"].as_str().expect("task_id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pipeline
        .worker
        .retried
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(Instant::now() < deadline, "the first attempt never failed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The retry is waiting out its 4 s. A second scan gets the one slot meanwhile: had the
    // retry slept in the slot, the second scan would finish only after it, 4 s from now.
    // (The worker's own count, not the consumers': their groups may still be joining.)
    let completed = || {
        pipeline
            .worker
            .completed
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let posted = Instant::now();
    let (_, second) = post_scan(&pipeline, None).await;
    let second = second["task_id"].as_str().expect("task_id").to_owned();
    while completed() == 0 {
        assert!(
            posted.elapsed() < Duration::from_secs(3),
            "the second scan waited behind a retry's backoff"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The retry still comes back after its backoff, and completes. (Both scans are awaited
    // together: their events may interleave once the consumer groups have joined.)
    wait_all_processed(&mut pipeline, &[&second, &first]).await;
    assert!(posted.elapsed() >= Duration::from_secs(3));
    let record = pipeline
        .store
        .get(&first)
        .await
        .expect("store")
        .expect("known");
    assert_eq!(
        (record.attempts, record.state),
        (2, tb_store::ScanState::Completed)
    );
    assert!(pipeline.shutdown().await.is_empty());
    drop_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_that_fails_every_attempt_is_marked_failed_with_an_error_span() {
    telemetry();
    let queue = queue();
    let mut c = config(&queue);
    c.vision.faults = Faults {
        error_rate: 1.0,
        ..Faults::default()
    };
    c.worker.max_retries = 2;
    let pipeline = Pipeline::start(c).await.expect("pipeline starts");
    let (status, body) = post_scan(&pipeline, None).await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_id"].as_str().expect("task_id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = pipeline
            .store
            .get(&task_id)
            .await
            .expect("store")
            .expect("known");
        if record.state == tb_store::ScanState::Failed {
            assert_eq!(record.attempts, 3);
            break;
        }
        assert!(Instant::now() < deadline, "scan never failed: {record:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spans = trace_until(trace_id_of(&body), |spans| {
        spans
            .iter()
            .filter(|s| s.span.name == "process_image")
            .count()
            >= 3
    })
    .await;
    let processes: Vec<_> = spans
        .iter()
        .filter(|s| s.span.name == "process_image")
        .collect();
    assert_eq!(processes.len(), 3);
    let errors = processes
        .iter()
        .filter(|s| matches!(s.span.status, opentelemetry::trace::Status::Error { .. }))
        .count();
    assert_eq!(errors, 1, "only the last attempt fails the task");
    assert_eq!(pipeline.rewards.reward_count().await.expect("rewards"), 0);
    assert!(pipeline.shutdown().await.is_empty());
    drop_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_ack_is_redelivered_and_completes_without_a_double_reward() {
    telemetry();
    let queue = queue();
    let mut c = config(&queue);
    c.worker.crash_before_ack = 1;
    let worker_config = c.worker.clone();
    let mut pipeline = Pipeline::start(c.clone()).await.expect("pipeline starts");
    let (status, body) = post_scan(&pipeline, None).await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_id"].as_str().expect("task_id").to_owned();

    // The worker announces the scan, then dies before acking.
    let exit = tokio::time::timeout(Duration::from_secs(30), pipeline.next_exit())
        .await
        .expect("the worker crashes");
    assert_eq!(
        exit.map(|(name, r)| (name, r.is_err())),
        Some(("worker", true))
    );

    // A new worker gets the redelivery and acks it without granting again.
    let link = tb_messaging::amqp::Link::connect(&c.wiring.amqp_url)
        .await
        .expect("amqp");
    let retries = tb_messaging::amqp::Publisher::new(&link, &queue)
        .await
        .expect("publisher");
    let producer = tb_messaging::kafka::producer(&pipeline.kafka_brokers).expect("producer");
    let worker = tb_worker::Worker::new(
        tb_worker::WorkerConfig {
            crash_before_ack: 0,
            queue: queue.clone(),
            ..worker_config
        },
        retries,
        producer,
        pipeline.store.clone(),
    );
    let stats = worker.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        worker
            .run(&link, async {
                let _ = stopped.await;
            })
            .await
    });
    wait_processed(&mut pipeline, &task_id).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.duplicates.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the redelivery never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    run.await
        .expect("joins")
        .expect("the new worker stops cleanly");
    assert_eq!(pipeline.rewards.reward_count().await.expect("rewards"), 1);
    let record = pipeline
        .store
        .get(&task_id)
        .await
        .expect("store")
        .expect("known");
    assert_eq!(
        (record.state, record.announced),
        (tb_store::ScanState::Completed, true)
    );
    pipeline.shutdown().await;
    drop_queue(&queue).await;
}

/// `url` (`amqp://user:pass@host:port/vhost`) with its host and port replaced by `addr`.
fn through(url: &str, addr: std::net::SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (user, rest) = rest.rsplit_once('@').map_or(("", rest), |(u, r)| (u, r));
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let user = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    format!("{scheme}://{user}{addr}{path}")
}

/// The host and port of `url`, resolved.
async fn authority(url: &str) -> std::net::SocketAddr {
    let rest = url.split_once("://").expect("a URL").1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host = rest.split('/').next().expect("host");
    tokio::net::lookup_host(host)
        .await
        .expect("resolves")
        .next()
        .expect("an address")
}

/// `POST /scan`: status, body and `Retry-After`.
async fn post_scan_answer(pipeline: &Pipeline) -> (u16, Value, Option<String>) {
    let addr = pipeline.scan_api.expect("scan-api runs");
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/scan"))
        .json(&serde_json::json!({"image_url": "https://img.example/bottle.jpg", "user_id": "user-7"}))
        .send()
        .await
        .expect("scan-api answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        status,
        response.json().await.expect("a JSON body"),
        retry_after,
    )
}

/// Every span of `spans` has its parent among them, except the one root.
fn whole(spans: &[FinishedSpan]) -> bool {
    let ids: std::collections::HashSet<_> = spans
        .iter()
        .map(|s| s.span.span_context.span_id())
        .collect();
    let roots = spans
        .iter()
        .filter(|s| !ids.contains(&s.span.parent_span_id))
        .count();
    roots == 1
}

/// No service of `pipeline` has stopped.
async fn still_running(pipeline: &mut Pipeline) {
    let exit = tokio::time::timeout(Duration::from_millis(50), pipeline.next_exit()).await;
    assert!(
        exit.is_err(),
        "a service stopped: {:?}",
        exit.ok()
            .flatten()
            .map(|(n, r)| (n, r.err().map(|e| e.to_string())))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_outage_refuses_scans_then_recovers_without_losing_an_accepted_one() {
    telemetry();
    let queue = queue();
    let mut c = config(&queue);
    let proxy = tb_faults::Proxy::start(authority(&c.wiring.amqp_url).await)
        .await
        .expect("proxy");
    c.wiring.amqp_url = through(&c.wiring.amqp_url, proxy.addr());
    // A slow Vision call keeps the first scan in the worker while the broker goes away.
    c.vision.latency = tb_mocks::Latency::Constant { ms: 1500.0 };
    let mut pipeline = Pipeline::start(c).await.expect("pipeline starts");

    let (status, first) = post_scan(&pipeline, None).await;
    assert_eq!(status, 202, "{first}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // RabbitMQ is away for 3 s: every scan is refused with 503 and Retry-After, promptly.
    proxy.set(tb_faults::Fault::Down);
    let down = Instant::now();
    let mut refused = 0;
    while down.elapsed() < Duration::from_secs(3) {
        let asked = Instant::now();
        let (status, body, retry_after) = post_scan_answer(&pipeline).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "broker_unavailable", "{body}");
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert!(
            asked.elapsed() < Duration::from_secs(6),
            "a refusal took {:?}",
            asked.elapsed()
        );
        refused += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused > 0);

    // Back: scans are accepted again within a few seconds (the goal is 2 s; printed, not timed).
    proxy.set(tb_faults::Fault::None);
    let up = Instant::now();
    let after = loop {
        let (status, body, _) = post_scan_answer(&pipeline).await;
        if status == 202 {
            break body;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            up.elapsed() < Duration::from_secs(20),
            "scan-api never recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "scan-api accepted scans again {:?} after RabbitMQ returned",
        up.elapsed()
    );

    let ids = [&first, &after].map(|b| b["task_id"].as_str().expect("task_id").to_owned());
    wait_all_processed(&mut pipeline, &[&ids[0], &ids[1]]).await;
    still_running(&mut pipeline).await;
    // The first scan's ack went down with its channel: RabbitMQ redelivered it, and the worker
    // acked the redelivery without doing the work or granting twice.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pipeline
        .worker
        .duplicates
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the unacked scan was never redelivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_granted(&pipeline, 2).await;

    // Its trace stayed whole: the redelivery is one more span in it, under the same publish.
    let spans = trace_until(trace_id_of(&first), |spans| {
        spans
            .iter()
            .filter(|s| s.span.name == "process_image")
            .count()
            >= 2
            && spans.iter().any(|s| s.span.name == "record_history")
    })
    .await;
    assert!(whole(&spans), "{:#?}", shape(&spans));
    assert_eq!(
        spans
            .iter()
            .filter(|s| s.span.name == "process_image")
            .count(),
        2,
        "{:#?}",
        shape(&spans)
    );
    let want = expected(&queue, "root", 1);
    assert_eq!(shape(&trace(trace_id_of(&after), want.len()).await), want);

    assert!(pipeline.shutdown().await.is_empty());
    drop_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_outage_delays_scans_but_loses_none_and_stops_no_consumer() {
    telemetry();
    let queue = queue();
    let mut c = config(&queue);
    c.wiring.kafka = tb_pipeline::KafkaChoice::Embedded;
    let mut pipeline = Pipeline::start(c).await.expect("pipeline starts");
    let kafka = pipeline
        .embedded_kafka()
        .and_then(tb_messaging::kafka::EmbeddedKafka::control)
        .expect("embedded kafka");
    survives_a_kafka_outage(&mut pipeline, |down| {
        kafka.set_down(down).expect("broker down or up");
    })
    .await;
    // The broker's thread ends (and the pipeline's shutdown joins it) once no control is left.
    drop(kafka);
    assert!(pipeline.shutdown().await.is_empty());
    drop_queue(&queue).await;
}

/// tansu, a Kafka-compatible broker process (`TB_TANSU` names its binary; `.ci/run` sets it),
/// behind a fault proxy it advertises as its own address, so every client connection, the
/// reconnects included, goes through the proxy. The proxy runs on a thread and runtime of its
/// own: librdkafka's clients block their callers at times, and a proxy sharing the test's
/// runtime would then stall the very traffic they wait for. Both stop when dropped.
struct Tansu {
    process: std::process::Child,
    proxy: tb_faults::Proxy,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Tansu {
    async fn start(binary: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, proxy) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let _ = ready.send(tb_faults::Proxy::start(port).await.expect("proxy"));
                let _ = stopped.await;
            });
        });
        let proxy = proxy.await.expect("the proxy started");
        let (listen, advertised) = (format!("tcp://{port}"), format!("tcp://{}", proxy.addr()));
        let process = std::process::Command::new(binary)
            .args(["broker", "--listener-url", &listen])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tansu starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(port).await.is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            process,
            proxy,
            _stop: stop,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TB_TANSU, tansu's binary (.ci/run provides it)"]
async fn a_kafka_outage_on_a_separate_broker_process_loses_nothing() {
    let binary =
        std::env::var("TB_TANSU").expect("needs TB_TANSU, tansu's binary (.ci/run provides it)");
    telemetry();
    let tansu = Tansu::start(&binary).await;
    let queue = queue();
    let mut c = config(&queue);
    c.wiring.kafka = tb_pipeline::KafkaChoice::External(tansu.proxy.addr().to_string());
    let test = async {
        let mut pipeline = Pipeline::start(c).await.expect("pipeline starts on tansu");
        survives_a_kafka_outage(&mut pipeline, |down| {
            tansu.proxy.set(if down {
                tb_faults::Fault::Down
            } else {
                tb_faults::Fault::None
            });
        })
        .await;
        assert!(pipeline.shutdown().await.is_empty());
    };
    tokio::time::timeout(Duration::from_secs(180), test)
        .await
        .expect("the outage test finished within 3 minutes");
    drop_queue(&queue).await;
}

/// One scan before, three during a 3 s Kafka outage (`set_down`): scans are still accepted
/// (RabbitMQ holds them), every one arrives once Kafka is back, with its trace whole, one
/// reward each, and no service stopped.
async fn survives_a_kafka_outage(pipeline: &mut Pipeline, set_down: impl Fn(bool)) {
    let (status, before) = post_scan(pipeline, None).await;
    assert_eq!(status, 202, "{before}");
    let before = before["task_id"].as_str().expect("task_id").to_owned();
    wait_processed(pipeline, &before).await;

    set_down(true);
    let mut during = Vec::new();
    for _ in 0..3 {
        let (status, body) = post_scan(pipeline, None).await;
        assert_eq!(status, 202, "{body}");
        during.push(body);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    set_down(false);

    let ids: Vec<String> = during
        .iter()
        .map(|b| b["task_id"].as_str().expect("task_id").to_owned())
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    wait_all_processed(pipeline, &refs).await;
    still_running(pipeline).await;
    assert_granted(pipeline, 4).await;
    for body in &during {
        let spans = trace_until(trace_id_of(body), |spans| {
            spans.iter().any(|s| s.span.name == "record_history")
                && spans
                    .iter()
                    .any(|s| s.span.name == "publish character.granted")
        })
        .await;
        assert!(whole(&spans), "{:#?}", shape(&spans));
    }
}

/// The consumer spans of `task_id` marked as duplicate deliveries, polled for up to 10 s
/// until there are `n`.
async fn duplicates_of(task_id: &str, n: usize) -> usize {
    let t = telemetry();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        t.guard.flush().ok();
        let found = t
            .spans
            .spans()
            .into_iter()
            .filter(|s| s.span.name == "process scan.completed")
            .filter(|s| {
                let attr = |k: &str| s.span.attributes.iter().find(|kv| kv.key.as_str() == k);
                attr("task.id").is_some_and(|kv| kv.value.as_str() == task_id)
                    && attr(tb_consumers::DUPLICATE)
                        .is_some_and(|kv| kv.value == opentelemetry::Value::Bool(true))
            })
            .count();
        if found >= n || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_the_write_is_a_database_span_and_a_restarted_consumer_never_grants_twice() {
    let queue = queue();
    let pg = common::postgres();
    let mut durable = config(&queue);
    durable.store = tb_store::StoreChoice::Postgres(pg.clone());
    let mut pipeline = Pipeline::start(durable.clone())
        .await
        .expect("pipeline starts (PostgreSQL must answer; .ci/run starts it)");
    let (status, body) = post_scan(&pipeline, None).await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_id"].as_str().expect("task_id").to_owned();
    wait_processed(&mut pipeline, &task_id).await;

    // `save_to_event_store` now holds a real database CLIENT span.
    let mut want = expected(&queue, "root", 1);
    want.push((
        "worker".to_owned(),
        "UPDATE scans".to_owned(),
        "client".to_owned(),
        "worker/save_to_event_store".to_owned(),
    ));
    want.sort();
    let spans = trace(trace_id_of(&body), want.len()).await;
    assert_eq!(shape(&spans), want);
    let db = spans
        .iter()
        .find(|s| s.span.name == "UPDATE scans")
        .expect("the database span");
    let attr = |k: &str| {
        db.span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.as_str().into_owned())
    };
    assert_eq!(attr("db.system.name").as_deref(), Some("postgresql"));
    assert_eq!(attr("db.collection.name").as_deref(), Some("scans"));
    assert_eq!(attr("db.operation.name").as_deref(), Some("UPDATE"));
    assert!(attr("db.namespace").is_some_and(|n| n.ends_with(&format!("|{}", pg.schema))));
    assert!(attr("db.query.text").is_some_and(|q| q.starts_with("UPDATE scans SET")));
    assert_eq!(pipeline.rewards.reward_count().await.expect("rewards"), 1);
    let saved = pipeline.store.get(&task_id).await.expect("store answers");
    assert!(saved.is_some_and(|r| r.announced));
    assert!(pipeline.shutdown().await.is_empty());

    // The consumers restart (new processes, a Kafka that forgot their offsets) and the same
    // event arrives again: PostgreSQL remembers the reward and the history entry.
    let mut restarted = config(&queue);
    restarted.store = tb_store::StoreChoice::Postgres(pg.clone());
    restarted.services = vec![CHARACTER, MY];
    let mut consumers = Pipeline::start(restarted).await.expect("consumers start");
    let producer = tb_messaging::kafka::producer(&consumers.kafka_brokers).expect("producer");
    let event = tb_messaging::events::ScanCompleted {
        task_id: task_id.clone(),
        user_id: "user-7".to_owned(),
        image_url: "https://img.example/bottle.jpg".to_owned(),
        category: "plastic".to_owned(),
        confidence: 0.9,
        rule: "recycle".to_owned(),
        answer: "rinse".to_owned(),
    };
    let payload = serde_json::to_vec(&event).expect("json");
    tb_messaging::kafka::publish(
        &producer,
        tb_messaging::kafka::SCAN_COMPLETED,
        "user-7",
        &task_id,
        &payload,
    )
    .await
    .expect("published");
    wait_processed(&mut consumers, &task_id).await;
    assert_eq!(consumers.rewards.reward_count().await.expect("rewards"), 1);
    assert_eq!(
        consumers.history.history("user-7").await.expect("history"),
        [task_id.as_str()]
    );
    assert_eq!(
        duplicates_of(&task_id, 2).await,
        2,
        "both deliveries are duplicates"
    );
    assert!(consumers.shutdown().await.is_empty());
    drop_queue(&queue).await;
    tb_store::testing::drop_schema(&pg).await;
}
