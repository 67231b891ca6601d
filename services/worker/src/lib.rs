//! The scan worker (the seed's Celery worker), speaking Celery's task protocol v2 on RabbitMQ
//! so that a real Python Celery client or worker can take either side.
//!
//! Per task: `process_image` (CONSUMER, the publisher's child or linked to it) →
//! `vision_scan` → `call_vision_api`; `rule_match`; `answer_gen` → `call_llm_api`;
//! `save_to_event_store`; `publish scan.completed` (PRODUCER). The delivery is acked only after
//! Kafka confirmed the event. A Vision or LLM failure is retried the Celery way — the task is
//! republished with `retries` + 1 under the same id after a backoff — up to `max_retries`; then
//! the scan is marked failed. A task whose scan was already announced (a redelivery after a
//! crash) is acked without doing anything twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use rdkafka::producer::FutureProducer;
use serde_json::{Value, json};
use tb_messaging::amqp::{self, Link, Publisher};
use tb_messaging::backoff::Backoff;
use tb_messaging::celery::{PROCESS_IMAGE, TaskMessage};
use tb_messaging::events::ScanCompleted;
use tb_messaging::kafka;
use tb_store::{EventStore, ScanRecord, ScanResult, ScanState};
use tb_telemetry::carrier;
use tb_telemetry::fault::{Lane, Strip, propagate};
use tb_telemetry::service;
use tb_telemetry::spans::{self, ConsumerRelation, MessagingSystem, keys};
use tb_web::client::{CallError, post_json_with};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The service name the worker's spans carry.
pub const SERVICE: &str = "worker";

/// How the worker runs. Build it directly; [`WorkerConfig::default`] has the local demo's wiring
/// and a short `rule_match` (the seed's figures live with the pipeline, `tb_pipeline::seed`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WorkerConfig {
    /// Queue to consume.
    pub queue: String,
    /// Tasks processed at once.
    pub concurrency: usize,
    /// Unacked deliveries RabbitMQ may push ahead (`basic.qos`).
    pub prefetch: u16,
    /// Retries after the first attempt before a scan is marked failed.
    pub max_retries: u32,
    /// Backoff before retry n (0-based) is `retry_backoff × 2ⁿ`, or the server's `Retry-After`
    /// when it sent one; capped at 60 s.
    pub retry_backoff: Duration,
    /// Base URL of the Vision API.
    pub vision_url: String,
    /// Base URL of the LLM API.
    pub llm_url: String,
    /// Timeout of each Vision or LLM call.
    pub call_timeout: Duration,
    /// CPU time `rule_match` spins for (the seed's 500 ms, times the scenario's time scale).
    pub rule_match_work: Duration,
    /// Whether `process_image` is the publisher's child or a new trace linked to it.
    pub relation: ConsumerRelation,
    /// Kafka topic for finished scans.
    pub completed_topic: String,
    /// Fault injection: share of Vision/LLM calls sent without trace headers (shared: it can
    /// be changed while the worker runs).
    pub strip_http: Arc<Strip>,
    /// Fault injection: share of `scan.completed` events sent without trace headers (shared,
    /// as `strip_http`).
    pub strip_kafka: Arc<Strip>,
    /// Fault injection: the first this-many tasks crash the worker after Kafka confirmed the
    /// event and before the ack, so RabbitMQ redelivers them.
    pub crash_before_ack: u32,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            queue: amqp::SCAN_TASKS.to_owned(),
            concurrency: 16,
            prefetch: 32,
            max_retries: 3,
            retry_backoff: Duration::from_millis(200),
            vision_url: "http://127.0.0.1:8001".to_owned(),
            llm_url: "http://127.0.0.1:8002".to_owned(),
            call_timeout: Duration::from_secs(10),
            rule_match_work: Duration::from_millis(5),
            relation: ConsumerRelation::Child,
            completed_topic: tb_messaging::kafka::SCAN_COMPLETED.to_owned(),
            crash_before_ack: 0,
            strip_http: Arc::default(),
            strip_kafka: Arc::default(),
        }
    }
}

/// Why the worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The AMQP connection or channel failed.
    #[error("amqp: {0}")]
    Amqp(#[from] lapin::Error),
    /// A crash was injected (`crash_before_ack`); unacked tasks go back to the queue.
    #[error("injected crash before ack")]
    Crashed,
    /// The broker ended the subscription (the queue was deleted, say).
    #[error("the broker cancelled the subscription")]
    Cancelled,
}

/// Counters a test or the harness can read while the worker runs.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Tasks whose scan completed and was announced by this worker.
    pub completed: AtomicU32,
    /// Attempts that failed and were republished for a retry.
    pub retried: AtomicU32,
    /// Scans marked failed after the last retry.
    pub failed: AtomicU32,
    /// Deliveries of scans already announced, acked without work.
    pub duplicates: AtomicU32,
    /// Deliveries that were not a valid `scan.process_image` task, rejected.
    pub rejected: AtomicU32,
}

/// Everything a task handler shares.
struct Ctx {
    config: WorkerConfig,
    retries: Publisher,
    producer: FutureProducer,
    store: Arc<dyn EventStore>,
    http: reqwest::Client,
    stats: Arc<WorkerStats>,
    crashes_left: AtomicU32,
    crashed: Notify,
    /// `strip_http` for the Vision calls and for the LLM calls, each counted on its own.
    strip_vision: Lane,
    strip_llm: Lane,
    strip_kafka: Arc<Strip>,
}

/// What happened to one delivery.
enum Done {
    Ack,
    /// Requeue: the work could not be finished now (Kafka or the retry publish failed).
    Requeue,
    /// Not a task this worker runs.
    Reject,
    /// Leave unacked and bring the worker down.
    Crash,
}

/// The worker's dependencies and counters.
pub struct Worker {
    ctx: Arc<Ctx>,
}

impl Worker {
    /// A worker publishing retries through `retries`, events through `producer`, results into
    /// `store`.
    pub fn new(
        config: WorkerConfig,
        retries: Publisher,
        producer: FutureProducer,
        store: Arc<dyn EventStore>,
    ) -> Self {
        let crashes_left = AtomicU32::new(config.crash_before_ack);
        let strip_vision = Lane::new(config.strip_http.clone());
        let strip_llm = Lane::new(config.strip_http.clone());
        let strip_kafka = config.strip_kafka.clone();
        Self {
            ctx: Arc::new(Ctx {
                config,
                retries,
                producer,
                store,
                http: reqwest::Client::new(),
                stats: Arc::default(),
                crashes_left,
                crashed: Notify::new(),
                strip_vision,
                strip_llm,
                strip_kafka,
            }),
        }
    }

    /// The worker's counters.
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.ctx.stats.clone()
    }

    /// Consumes tasks from `link` until `shutdown` completes; then stops taking new deliveries,
    /// finishes (and acks) the tasks in flight, and closes its channel. Deliveries prefetched
    /// but not started go back to the queue when the channel closes.
    ///
    /// A broker outage does not end it: once the link is back it subscribes again. The tasks of
    /// the lost channel run to the end, but their acks fail, so RabbitMQ redelivers them and
    /// the event store turns the redeliveries into duplicates acked without work.
    ///
    /// # Errors
    ///
    /// Fails when the first subscription cannot be set up (the queue exists with other
    /// arguments, say), and with [`WorkerError::Crashed`] when an injected crash happened.
    pub async fn run(
        &self,
        link: &Link,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), WorkerError> {
        let mut session = Session {
            slots: Arc::new(Semaphore::new(self.ctx.config.concurrency.max(1))),
            tasks: JoinSet::new(),
        };
        let mut shutdown = std::pin::pin!(shutdown);
        let crashed = self.ctx.crashed.notified();
        let mut crashed = std::pin::pin!(crashed);
        let mut backoff = Backoff::broker();
        let mut subscribed_once = false;
        let stop = loop {
            let current = tokio::select! {
                c = link.connected() => c,
                () = &mut shutdown => break Stop::Shutdown,
                () = &mut crashed => break Stop::Crashed,
            };
            let consumed = self
                .consume(
                    &current.connection,
                    &mut session,
                    &mut shutdown,
                    &mut crashed,
                )
                .await;
            match consumed {
                Ok(stop) => break stop,
                Err((e, subscribed)) => {
                    subscribed_once |= subscribed;
                    if !subscribed_once {
                        return Err(e);
                    }
                    if subscribed {
                        backoff.reset();
                    }
                    tracing::warn!(error = %e, "lost the task channel; subscribing again once RabbitMQ is back");
                    tokio::select! {
                        () = backoff.wait() => {}
                        () = &mut shutdown => break Stop::Shutdown,
                    }
                }
            }
        };
        if stop == Stop::Crashed {
            // A crash: nothing else gets acked (the channel, closed, handed every unacked
            // delivery back to RabbitMQ, which redelivers it with `redelivered` set).
            session.tasks.abort_all();
            return Err(WorkerError::Crashed);
        }
        while session.tasks.join_next().await.is_some() {}
        Ok(())
    }

    /// One subscription on `connection`: takes deliveries until shutdown, a crash, or the
    /// channel fails. On shutdown it cancels the subscription and waits for the tasks in flight
    /// before closing the channel. The error says whether the subscription had been set up.
    async fn consume(
        &self,
        connection: &Connection,
        session: &mut Session,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
        crashed: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<Stop, (WorkerError, bool)> {
        let config = &self.ctx.config;
        let (channel, mut consumer) = subscribe(connection, config)
            .await
            .map_err(|e| (e.into(), false))?;
        let stop = loop {
            let permit = tokio::select! {
                p = session.slots.clone().acquire_owned() => p,
                () = &mut *shutdown => break Stop::Shutdown,
                () = &mut *crashed => break Stop::Crashed,
            };
            let Ok(permit) = permit else {
                break Stop::Shutdown;
            };
            let delivery = tokio::select! {
                d = consumer.next() => d,
                () = &mut *shutdown => break Stop::Shutdown,
                () = &mut *crashed => break Stop::Crashed,
            };
            match delivery {
                Some(Ok(delivery)) => {
                    let ctx = self.ctx.clone();
                    session.tasks.spawn(service::scope(SERVICE, async move {
                        handle(&ctx, delivery).await;
                        drop(permit);
                    }));
                }
                Some(Err(e)) => return Err((e.into(), true)),
                None => return Err((WorkerError::Cancelled, true)),
            }
            while session.tasks.try_join_next().is_some() {}
        };
        if stop == Stop::Crashed {
            // Before the channel closes, so no task acks after the crash.
            session.tasks.abort_all();
        }
        if stop == Stop::Shutdown {
            let _ = channel
                .basic_cancel(
                    consumer.tag(),
                    lapin::options::BasicCancelOptions::default(),
                )
                .await;
            while session.tasks.join_next().await.is_some() {}
        }
        let _ = close(&channel).await;
        Ok(stop)
    }
}

/// The deliveries' concurrency slots and tasks, which outlive a lost channel.
struct Session {
    slots: Arc<Semaphore>,
    tasks: JoinSet<()>,
}

/// Why consuming stopped, other than an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Shutdown,
    Crashed,
}

/// A channel with the worker's prefetch, subscribed to its queue.
async fn subscribe(
    connection: &Connection,
    config: &WorkerConfig,
) -> Result<(Channel, lapin::Consumer), lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    amqp::declare_queue(&channel, &config.queue).await?;
    let consumer = channel
        .basic_consume(
            ShortString::from(config.queue.as_str()),
            ShortString::from(""),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer))
}

async fn close(channel: &Channel) -> Result<(), lapin::Error> {
    channel
        .close(200, ShortString::from("worker stopping"))
        .await
}

async fn handle(ctx: &Ctx, delivery: lapin::message::Delivery) {
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    let span = spans::consumer(
        MessagingSystem::RabbitMq,
        &ctx.config.queue,
        carrier::amqp::extract(&headers),
        ctx.config.relation,
    );
    span.record("otel.name", "process_image");
    span.record(
        keys::MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY,
        delivery.routing_key.as_str(),
    );
    let done = process(ctx, &delivery, &headers, &span)
        .instrument(span.clone())
        .await;
    let outcome = match done {
        Done::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
        Done::Requeue => {
            delivery
                .acker
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await
        }
        Done::Reject => {
            delivery
                .acker
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: false,
                })
                .await
        }
        Done::Crash => {
            ctx.crashed.notify_one();
            return;
        }
    };
    if let Err(e) = outcome {
        let _span = span.enter();
        tracing::error!(error = %e, "acknowledging the delivery failed");
    }
}

async fn process(
    ctx: &Ctx,
    delivery: &lapin::message::Delivery,
    headers: &FieldTable,
    span: &Span,
) -> Done {
    let task = match TaskMessage::from_delivery(headers, &delivery.data) {
        Ok(task) if task.task == PROCESS_IMAGE => task,
        Ok(task) => {
            spans::record_error(span, "unknown_task");
            tracing::error!(task.name = %task.task, "not a task this worker runs; rejected");
            ctx.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Done::Reject;
        }
        Err(e) => {
            spans::record_error(span, "malformed_task");
            tracing::error!(error = %e, "malformed task message; rejected");
            ctx.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Done::Reject;
        }
    };
    span.record(keys::MESSAGING_MESSAGE_ID, task.id.as_str());
    span.set_attribute("task.id", task.id.clone());
    span.set_attribute("celery.retries", i64::from(task.retries));
    let Some((image_url, user_id)) = arguments(&task) else {
        spans::record_error(span, "malformed_task");
        tracing::error!(task.id = %task.id, "process_image needs (task_id, image_url) and user_id");
        ctx.stats.rejected.fetch_add(1, Ordering::Relaxed);
        return Done::Reject;
    };
    let record = match ctx
        .store
        .start_attempt(ScanRecord::new(&task.id, &user_id, &image_url))
        .await
    {
        Ok(record) => record,
        Err(e) => {
            tracing::error!(error = %e, "event store unavailable; requeued");
            return Done::Requeue;
        }
    };
    tracing::info!(
        task.id = %task.id,
        retries = task.retries,
        redelivered = delivery.redelivered,
        "processing scan"
    );
    match (record.state, record.announced, record.result) {
        (ScanState::Completed, true, _) | (ScanState::Failed, _, _) => {
            // Already done by an earlier delivery of this task: do nothing twice.
            span.set_attribute("task.duplicate", true);
            tracing::info!(task.id = %task.id, "scan already finished; acked without work");
            ctx.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            Done::Ack
        }
        (ScanState::Completed, false, Some(result)) => {
            // Saved but the announcement was not confirmed before a crash: announce now.
            span.set_attribute("task.duplicate", true);
            announce(ctx, &task.id, &user_id, &image_url, result).await
        }
        _ => match scan(ctx, &image_url).await {
            Ok(result) => {
                let saved = ctx
                    .store
                    .complete(&task.id, result.clone())
                    .instrument(tracing::info_span!("save_to_event_store"))
                    .await;
                if let Err(e) = saved {
                    tracing::error!(error = %e, "saving the result failed; requeued");
                    return Done::Requeue;
                }
                announce(ctx, &task.id, &user_id, &image_url, result).await
            }
            Err(e) => retry_or_fail(ctx, &task, span, &e).await,
        },
    }
}

/// `(image_url, user_id)` from `process_image(task_id, image_url, user_id=...)`.
fn arguments(task: &TaskMessage) -> Option<(String, String)> {
    let image_url = task.args.get(1)?.as_str()?.to_owned();
    let user_id = match task.kwargs.get("user_id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => task.args.get(2)?.as_str()?.to_owned(),
    };
    Some((image_url, user_id))
}

/// The work: Vision, rules, LLM.
async fn scan(ctx: &Ctx, image_url: &str) -> Result<ScanResult, CallError> {
    let config = &ctx.config;
    let vision = async {
        let response = post_json_with(
            &ctx.http,
            Some("call_vision_api"),
            &format!("{}/v1/analyze", config.vision_url.trim_end_matches('/')),
            &json!({ "image_url": image_url }),
            config.call_timeout,
            !ctx.strip_vision.next(),
        )
        .await?;
        let body: Value = response.json().await.map_err(CallError::Transport)?;
        let category = body["category"].as_str().unwrap_or("unknown").to_owned();
        let confidence = body["confidence"].as_f64().unwrap_or(0.0);
        Span::current().set_attribute("vision.category", category.clone());
        Ok::<_, CallError>((category, confidence))
    }
    .instrument(tracing::info_span!("vision_scan", task.step = "vision"))
    .await?;
    let (category, confidence) = vision;

    let rule = tracing::info_span!("rule_match", task.step = "rule")
        .in_scope(|| rule_match(&category, config.rule_match_work));

    let answer = async {
        let response = post_json_with(
            &ctx.http,
            Some("call_llm_api"),
            &format!(
                "{}/v1/chat/completions",
                config.llm_url.trim_end_matches('/')
            ),
            &json!({
                "model": "mock-llm",
                "messages": [{
                    "role": "user",
                    "content": format!("How do I dispose of {category} ({rule})?"),
                }],
            }),
            config.call_timeout,
            !ctx.strip_llm.next(),
        )
        .await?;
        let body: Value = response.json().await.map_err(CallError::Transport)?;
        Ok::<_, CallError>(
            body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }
    .instrument(tracing::info_span!("answer_gen", task.step = "answer"))
    .await?;

    Ok(ScanResult {
        category,
        confidence,
        rule,
        answer,
    })
}

/// Matches the category to a disposal rule, spending `work` of CPU time as the seed's rule
/// engine does. It spins on the calling thread on purpose: CPU work that holds a runtime thread
/// is what the seed measures, and what tracing overhead competes with.
fn rule_match(category: &str, work: Duration) -> String {
    tb_sim::spin(work);
    match category {
        "plastic" | "glass" | "metal" | "paper" => format!("recycle-{category}"),
        "food" => "compost".to_owned(),
        _ => "general-waste".to_owned(),
    }
}

/// Publishes `scan.completed`, waits for Kafka's confirmation, marks the scan announced.
async fn announce(
    ctx: &Ctx,
    task_id: &str,
    user_id: &str,
    image_url: &str,
    result: ScanResult,
) -> Done {
    let event = ScanCompleted {
        task_id: task_id.to_owned(),
        user_id: user_id.to_owned(),
        image_url: image_url.to_owned(),
        category: result.category,
        confidence: result.confidence,
        rule: result.rule,
        answer: result.answer,
    };
    let payload = match serde_json::to_vec(&event) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "serialising the event failed");
            return Done::Requeue;
        }
    };
    let topic = ctx.config.completed_topic.as_str();
    let propagated = propagate(Some(&ctx.strip_kafka));
    if let Err(e) =
        kafka::publish_with(&ctx.producer, topic, user_id, task_id, &payload, propagated).await
    {
        tracing::error!(error = %e, "publishing scan.completed failed; requeued");
        return Done::Requeue;
    }
    if let Err(e) = ctx.store.mark_announced(task_id).await {
        tracing::error!(error = %e, "marking the scan announced failed");
    }
    if ctx
        .crashes_left
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        tracing::warn!(task.id = %task_id, "injected crash before ack");
        return Done::Crash;
    }
    ctx.stats.completed.fetch_add(1, Ordering::Relaxed);
    tracing::info!(task.id = %task_id, "scan completed");
    Done::Ack
}

/// A failed attempt: republish for another after the backoff (Celery's `Task.retry` with a
/// countdown) through a delay queue, acking this delivery at once; or mark the scan failed.
async fn retry_or_fail(ctx: &Ctx, task: &TaskMessage, span: &Span, error: &CallError) -> Done {
    let config = &ctx.config;
    if task.retries >= config.max_retries {
        spans::record_error(span, &error.kind());
        tracing::error!(task.id = %task.id, error = %error, "scan failed after the last retry");
        if let Err(e) = ctx.store.fail(&task.id, &error.to_string()).await {
            tracing::error!(error = %e, "marking the scan failed did not work");
        }
        ctx.stats.failed.fetch_add(1, Ordering::Relaxed);
        return Done::Ack;
    }
    let backoff = match error {
        CallError::Status {
            retry_after: Some(s),
            ..
        } => Duration::from_secs(*s),
        _ => config.retry_backoff * 2u32.saturating_pow(task.retries),
    }
    .min(Duration::from_secs(60));
    span.set_attribute("celery.action", "retry");
    tracing::warn!(
        task.id = %task.id,
        error = %error,
        backoff_ms = backoff.as_millis() as u64,
        "attempt failed; retrying"
    );
    // Celery's countdown without holding anything: the retry waits in a delay queue, and this
    // delivery is acked at once, freeing its concurrency slot for other scans.
    match ctx
        .retries
        .publish_traced_after(&task.retried(), backoff)
        .await
    {
        Ok(()) => {
            ctx.stats.retried.fetch_add(1, Ordering::Relaxed);
            Done::Ack
        }
        Err(e) => {
            tracing::error!(error = %e, "republishing the retry failed; requeued");
            Done::Requeue
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn rule_match_spends_the_configured_cpu_time_and_maps_categories() {
        let start = Instant::now();
        assert_eq!(
            rule_match("plastic", Duration::from_millis(20)),
            "recycle-plastic"
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(rule_match("food", Duration::ZERO), "compost");
        assert_eq!(rule_match("??", Duration::ZERO), "general-waste");
    }

    #[test]
    fn arguments_come_from_args_and_kwargs_as_celery_sends_them() {
        let task = TaskMessage::process_image("t1", "https://x/a.jpg", "u1", "1@h");
        assert_eq!(
            arguments(&task),
            Some(("https://x/a.jpg".to_owned(), "u1".to_owned()))
        );
        let mut bad = task.clone();
        bad.args.truncate(1);
        assert_eq!(arguments(&bad), None);
    }
}
