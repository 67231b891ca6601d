//! RabbitMQ for the scan pipeline: a connection that comes back after an outage ([`Link`]),
//! declaring the task queue, and publishing with publisher confirms so a task counts as sent only
//! once the broker has it.
//!
//! Confirms are awaited per message but many messages may be in flight on one channel at once
//! (each caller awaits its own confirm): measured on this machine kind, a confirmed publish costs
//! about 460 CPU-µs with one message in flight and about 75 µs with 64.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, Event};

use tb_telemetry::carrier;
use tb_telemetry::spans::{self, MessagingSystem, keys};
use tokio::sync::watch;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::backoff::Backoff;
use crate::celery::TaskMessage;

/// The queue the scan tasks go to, through the default exchange.
pub const SCAN_TASKS: &str = "scan.tasks";

/// What a queue of one run, demo or test is scoped by: [`scoped_queue`] names it
/// `{base}.{scope}-{id}`.
pub const SCOPES: [&str; 3] = ["run", "demo", "test"];

/// A task queue of its own for one run, demo or test (`scope` one of [`SCOPES`]):
/// `scan.tasks.run-1f0c…`, so that nothing else on the broker takes its tasks.
pub fn scoped_queue(base: &str, scope: &str) -> String {
    debug_assert!(SCOPES.contains(&scope), "{scope} is not one of {SCOPES:?}");
    format!("{base}.{scope}-{:016x}", rand::random::<u64>())
}

/// The name of `queue` without the scope [`scoped_queue`] added: what a span is named by, as
/// span names must stay few (`publish scan.tasks`, whatever run published it).
pub fn queue_template(queue: &str) -> &str {
    match queue.rsplit_once('.') {
        Some((base, scope))
            if SCOPES.iter().any(|s| {
                scope
                    .strip_prefix(s)
                    .is_some_and(|rest| rest.starts_with('-'))
            }) =>
        {
            base
        }
        _ => queue,
    }
}

/// The local broker's default URL (guest/guest, vhost `/`).
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How long a publish waits for the broker's confirm before it counts as failed.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one connection attempt may take (a blackholed broker never answers).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The connection or channel failed.
    #[error("amqp: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker refused the message (basic.nack).
    #[error("the broker did not accept the message (nack)")]
    Nacked,
    /// There is no connection to the broker now; the link is reconnecting.
    #[error("no connection to RabbitMQ; reconnecting")]
    Unavailable,
    /// The broker did not confirm within the timeout. It may still have the message.
    #[error("RabbitMQ did not confirm the message within {0:?}")]
    Timeout(Duration),
}

/// Connects to `url` (`amqp://user:pass@host:port/vhost`), once.
///
/// # Errors
///
/// Fails when the broker does not answer or refuses the login.
pub async fn connect(url: &str) -> Result<Connection, lapin::Error> {
    Connection::connect(url, ConnectionProperties::default()).await
}

/// One connection of a [`Link`]: which one (counting reconnects from 0) and the connection.
#[derive(Clone)]
pub struct Current {
    /// 0 for the first connection, one more for each reconnect.
    pub generation: u64,
    /// The connection.
    pub connection: Arc<Connection>,
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// A connection to RabbitMQ that comes back: when it breaks, a task reconnects with backoff and
/// jitter ([`Backoff::broker`]) until the broker answers again, for as long as any clone of the
/// link exists. Publishers and consumers on a link open their channels on whichever connection
/// is current. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Link {
    current: watch::Receiver<Option<Current>>,
}

impl Link {
    /// Connects to `url` and keeps the connection up from then on.
    ///
    /// # Errors
    ///
    /// Fails when the first connection fails: a broker that is not there at start is a setup
    /// error, not an outage.
    pub async fn connect(url: &str) -> Result<Self, lapin::Error> {
        let first = Arc::new(connect(url).await?);
        let (tx, rx) = watch::channel(Some(Current {
            generation: 0,
            connection: first.clone(),
        }));
        tokio::spawn(supervise(url.to_owned(), tx, first));
        Ok(Self { current: rx })
    }

    /// The connection now, or `None` while reconnecting.
    pub fn current(&self) -> Option<Current> {
        self.current.borrow().clone()
    }

    /// The connection, once there is one.
    pub async fn connected(&self) -> Current {
        let mut rx = self.current.clone();
        let current = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|c| c.clone());
        match current {
            Some(current) => current,
            // The supervisor outlives every link; without it there is nothing to wait for.
            None => std::future::pending().await,
        }
    }
}

/// Keeps a link's connection up: waits until it breaks, reports "no connection", reconnects
/// with backoff, reports the new one; ends once no link is left.
async fn supervise(url: String, tx: watch::Sender<Option<Current>>, first: Arc<Connection>) {
    let mut connection = first;
    let mut generation = 0;
    loop {
        tokio::select! {
            () = broken(&connection) => {}
            () = tx.closed() => return,
        }
        tx.send_replace(None);
        tracing::warn!(generation, "lost the RabbitMQ connection; reconnecting");
        let mut backoff = Backoff::broker();
        connection = loop {
            tokio::select! {
                () = backoff.wait() => {}
                () = tx.closed() => return,
            }
            match tokio::time::timeout(CONNECT_TIMEOUT, connect(&url)).await {
                Ok(Ok(c)) => break Arc::new(c),
                Ok(Err(e)) => tracing::debug!(error = %e, "RabbitMQ still unreachable"),
                Err(_) => tracing::debug!("connecting to RabbitMQ timed out"),
            }
        };
        generation += 1;
        tracing::info!(generation, "reconnected to RabbitMQ");
        tx.send_replace(Some(Current {
            generation,
            connection: connection.clone(),
        }));
    }
}

/// Completes once `connection` reports an error or stops being connected.
async fn broken(connection: &Connection) {
    let mut events = connection.events_listener();
    // The event stream reports errors; the status check covers a close without one.
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            event = events.next() => {
                if matches!(event, None | Some(Event::Error(_))) {
                    return;
                }
            }
            _ = check.tick() => {
                if !connection.status().connected() {
                    return;
                }
            }
        }
    }
}

/// Declares `queue` durable, as Celery declares its queues, so tasks survive a broker restart.
///
/// # Errors
///
/// Fails when the channel fails or the queue exists with other properties.
pub async fn declare_queue(channel: &Channel, queue: &str) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map(|_| ())
}

/// Declares the delay queue that holds messages for `queue` for `delay`, then dead-letters them
/// into `queue` (default exchange, routing key `queue`); returns its name,
/// `{queue}.delay.{ms}ms`. One TTL per queue keeps expiry in order (RabbitMQ expires messages
/// only at a queue's head). The queue deletes itself a minute after its last use.
///
/// # Errors
///
/// Fails when the channel fails or a queue of that name exists with other arguments.
pub async fn declare_delay_queue(
    channel: &Channel,
    queue: &str,
    delay: Duration,
) -> Result<String, lapin::Error> {
    // Rounded up: a retry never comes back before its backoff.
    let ms = u32::try_from(delay.as_micros().div_ceil(1000))
        .unwrap_or(u32::MAX)
        .max(1);
    let name = format!("{queue}.delay.{ms}ms");
    let mut arguments = FieldTable::default();
    arguments.insert("x-message-ttl".into(), AMQPValue::LongUInt(ms));
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(queue.into()),
    );
    arguments.insert(
        "x-expires".into(),
        AMQPValue::LongUInt(ms.saturating_add(60_000)),
    );
    channel
        .queue_declare(
            ShortString::from(name.as_str()),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await?;
    Ok(name)
}

/// Publishes Celery tasks to one queue on a confirm-mode channel of a [`Link`]. Cheap to share:
/// every publish awaits only its own confirm, so concurrent callers keep many messages in
/// flight. While the link reconnects, publishing fails at once with
/// [`PublishError::Unavailable`]; the first publish after it is back opens a new channel.
#[derive(Clone, Debug)]
pub struct Publisher {
    link: Link,
    queue: ShortString,
    /// The channel and the link generation it was opened on.
    channel: Arc<Mutex<Option<(u64, Channel)>>>,
    /// Held while a channel is opened, so concurrent publishers open one, not many.
    opening: Arc<tokio::sync::Mutex<()>>,
}

impl Publisher {
    /// Opens a channel in confirm mode on `link` and declares `queue`.
    ///
    /// # Errors
    ///
    /// Fails when the channel cannot be opened or the queue declared.
    pub async fn new(link: &Link, queue: &str) -> Result<Self, PublishError> {
        let publisher = Self {
            link: link.clone(),
            queue: ShortString::from(queue),
            channel: Arc::default(),
            opening: Arc::default(),
        };
        publisher.channel().await?;
        Ok(publisher)
    }

    /// The channel to publish on: the open one when it is on the current connection, else a
    /// new one.
    async fn channel(&self) -> Result<Channel, PublishError> {
        let usable = |current: &Current| {
            let cached = self.channel.lock().unwrap_or_else(PoisonError::into_inner);
            cached
                .as_ref()
                .filter(|(g, c)| *g == current.generation && c.status().connected())
                .map(|(_, c)| c.clone())
        };
        let current = self.link.current().ok_or(PublishError::Unavailable)?;
        if let Some(channel) = usable(&current) {
            return Ok(channel);
        }
        let _one = self.opening.lock().await;
        if let Some(channel) = usable(&current) {
            return Ok(channel);
        }
        let channel = current.connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        declare_queue(&channel, self.queue()).await?;
        *self.channel.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((current.generation, channel.clone()));
        Ok(channel)
    }

    /// The queue this publisher sends to.
    pub fn queue(&self) -> &str {
        self.queue.as_str()
    }

    /// Publishes `task` inside a PRODUCER span (`publish {queue}`, a child of the current span)
    /// whose context rides in the task's headers, and returns once the broker confirmed it.
    ///
    /// # Errors
    ///
    /// Fails when there is no connection, the channel fails, the broker nacks the message or
    /// does not confirm it within the confirm timeout; the span records it.
    pub async fn publish_traced(&self, task: &TaskMessage) -> Result<(), PublishError> {
        self.publish_traced_with(task, true).await
    }

    /// [`Publisher::publish_traced`], with the trace headers left out when `propagate` is
    /// false (the `strip_headers` fault): the span is still recorded.
    ///
    /// # Errors
    ///
    /// As [`Publisher::publish_traced`].
    pub async fn publish_traced_with(
        &self,
        task: &TaskMessage,
        propagate: bool,
    ) -> Result<(), PublishError> {
        self.traced(task, self.queue.clone(), propagate).await
    }

    /// [`Publisher::publish_traced`], delivered to the queue only after `delay`: the message
    /// waits in a delay queue of its own (`{queue}.delay.{ms}ms`, see [`declare_delay_queue`])
    /// that dead-letters it back into the queue once its TTL passed. Nobody holds it meanwhile:
    /// not a worker's concurrency slot, not a prefetch credit. The PRODUCER span is the queue's
    /// (`publish scan.tasks`), so a retry reads the same in the trace with or without a delay.
    ///
    /// # Errors
    ///
    /// As [`Publisher::publish_traced`], and when the delay queue cannot be declared.
    pub async fn publish_traced_after(
        &self,
        task: &TaskMessage,
        delay: Duration,
    ) -> Result<(), PublishError> {
        if delay.is_zero() {
            return self.publish_traced(task).await;
        }
        // Declared before every publish: an unused delay queue expires, and a message
        // published to a queue that no longer exists would be dropped unseen.
        let delay_queue = declare_delay_queue(&self.channel().await?, self.queue(), delay).await?;
        self.traced(task, ShortString::from(delay_queue), true)
            .await
    }

    /// Publishes `task` under a PRODUCER span for this publisher's queue, to `routing_key` on
    /// the default exchange, with the span's context in the headers when `propagate`.
    async fn traced(
        &self,
        task: &TaskMessage,
        routing_key: ShortString,
        propagate: bool,
    ) -> Result<(), PublishError> {
        let span = spans::producer_templated(
            MessagingSystem::RabbitMq,
            self.queue(),
            queue_template(self.queue()),
        );
        span.record(keys::MESSAGING_MESSAGE_ID, task.id.as_str());
        span.record(
            keys::MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY,
            routing_key.as_str(),
        );
        let mut headers = task.headers();
        if propagate {
            carrier::amqp::inject(&span.context(), &mut headers);
        }
        let result = self
            .publish_to(routing_key, task, headers)
            .instrument(span.clone())
            .await;
        if result.is_err() {
            spans::record_error(&span, "publish");
        }
        result
    }

    /// Publishes `task` with `headers` as given (no span, no trace context added) and returns
    /// once the broker confirmed it.
    ///
    /// # Errors
    ///
    /// Fails when the channel fails or the broker nacks the message.
    pub async fn publish(
        &self,
        task: &TaskMessage,
        headers: FieldTable,
    ) -> Result<(), PublishError> {
        self.publish_to(self.queue.clone(), task, headers).await
    }

    async fn publish_to(
        &self,
        routing_key: ShortString,
        task: &TaskMessage,
        headers: FieldTable,
    ) -> Result<(), PublishError> {
        let confirm = self
            .channel()
            .await?
            .basic_publish(
                ShortString::from(""),
                routing_key,
                BasicPublishOptions::default(),
                &task.body(),
                task.properties(headers),
            )
            .await?;
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| PublishError::Timeout(CONFIRM_TIMEOUT))??;
        match confirmation {
            Confirmation::Nack(_) => Err(PublishError::Nacked),
            Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scoped_queue_names_its_spans_by_its_base() {
        for scope in SCOPES {
            let queue = scoped_queue(SCAN_TASKS, scope);
            assert!(
                queue.starts_with(&format!("scan.tasks.{scope}-")),
                "{queue}"
            );
            assert_eq!(queue_template(&queue), SCAN_TASKS);
        }
        assert_ne!(
            scoped_queue(SCAN_TASKS, "run"),
            scoped_queue(SCAN_TASKS, "run")
        );
        // Names it did not build are their own template.
        for queue in [
            "scan.tasks",
            "orders",
            "scan.tasks.running",
            "scan.tasks.v2",
            "a.run",
        ] {
            assert_eq!(queue_template(queue), queue);
        }
    }
}
