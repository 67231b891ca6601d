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

use std::sync::Arc;
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
use tb_store::{HistoryStore, Reward, RewardStore};
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
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
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

/// The one rule for when a scan is done end to end: both consumers have processed its
/// `scan.completed` event, in either order. A redelivery (after a broker came back) may report
/// one consumer twice; the scan is done once each has reported. Should both report it again
/// after that, it is reported done again: the request side (`tb_load::Tracker`, the demo's
/// table) holds no pending request for it any more and ignores the second completion.
#[derive(Debug, Default)]
pub struct Completions {
    /// Scans one consumer has finished, by task id: which one, and when.
    half: std::collections::HashMap<String, (&'static str, Instant)>,
}

impl Completions {
    /// Takes one consumer's event; `true` when it completes the scan (at `p.at`).
    pub fn complete(&mut self, p: &Processed) -> bool {
        match self.half.get(p.task_id.as_str()) {
            Some((first, _)) if *first != p.consumer => {
                self.half.remove(p.task_id.as_str());
                true
            }
            Some(_) => false,
            None => {
                self.half.insert(p.task_id.clone(), (p.consumer, p.at));
                false
            }
        }
    }

    /// Forgets the scans only one consumer finished more than `age` before `now` (the other
    /// never will: its event was lost, or it is not running), so that a process that follows
    /// scans for hours holds only the recent ones. Returns how many it forgot.
    pub fn forget_older_than(&mut self, age: Duration, now: Instant) -> usize {
        let before = self.half.len();
        self.half
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < age);
        before - self.half.len()
    }

    /// Scans one consumer has finished and the other not yet.
    pub fn half_done(&self) -> usize {
        self.half.len()
    }
}

/// Where the character consumer keeps its rewards (process memory or PostgreSQL).
pub type Rewards = Arc<dyn RewardStore>;
/// Where my consumer keeps its users' histories.
pub type History = Arc<dyn HistoryStore>;

/// Runs `call` (a store write, a publish) until it succeeds (its value) or the consumer stops
/// (None), backing off between tries: a database or broker that is away holds the record, it
/// does not skip it.
async fn persist<T, E, Fut>(
    what: &str,
    stopping: &mut Stopping,
    mut call: impl FnMut() -> Fut,
) -> Option<T>
where
    E: std::fmt::Display,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::broker();
    loop {
        let e = match call().await {
            Ok(value) => return Some(value),
            Err(e) => e,
        };
        let wait = backoff.next_wait();
        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "{what} failed; retrying");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopping.wait() => return None,
        }
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
    // A synchronous commit, and closing the consumer (it leaves its group), both wait on the
    // broker: a blocking thread does them, so no runtime thread stalls meanwhile (one that did
    // once starved a fault proxy on the same runtime, and with it the broker's answer).
    let committed = tokio::task::spawn_blocking(move || {
        let committed = consumer.commit_consumer_state(CommitMode::Sync);
        drop(consumer);
        committed
    })
    .await
    .unwrap_or(Err(rdkafka::error::KafkaError::Canceled));
    match committed {
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

/// `grant_reward`: the reward to announce when this scan has none yet, `Some(None)` when it has
/// one (a redelivery: the delivery span is marked a duplicate), `None` when the consumer
/// stopped while the store was away.
async fn grant_reward(
    config: &ConsumerConfig,
    rewards: &Rewards,
    event: &ScanCompleted,
    stopping: &mut Stopping,
    delivery: &Span,
) -> Option<Option<CharacterGranted>> {
    tb_sim::wait(config.grant_latency).await;
    let granted = persist("reading rewards", stopping, || {
        rewards.has_reward(&event.task_id)
    })
    .await?;
    if granted {
        Span::current().set_attribute("reward.duplicate", true);
        // The delivery itself is a duplicate: the verifier sets it aside.
        delivery.set_attribute(DUPLICATE, true);
        tracing::info!(task.id = %event.task_id, "reward already granted");
        return Some(None);
    }
    Some(Some(CharacterGranted {
        task_id: event.task_id.clone(),
        user_id: event.user_id.clone(),
        character: format!("{}-guardian", event.category),
    }))
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
    rewards: Rewards,
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
                let mut stopping = stopping;
                let pending = async {
                    tb_sim::wait(config.handle_latency).await;
                    grant_reward(config, rewards, &event, &mut stopping, &delivery)
                        .instrument(tracing::info_span!("grant_reward"))
                        .await
                }
                .instrument(tracing::info_span!("handle_scan_completed"))
                .await;
                // None: the consumer stopped while the store was away; the record stays unfinished.
                let Some(pending) = pending else { return false };
                if let Some(granted) = pending {
                    // The reward counts as granted only once its announcement is confirmed: a
                    // consumer stopped before that reads the record again and grants then.
                    if !publish_granted(producer, &granted, stopping.clone()).await {
                        return false;
                    }
                    let reward = Reward {
                        task_id: granted.task_id.clone(),
                        user_id: granted.user_id.clone(),
                        character: granted.character.clone(),
                    };
                    let recorded = persist("recording a reward", &mut stopping, || {
                        rewards.record_reward(reward.clone())
                    });
                    if recorded.await.is_none() {
                        return false;
                    }
                    tracing::info!(task.id = %event.task_id, character = %granted.character, "reward granted");
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
    let published = persist("publishing character.granted", &mut stopping, || {
        tb_messaging::kafka::publish(
            producer,
            CHARACTER_GRANTED,
            &granted.user_id,
            &granted.task_id,
            &payload,
        )
    });
    published.await.is_some()
}

/// My consumer: records each scan in its user's history.
///
/// # Errors
///
/// Fails when subscribing, receiving or committing fails.
pub async fn run_my(
    config: ConsumerConfig,
    consumer: StreamConsumer,
    history: History,
    processed: Option<mpsc::UnboundedSender<Processed>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), rdkafka::error::KafkaError> {
    consume(
        MY,
        consumer,
        config.concurrency,
        shutdown,
        |message, stopping| {
            let span = consumer_span(&message, MY_GROUP, config.relation);
            let event = parse(&message, &span);
            let (history, processed) = (&history, &processed);
            let delivery = span.clone();
            async move {
                let Some(event) = event else { return true };
                let mut stopping = stopping;
                let record_history = tracing::info_span!("record_history");
                let recorded = persist("recording history", &mut stopping, || {
                    history.record_scan(&event.user_id, &event.task_id)
                })
                .instrument(record_history.clone());
                let Some(new) = recorded.await else {
                    return false;
                };
                if !new {
                    record_history.set_attribute("history.duplicate", true);
                    delivery.set_attribute(DUPLICATE, true);
                }
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
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::{Mutex, PoisonError};

    use super::*;

    #[test]
    fn a_scan_completes_once_both_consumers_are_done_whatever_came_first() {
        let event = |consumer, task_id: &str| Processed {
            consumer,
            task_id: task_id.to_owned(),
            at: std::time::Instant::now(),
        };
        let mut c = Completions::default();
        assert!(!c.complete(&event(CHARACTER, "a")));
        assert!(
            !c.complete(&event(CHARACTER, "a")),
            "one consumer twice is not the end"
        );
        assert!(c.complete(&event(MY, "a")));
        assert!(!c.complete(&event(MY, "b")));
        assert!(c.complete(&event(CHARACTER, "b")), "in either order");
        assert_eq!(c.half_done(), 0);
    }

    #[test]
    fn a_scan_only_one_consumer_finished_is_forgotten_once_it_is_old() {
        let start = Instant::now();
        let event = |consumer, task_id: &str, after_s| Processed {
            consumer,
            task_id: task_id.to_owned(),
            at: start + Duration::from_secs(after_s),
        };
        let mut c = Completions::default();
        assert!(!c.complete(&event(CHARACTER, "old", 0)));
        assert!(!c.complete(&event(MY, "recent", 50)));
        let now = start + Duration::from_secs(70);
        assert_eq!(c.forget_older_than(Duration::from_secs(60), now), 1);
        assert_eq!(c.half_done(), 1);
        // The forgotten scan starts over; the recent one still completes.
        assert!(!c.complete(&event(MY, "old", 71)));
        assert!(c.complete(&event(CHARACTER, "recent", 71)));
    }

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
}
