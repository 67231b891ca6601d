//! The consumers of `scan.completed`, each in its own consumer group:
//!
//! - **character** (group `character`): `process scan.completed` → `handle_scan_completed` →
//!   `grant_reward`, then `publish character.granted`. Rewards are keyed by task id, so a
//!   redelivered event never grants twice.
//! - **my** (group `my`): `process scan.completed` → `record_history`, the user's scan history.
//!
//! Both continue the trace from the record headers (or link to it), store the offset only
//! after processing, and commit on shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureProducer;
use tb_messaging::events::{CharacterGranted, ScanCompleted};
use tb_messaging::kafka::{CHARACTER_GRANTED, SCAN_COMPLETED};
use tb_telemetry::spans::{self, ConsumerRelation, MessagingSystem, keys};
use tb_telemetry::{carrier, service};
use tokio::sync::mpsc;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The character consumer's service name and consumer group.
pub const CHARACTER: &str = "character-consumer";
/// The my consumer's service name.
pub const MY: &str = "my-consumer";
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
    /// Grants for `event` unless its task already has one; returns the new grant.
    fn grant(&self, event: &ScanCompleted) -> Option<CharacterGranted> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(&event.task_id) {
            return None;
        }
        let granted = CharacterGranted {
            task_id: event.task_id.clone(),
            user_id: event.user_id.clone(),
            character: format!("{}-guardian", event.category),
        };
        map.insert(event.task_id.clone(), granted.clone());
        Some(granted)
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

/// Runs `handle` on every message of `consumer` until `shutdown`, storing each offset after
/// the handler returns, and commits synchronously at the end.
async fn consume<F, Fut>(
    service: &'static str,
    consumer: StreamConsumer,
    shutdown: impl Future<Output = ()> + Send,
    mut handle: F,
) -> Result<(), rdkafka::error::KafkaError>
where
    F: FnMut(BorrowedMessage<'_>) -> Fut,
    Fut: Future<Output = ()>,
{
    consumer.subscribe(&[SCAN_COMPLETED])?;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let message = tokio::select! {
            m = consumer.recv() => m?,
            () = &mut shutdown => break,
        };
        let (topic, partition, offset) = (
            message.topic().to_owned(),
            message.partition(),
            message.offset(),
        );
        service::scope(service, handle(message)).await;
        // The next offset to read is the one after this message.
        consumer.store_offset(&topic, partition, offset + 1)?;
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing consumed yet: nothing to commit.
        Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        )) => Ok(()),
        other => other,
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
    consume(CHARACTER, consumer, shutdown, |message| {
        let span = consumer_span(&message, CHARACTER_GROUP, config.relation);
        let event = parse(&message, &span);
        let (rewards, producer, processed, config) = (&rewards, &producer, &processed, &config);
        async move {
            let Some(event) = event else { return };
            let granted = async {
                tokio::time::sleep(config.handle_latency).await;
                async {
                    tokio::time::sleep(config.grant_latency).await;
                    let granted = rewards.grant(&event);
                    if granted.is_none() {
                        Span::current().set_attribute("reward.duplicate", true);
                        tracing::info!(task.id = %event.task_id, "reward already granted");
                    }
                    granted
                }
                .instrument(tracing::info_span!("grant_reward"))
                .await
            }
            .instrument(tracing::info_span!("handle_scan_completed"))
            .await;
            if let Some(granted) = granted {
                publish_granted(producer, &granted).await;
                tracing::info!(task.id = %event.task_id, character = %granted.character, "reward granted");
            }
            if let Some(tx) = processed {
                let _ = tx.send(Processed {
                    consumer: CHARACTER,
                    task_id: event.task_id,
                    at: Instant::now(),
                });
            }
        }
        .instrument(span)
    })
    .await
}

async fn publish_granted(producer: &FutureProducer, granted: &CharacterGranted) {
    let Ok(payload) = serde_json::to_vec(granted) else {
        return;
    };
    let published = tb_messaging::kafka::publish(
        producer,
        CHARACTER_GRANTED,
        &granted.user_id,
        &granted.task_id,
        &payload,
    )
    .await;
    if let Err(e) = published {
        tracing::error!(error = %e, "publishing character.granted failed");
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
    consume(MY, consumer, shutdown, |message| {
        let span = consumer_span(&message, MY_GROUP, config.relation);
        let event = parse(&message, &span);
        let (history, processed) = (&history, &processed);
        async move {
            let Some(event) = event else { return };
            tracing::info_span!("record_history").in_scope(|| {
                if !history.record(&event) {
                    Span::current().set_attribute("history.duplicate", true);
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
        }
        .instrument(span)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

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
