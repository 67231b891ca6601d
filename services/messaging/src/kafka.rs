//! Kafka for the scan pipeline: topic names, client configuration, and the embedded broker
//! (librdkafka's mock cluster, a real Kafka wire-protocol broker inside this process).
//!
//! The mock cluster keeps only about 5 MB per partition and silently drops older records when
//! consumers lag, so topics get [`PARTITIONS`] partitions and the harness counts every scan end to
//! end: a loss shows up as a missing scan instead of hiding.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use tb_telemetry::carrier;
use tb_telemetry::spans::{self, MessagingSystem, keys};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The worker's event: a scan finished.
pub const SCAN_COMPLETED: &str = "scan.completed";
/// The character consumer's event: a reward was granted.
pub const CHARACTER_GRANTED: &str = "character.granted";
/// Partitions per topic.
pub const PARTITIONS: i32 = 8;
/// The pipeline's topics.
pub const TOPICS: [&str; 2] = [SCAN_COMPLETED, CHARACTER_GRANTED];

/// Why a Kafka client or broker could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// librdkafka refused the configuration or the operation.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Creating a topic failed for a reason other than "it exists".
    #[error("creating topic {topic}: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's error.
        code: RDKafkaErrorCode,
    },
    /// The embedded broker's thread ended before reporting its address.
    #[error("the embedded kafka broker did not start")]
    Embedded,
}

/// A producer that waits for all in-sync replicas and is idempotent, so a retried send cannot
/// duplicate a record.
///
/// # Errors
///
/// Fails when librdkafka rejects the configuration.
pub fn producer(brokers: &str) -> Result<FutureProducer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        // librdkafka backs off up to 10 s between reconnects by default, so a client could
        // notice a returning broker 10 s late; 1 s keeps recovery close to the outage.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "1000")
        .create()
}

/// A consumer in `group` that reads from the beginning when the group is new, and commits only
/// offsets the caller stored after processing (`enable.auto.offset.store=false`): a message
/// is committed once handled, never merely because it was received.
///
/// # Errors
///
/// Fails when librdkafka rejects the configuration.
pub fn consumer(brokers: &str, group: &str) -> Result<StreamConsumer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "500")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("topic.metadata.refresh.interval.ms", "1000")
        // librdkafka's mock cluster answers a fetch only when fetch.wait.max.ms expires, not
        // when data arrives (measured: a 500 ms default put ~400 ms on the median end-to-end
        // time of a 50 ms scan); a short wait keeps the hop's latency honest on every broker.
        .set("fetch.wait.max.ms", "10")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "1000")
        .create()
}

/// Publishes `payload` to `topic` under `key` inside a PRODUCER span (`publish {topic}`, a child
/// of the current span) whose context rides in the record headers, and waits for the broker's
/// acknowledgement. `id` becomes `messaging.message.id`.
///
/// # Errors
///
/// Fails when the broker does not acknowledge the record within 30 s; the span records it.
pub async fn publish(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    id: &str,
    payload: &[u8],
) -> Result<(), KafkaError> {
    publish_with(producer, topic, key, id, payload, true).await
}

/// [`publish`], with the trace headers left out when `propagate` is false (the
/// `strip_headers` fault): the span is still recorded.
///
/// # Errors
///
/// As [`publish`].
pub async fn publish_with(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    id: &str,
    payload: &[u8],
    propagate: bool,
) -> Result<(), KafkaError> {
    let span = spans::producer(MessagingSystem::Kafka, topic);
    span.record(keys::MESSAGING_KAFKA_MESSAGE_KEY, key);
    span.record(keys::MESSAGING_MESSAGE_ID, id);
    let headers = if propagate {
        carrier::kafka::inject(&span.context(), OwnedHeaders::new())
    } else {
        OwnedHeaders::new()
    };
    let record = FutureRecord::to(topic)
        .key(key)
        .payload(payload)
        .headers(headers);
    let sent = producer
        .send(record, Timeout::After(Duration::from_secs(30)))
        .instrument(span.clone())
        .await;
    match sent {
        Ok(delivery) => {
            span.record(keys::MESSAGING_DESTINATION_PARTITION_ID, delivery.partition);
            span.record(keys::MESSAGING_KAFKA_OFFSET, delivery.offset);
            Ok(())
        }
        Err((e, _)) => {
            spans::record_error(&span, "kafka");
            Err(e)
        }
    }
}

/// Creates the pipeline's topics on an external broker; topics that already exist are fine.
///
/// # Errors
///
/// Fails when the broker is unreachable or refuses to create a topic.
pub async fn ensure_topics(brokers: &str) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    // Topics that exist already need nothing, and some Kafka-compatible brokers (librdkafka's
    // mock cluster among them) do not implement CreateTopics at all. Metadata is a blocking call.
    let owned = brokers.to_owned();
    let all_exist = tokio::task::spawn_blocking(move || -> Result<bool, KafkaError> {
        let probe: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &owned)
            .create()?;
        let metadata = probe
            .client()
            .fetch_metadata(None, Duration::from_secs(10))?;
        Ok(TOPICS.iter().all(|t| {
            metadata
                .topics()
                .iter()
                .any(|m| m.name() == *t && m.error().is_none())
        }))
    })
    .await
    .map_err(|_| KafkaSetupError::Embedded)??;
    if all_exist {
        return Ok(());
    }
    let topics: Vec<NewTopic<'_>> = TOPICS
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaSetupError::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

/// The embedded broker: librdkafka's mock cluster with the pipeline's topics, on a thread of its
/// own (the cluster handle may not leave the thread that made it). Stops when dropped.
#[derive(Debug)]
pub struct EmbeddedKafka {
    bootstrap: String,
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

/// What the embedded broker's thread is asked to do, with where to answer.
#[derive(Debug)]
enum Command {
    Down(bool, mpsc::Sender<Result<(), KafkaError>>),
    /// Stop the broker, whatever [`KafkaControl`] clones are still out there.
    Stop,
}

/// The embedded cluster's one broker.
const BROKER_ID: i32 = 1;

impl EmbeddedKafka {
    /// Starts a one-broker cluster with [`TOPICS`] at [`PARTITIONS`] partitions each.
    ///
    /// # Errors
    ///
    /// Fails when librdkafka cannot create the cluster or its topics.
    pub fn start() -> Result<Self, KafkaSetupError> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, KafkaSetupError>>();
        let (commands, commands_rx) = mpsc::channel::<Command>();
        let thread = std::thread::Builder::new()
            .name("embedded-kafka".to_owned())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                for topic in TOPICS {
                    if let Err(e) = cluster.create_topic(topic, PARTITIONS, 1) {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Hold the cluster until the handle stops it (or is gone), doing what it asks
                // meanwhile.
                while let Ok(command) = commands_rx.recv() {
                    match command {
                        Command::Stop => break,
                        Command::Down(down, answer) => {
                            let done = if down {
                                cluster.broker_down(BROKER_ID)
                            } else {
                                cluster.broker_up(BROKER_ID)
                            };
                            let _ = answer.send(done);
                        }
                    }
                }
                drop(cluster);
            })
            .map_err(|_| KafkaSetupError::Embedded)?;
        let bootstrap = ready_rx.recv().map_err(|_| KafkaSetupError::Embedded)??;
        Ok(Self {
            bootstrap,
            commands: Some(commands),
            thread: Some(thread),
        })
    }

    /// The `bootstrap.servers` string for clients.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Takes the broker down or brings it back: see [`KafkaControl::set_down`].
    ///
    /// # Errors
    ///
    /// As [`KafkaControl::set_down`].
    pub fn set_down(&self, down: bool) -> Result<(), KafkaSetupError> {
        self.control()
            .ok_or(KafkaSetupError::Embedded)?
            .set_down(down)
    }

    /// A handle that takes this broker down and up from anywhere, while it runs.
    pub fn control(&self) -> Option<KafkaControl> {
        self.commands.clone().map(KafkaControl)
    }
}

/// Takes an [`EmbeddedKafka`] down and up. Cheap to clone; does nothing useful once the broker
/// stopped.
#[derive(Clone, Debug)]
pub struct KafkaControl(mpsc::Sender<Command>);

impl KafkaControl {
    /// Takes the broker down (`true`: its connections are closed and new ones refused, its
    /// records kept) or brings it back (`false`): a Kafka outage on demand. Blocks for the
    /// broker thread's answer (microseconds).
    ///
    /// # Errors
    ///
    /// Fails when librdkafka refuses, or the broker's thread is gone.
    pub fn set_down(&self, down: bool) -> Result<(), KafkaSetupError> {
        let (answer, answered) = mpsc::channel();
        self.0
            .send(Command::Down(down, answer))
            .map_err(|_| KafkaSetupError::Embedded)?;
        answered.recv().map_err(|_| KafkaSetupError::Embedded)??;
        Ok(())
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        // An explicit stop: a `KafkaControl` someone still holds keeps the channel open, and
        // waiting for it to close would wait forever.
        if let Some(commands) = self.commands.take() {
            let _ = commands.send(Command::Stop);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_broker_stops_it_though_a_control_is_still_held() {
        let kafka = EmbeddedKafka::start().expect("the embedded broker starts");
        let control = kafka.control().expect("its controls");
        control.set_down(true).expect("down");
        control.set_down(false).expect("up");
        let (dropped_tx, dropped) = mpsc::channel();
        std::thread::spawn(move || {
            drop(kafka);
            let _ = dropped_tx.send(());
        });
        dropped
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the drop returns while a KafkaControl is alive");
        assert!(
            control.set_down(true).is_err(),
            "a stopped broker takes no command"
        );
    }
}
