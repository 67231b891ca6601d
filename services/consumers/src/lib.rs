//! The consumers of `scan.completed`, each in its own consumer group:
//!
//! - **character** (group `character`): `process scan.completed` → `handle_scan_completed` →
//!   `grant_reward`, then `publish character.granted`. Rewards are keyed by task id, so a
//!   redelivered event never grants twice.
//! - **my** (group `my`): `process scan.completed` → `record_history`, the user's scan history.
//!
//! Both continue the trace from the record headers (or link to it), process up to
//! `concurrency` records at once, store a partition's offset only once every record below it
//! was processed ([`offsets`]), and commit on shutdown.

mod offsets;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tb_messaging::backoff::Backoff;
use tb_messaging::events::{CharacterGranted, ScanCompleted};
use tb_messaging::kafka::{CHARACTER_GRANTED, SCAN_COMPLETED};
use tb_telemetry::spans::{self, ConsumerRelation, MessagingSystem, keys};
use tb_telemetry::{carrier, service};
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::offsets::Offsets;

/// The character consumer's service name and consumer group.
pub const CHARACTER: &str = "character-consumer";
/// The my consumer's service name.
pub const MY: &str = "my-consumer";
/// Set (true) on a CONSUMER span whose record was processed before: a redelivery, handled
/// without doing anything twice.
pub const DUPLICATE: &str = "event.duplicate";

/// The character consumer's consumer group.
pub const CHARACTER_GROUP: &str = "character";
/// The my consumer's consumer group.
pub const MY_GROUP: &str = "my";

/// How the consumers run. The seed's values live with the pipeline (`tb_pipeline::seed`).
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Whether the CONSUMER span is the producer's child or a new trace linked to it.
    pub relation: ConsumerRelation,
    /// Simulated time of `handle_scan_completed` itself, before `grant_reward` runs inside it.
    pub handle_latency: Duration,
    /// Simulated time of `grant_reward`.
    pub grant_latency: Duration,
    /// Records processed at once by each consumer. With more than one, a user's history is
    /// recorded in completion order, not offset order.
    pub concurrency: usize,
}

/// A scan event a consumer finished with, for whoever counts scans end to end.
#[derive(Clone, Debug)]
pub struct Processed {
    /// Which consumer: [`CHARACTER`] or [`MY`].
    pub consumer: &'static str,
    /// The scan's task id.
    pub task_id: String,
    /// When processing finished.
    pub at: Instant,
}

/// Rewards granted, one per task.
#[derive(Debug, Default)]
pub struct Rewards(Mutex<HashMap<String, CharacterGranted>>);

impl Rewards {
    /// The reward `event` earns, unless its task already has one.
    fn pending(&self, event: &ScanCompleted) -> Option<CharacterGranted> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (!map.contains_key(&event.task_id)).then(|| CharacterGranted {
            task_id: event.task_id.clone(),
            user_id: event.user_id.clone(),
            character: format!("{}-guardian", event.category),
        })
    }

    /// Records `granted` (once announced); false when its task had one already.
    fn record(&self, granted: CharacterGranted) -> bool {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(&granted.task_id) {
            return false;
        }
        map.insert(granted.task_id.clone(), granted);
        true
    }

    /// Grants for `event` unless its task already has one; returns the new grant.
    #[cfg(test)]
    fn grant(&self, event: &ScanCompleted) -> Option<CharacterGranted> {
        let granted = self.pending(event)?;
        self.record(granted.clone()).then_some(granted)
    }

    /// How many rewards were granted.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The reward for `task_id`, if granted.
    pub fn get(&self, task_id: &str) -> Option<CharacterGranted> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(task_id)
            .cloned()
    }
}

/// Every user's scans (task ids), each recorded once.
#[derive(Debug, Default)]
pub struct History(Mutex<HashMap<String, Vec<String>>>, Mutex<HashSet<String>>);

impl History {
    fn record(&self, event: &ScanCompleted) -> bool {
        if !self
            .1
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(event.task_id.clone())
        {
            return false;
        }
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(event.user_id.clone())
            .or_default()
            .push(event.task_id.clone());
        true
    }

    /// `user_id`'s scans in the order recorded.
    pub fn of(&self, user_id: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user_id)
            .cloned()
            .unwrap_or_default()
    }
}

/// The CONSUMER span for `message`, continuing (or linking to) the trace in its headers.
fn consumer_span(message: &BorrowedMessage<'_>, group: &str, relation: ConsumerRelation) -> Span {
    let remote = message
        .headers()
        .map(carrier::kafka::extract)
        .unwrap_or_default();
    let span = spans::consumer(MessagingSystem::Kafka, message.topic(), remote, relation);
    span.record(keys::MESSAGING_CONSUMER_GROUP_NAME, group);
    span.record(
        keys::MESSAGING_DESTINATION_PARTITION_ID,
        message.partition(),
    );
    span.record(keys::MESSAGING_KAFKA_OFFSET, message.offset());
    if let Some(Ok(key)) = message.key_view::<str>() {
        span.record(keys::MESSAGING_KAFKA_MESSAGE_KEY, key);
    }
    span
}

fn parse(message: &BorrowedMessage<'_>, span: &Span) -> Option<ScanCompleted> {
    match serde_json::from_slice::<ScanCompleted>(message.payload().unwrap_or_default()) {
        Ok(event) => {
            span.record(keys::MESSAGING_MESSAGE_ID, event.task_id.as_str());
            span.set_attribute("task.id", event.task_id.clone());
            Some(event)
        }
        Err(e) => {
            spans::record_error(span, "malformed_event");
            let _in = span.enter();
            tracing::error!(error = %e, "skipping a malformed scan.completed event");
            None
        }
    }
}

/// Whether the consumer is stopping, for a handler that retries: it gives up once this is set,
/// leaving its record unfinished (its offset is not stored, so it is read again after a restart).
#[derive(Clone, Debug)]
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// Completes once the consumer is stopping.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// Runs `handle` on every message of `consumer` until `shutdown`, up to `concurrency` at once,
/// storing each partition's offset only once every record below it is done (see [`offsets`]);
/// on shutdown it finishes what is in flight and commits synchronously. A record whose handler
/// returns false (it gave up at shutdown) is left unfinished: nothing at or above it is stored.
///
/// A failed receive (the broker is away, a partition moved) is logged and receiving goes on:
/// only `shutdown` ends the loop.
async fn consume<F, Fut>(
    service: &'static str,
    consumer: StreamConsumer,
    concurrency: usize,
    shutdown: impl Future<Output = ()> + Send,
    mut handle: F,
) -> Result<(), rdkafka::error::KafkaError>
where
    F: FnMut(BorrowedMessage<'_>, Stopping) -> Fut,
    Fut: Future<Output = bool>,
{
    consumer.subscribe(&[SCAN_COMPLETED])?;
    let mut shutdown = std::pin::pin!(shutdown);
    let (stopping, stopping_rx) = watch::channel(false);
    let mut offsets = Offsets::default();
    let mut in_flight = FuturesUnordered::new();
    let concurrency = concurrency.max(1);
    // librdkafka reconnects by itself and reports each failed attempt as an error event in
    // the consumer's queue: a receive error is an event to note, not a state to wait out
    // (pausing per event once left a minute of queued errors to read after a 10 s outage).
    let mut errors = ErrorLog::default();
    loop {
        tokio::select! {
            // Finished records first: they free slots and move the stored offsets on.
            biased;
            Some((partition, offset, done)) = in_flight.next() => {
                if done {
                    store(&consumer, &mut offsets, partition, offset);
                }
            }
            m = consumer.recv(), if in_flight.len() < concurrency => {
                let message = match m {
                    Ok(message) => message,
                    Err(e) => {
                        errors.note(&e);
                        continue;
                    }
                };
                let (partition, offset) = (message.partition(), message.offset());
                offsets.start(partition, offset);
                let work = service::scope(service, handle(message, Stopping(stopping_rx.clone())));
                in_flight.push(async move {
                    let done = work.await;
                    (partition, offset, done)
                });
            }
            () = &mut shutdown => break,
        }
    }
    stopping.send_replace(true);
    while let Some((partition, offset, done)) = in_flight.next().await {
        if done {
            store(&consumer, &mut offsets, partition, offset);
        }
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing consumed yet: nothing to commit.
        Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        )) => Ok(()),
        other => other,
    }
}

/// Receive errors, logged at most once a second with how many came since the last line.
#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    since: u64,
}

impl ErrorLog {
    fn note(&mut self, error: &rdkafka::error::KafkaError) {
        self.since += 1;
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        tracing::warn!(error = %error, errors = self.since, "receiving from Kafka failed; librdkafka retries");
        self.last = Some(Instant::now());
        self.since = 0;
    }
}

/// Marks a record done and stores the partition's offset when it moved on. A store that fails
/// (the partition was revoked in a rebalance) is logged: its new owner reads from the last
/// committed offset, so the record is processed again rather than lost.
fn store(consumer: &StreamConsumer, offsets: &mut Offsets, partition: i32, offset: i64) {
    let Some(next) = offsets.done(partition, offset) else {
        return;
    };
    // A partition list stores offsets as given: the next record to read. (`store_offset`
    // would not: librdkafka's `rd_kafka_offset_store` commits its argument plus one, so storing
    // "the next offset" through it skips a record on every restart.)
    let mut list = TopicPartitionList::new();
    let stored = list
        .add_partition_offset(SCAN_COMPLETED, partition, Offset::Offset(next))
        .and_then(|()| consumer.store_offsets(&list));
    if let Err(e) = stored {
        tracing::warn!(error = %e, partition, offset = next, "storing a consumer offset failed");
    }
}

/// The character consumer: grants a reward per scan and announces it on `character.granted`.
///
/// # Errors
///
/// Fails when subscribing, receiving or committing fails.
pub async fn run_character(
    config: ConsumerConfig,
    consumer: StreamConsumer,
    producer: FutureProducer,
    rewards: Arc<Rewards>,
    processed: Option<mpsc::UnboundedSender<Processed>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), rdkafka::error::KafkaError> {
    consume(
        CHARACTER,
        consumer,
        config.concurrency,
        shutdown,
        |message, stopping| {
            let span = consumer_span(&message, CHARACTER_GROUP, config.relation);
            let event = parse(&message, &span);
            let (rewards, producer, processed, config) = (&rewards, &producer, &processed, &config);
            let delivery = span.clone();
            async move {
                let Some(event) = event else { return true };
                let pending = async {
                    tb_sim::wait(config.handle_latency).await;
                    async {
                        tb_sim::wait(config.grant_latency).await;
                        let pending = rewards.pending(&event);
                        if pending.is_none() {
                            Span::current().set_attribute("reward.duplicate", true);
                            // The delivery itself is a duplicate: the verifier sets it aside.
                            delivery.set_attribute(DUPLICATE, true);
                            tracing::info!(task.id = %event.task_id, "reward already granted");
                        }
                        pending
                    }
                    .instrument(tracing::info_span!("grant_reward"))
                    .await
                }
                .instrument(tracing::info_span!("handle_scan_completed"))
                .await;
                if let Some(granted) = pending {
                    // The reward counts as granted only once its announcement is confirmed: a
                    // consumer stopped before that reads the record again and grants then.
                    if !publish_granted(producer, &granted, stopping).await {
                        return false;
                    }
                    tracing::info!(task.id = %event.task_id, character = %granted.character, "reward granted");
                    rewards.record(granted);
                }
                if let Some(tx) = processed {
                    let _ = tx.send(Processed {
                        consumer: CHARACTER,
                        task_id: event.task_id,
                        at: Instant::now(),
                    });
                }
                true
            }
            .instrument(span)
        },
    )
    .await
}

/// Publishes `character.granted` until Kafka confirms it (true), retrying with backoff, or
/// until the consumer stops (false).
async fn publish_granted(
    producer: &FutureProducer,
    granted: &CharacterGranted,
    mut stopping: Stopping,
) -> bool {
    let Ok(payload) = serde_json::to_vec(granted) else {
        return false;
    };
    let mut backoff = Backoff::broker();
    loop {
        let published = tb_messaging::kafka::publish(
            producer,
            CHARACTER_GRANTED,
            &granted.user_id,
            &granted.task_id,
            &payload,
        )
        .await;
        let Err(e) = published else { return true };
        let wait = backoff.next_wait();
        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "publishing character.granted failed; retrying");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopping.wait() => return false,
        }
    }
}

/// My consumer: records each scan in its user's history.
///
/// # Errors
///
/// Fails when subscribing, receiving or committing fails.
pub async fn run_my(
    config: ConsumerConfig,
    consumer: StreamConsumer,
    history: Arc<History>,
    processed: Option<mpsc::UnboundedSender<Processed>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), rdkafka::error::KafkaError> {
    consume(MY, consumer, config.concurrency, shutdown, |message, _| {
        let span = consumer_span(&message, MY_GROUP, config.relation);
        let event = parse(&message, &span);
        let (history, processed) = (&history, &processed);
        let delivery = span.clone();
        async move {
            let Some(event) = event else { return true };
            tracing::info_span!("record_history").in_scope(|| {
                if !history.record(&event) {
                    Span::current().set_attribute("history.duplicate", true);
                    delivery.set_attribute(DUPLICATE, true);
                }
            });
            tracing::info!(task.id = %event.task_id, "history recorded");
            if let Some(tx) = processed {
                let _ = tx.send(Processed {
                    consumer: MY,
                    task_id: event.task_id,
                    at: Instant::now(),
                });
            }
            true
        }
        .instrument(span)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs [`consume`] for `group` on `brokers` with 8 records at once; `handle` gets each
    /// record's payload as a number.
    fn consumer_task<Fut>(
        brokers: String,
        group: &'static str,
        handle: impl Fn(u32) -> Fut + Send + Sync + 'static,
        shutdown: tokio::sync::oneshot::Receiver<()>,
    ) -> tokio::task::JoinHandle<Result<(), rdkafka::error::KafkaError>>
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(async move {
            let consumer = tb_messaging::kafka::consumer(&brokers, group)?;
            consume(
                MY,
                consumer,
                8,
                async {
                    let _ = shutdown.await;
                },
                |message, _| {
                    let n = std::str::from_utf8(message.payload().unwrap_or_default())
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(u32::MAX);
                    let work = handle(n);
                    async move {
                        work.await;
                        true
                    }
                },
            )
            .await
        })
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_consumer_crash_mid_batch_loses_no_record_and_skips_none() {
        let kafka = tb_messaging::kafka::EmbeddedKafka::start().expect("embedded kafka");
        let brokers = kafka.bootstrap_servers().to_owned();
        let producer = tb_messaging::kafka::producer(&brokers).expect("producer");
        // One key: one partition, so "below" means something.
        for n in 0..20u32 {
            tb_messaging::kafka::publish(
                &producer,
                SCAN_COMPLETED,
                "k",
                "id",
                n.to_string().as_bytes(),
            )
            .await
            .expect("published");
        }

        // The first consumer gets stuck on record 5 while records after it finish, then
        // crashes: its task is dropped mid-batch, with no graceful commit.
        let first: Arc<Mutex<HashSet<u32>>> = Arc::default();
        let seen = first.clone();
        let (_keep, never) = tokio::sync::oneshot::channel();
        let crashed = consumer_task(
            brokers.clone(),
            "crash-test",
            move |n| {
                let seen = seen.clone();
                async move {
                    if n == 5 {
                        std::future::pending::<()>().await;
                    }
                    seen.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(n);
                }
            },
            never,
        );
        let len =
            |s: &Arc<Mutex<HashSet<u32>>>| s.lock().unwrap_or_else(PoisonError::into_inner).len();
        until("the first consumer to pass record 5", || len(&first) >= 7).await;
        // Long enough for auto-commit (500 ms) to commit whatever offset was stored.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        crashed.abort();
        let _ = crashed.await;
        let first = first.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert!(!first.contains(&5));

        // The restarted consumer resumes at the oldest unfinished record: 5 is not skipped,
        // and nothing is lost.
        let second: Arc<Mutex<HashSet<u32>>> = Arc::default();
        let seen = second.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let restarted = consumer_task(
            brokers.clone(),
            "crash-test",
            move |n| {
                let seen = seen.clone();
                async move {
                    seen.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(n);
                }
            },
            stopped,
        );
        until("the restarted consumer to process record 5", || {
            second
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&5)
        })
        .await;
        let all: HashSet<u32> = (0..20).collect();
        until("every record to be processed by one of the two", || {
            let second = second.lock().unwrap_or_else(PoisonError::into_inner);
            first.union(&second).copied().collect::<HashSet<_>>() == all
        })
        .await;
        let _ = stop.send(());
        restarted.await.expect("joins").expect("stops cleanly");
        // Records before 5 finished before the crash and were committed: not read again.
        let second = second.lock().unwrap_or_else(PoisonError::into_inner);
        assert!((0..5).all(|n| !second.contains(&n)), "{second:?}");
    }

    fn event(task: &str) -> ScanCompleted {
        ScanCompleted {
            task_id: task.to_owned(),
            user_id: "u1".to_owned(),
            image_url: "https://x/a.jpg".to_owned(),
            category: "glass".to_owned(),
            confidence: 0.8,
            rule: "recycle-glass".to_owned(),
            answer: "rinse".to_owned(),
        }
    }

    #[test]
    fn a_reward_is_granted_once_per_task() {
        let rewards = Rewards::default();
        assert!(rewards.grant(&event("t1")).is_some());
        assert!(rewards.grant(&event("t1")).is_none());
        assert!(rewards.grant(&event("t2")).is_some());
        assert_eq!(rewards.len(), 2);
        assert_eq!(
            rewards.get("t1").map(|g| g.character),
            Some("glass-guardian".to_owned())
        );
    }

    #[test]
    fn history_records_each_scan_once_in_order() {
        let history = History::default();
        assert!(history.record(&event("t1")));
        assert!(history.record(&event("t2")));
        assert!(!history.record(&event("t1")));
        assert_eq!(history.of("u1"), ["t1", "t2"]);
        assert!(history.of("u2").is_empty());
    }
}
