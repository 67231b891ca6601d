//! Starting the pipeline: any subset of its services in this process, wired to each other, to
//! RabbitMQ and to Kafka (the embedded broker or an external one), with one shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tb_consumers::{History, Processed, Rewards};
use tb_messaging::amqp::{Link, PublishError, Publisher};
use tb_messaging::kafka::{self, EmbeddedKafka};
use tb_mocks::llm::LlmState;
use tb_mocks::vision::VisionState;
use tb_scan_api::ScanApiState;
use tb_store::{EventStore, Stores};
use tb_worker::{Worker, WorkerStats};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::SERVICES;
use crate::config::{KafkaChoice, PipelineConfig};

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An unknown service name.
    #[error("unknown service {0:?}; expected one of {SERVICES:?}")]
    UnknownService(String),
    /// RabbitMQ did not answer.
    #[error(
        "cannot reach RabbitMQ at {url}: {source}. Start one with `docker run -d -p 5672:5672 \
         rabbitmq:4-management` or your distribution's package (`apt install rabbitmq-server`)"
    )]
    Amqp {
        /// The URL tried.
        url: String,
        /// What failed.
        source: lapin::Error,
    },
    /// A task publisher could not be set up on the connection.
    #[error("setting up publishing to RabbitMQ: {0}")]
    Publisher(#[from] PublishError),
    /// Kafka could not be set up.
    #[error("kafka: {0}")]
    Kafka(#[from] kafka::KafkaSetupError),
    /// A Kafka client could not be created.
    #[error("kafka client: {0}")]
    KafkaClient(#[from] rdkafka::error::KafkaError),
    /// A mock's configuration is invalid.
    #[error("{0}: {1}")]
    Mock(&'static str, tb_mocks::ConfigError),
    /// A listen address could not be bound.
    #[error("binding {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The event store (PostgreSQL) could not be opened.
    #[error("{0}. With `store: postgres`, PostgreSQL must answer at the configured URL")]
    Store(#[from] tb_store::StoreError),
}

/// Why a running service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// An HTTP service's listener or connection loop failed.
    #[error(transparent)]
    Http(#[from] std::io::Error),
    /// The worker failed.
    #[error(transparent)]
    Worker(#[from] tb_worker::WorkerError),
    /// A consumer's Kafka client failed.
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The service's task panicked (or was cancelled).
    #[error("{0}")]
    Panicked(tokio::task::JoinError),
}

/// A service's task: its name and how it ended.
type Exit = (&'static str, Result<(), ServiceError>);

/// A running pipeline: addresses, counters and state to observe, and its shutdown.
pub struct Pipeline {
    /// scan-api's bound address, when it runs here.
    pub scan_api: Option<SocketAddr>,
    /// The Vision mock's bound address, when it runs here.
    pub vision: Option<SocketAddr>,
    /// The LLM mock's bound address, when it runs here.
    pub llm: Option<SocketAddr>,
    /// Kafka's `bootstrap.servers`.
    pub kafka_brokers: String,
    /// The event store shared by scan-api and the worker in this process.
    pub store: Arc<dyn EventStore>,
    /// Rewards granted by the character consumer (in this process's memory, or PostgreSQL).
    pub rewards: Rewards,
    /// Scan histories of my consumer.
    pub history: History,
    /// The worker's counters (zero when it does not run here).
    pub worker: Arc<WorkerStats>,
    /// Every scan event a consumer finished, as it happens (see [`Pipeline::take_processed`]).
    pub processed: mpsc::UnboundedReceiver<Processed>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<Exit>,
    _link: Option<Link>,
    kafka: Option<EmbeddedKafka>,
}

/// Spawns services that all stop on one signal.
struct Services {
    stop: watch::Receiver<bool>,
    tasks: JoinSet<Exit>,
}

impl Services {
    /// A future that completes once the pipeline is told to stop.
    fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// Runs `service` as `name` until it ends.
    fn spawn<E: Into<ServiceError>>(
        &mut self,
        name: &'static str,
        service: impl Future<Output = Result<(), E>> + Send + 'static,
    ) {
        self.tasks
            .spawn(async move { (name, service.await.map_err(Into::into)) });
    }
}

/// A listener on `addr`, and the address it got.
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Bind(addr, e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| StartError::Bind(addr, e))?;
    Ok((listener, bound))
}

/// The services named in `config`, checked against [`SERVICES`].
fn resolve(config: &PipelineConfig) -> Result<Vec<&'static str>, StartError> {
    config
        .services
        .iter()
        .map(|name| {
            SERVICES
                .iter()
                .find(|s| **s == *name)
                .copied()
                .ok_or_else(|| StartError::UnknownService((*name).to_owned()))
        })
        .collect()
}

/// The embedded broker when the config asks for it, and the bootstrap servers either way;
/// an external broker gets its topics when a service here uses Kafka.
async fn kafka_for(
    config: &PipelineConfig,
    uses_kafka: bool,
) -> Result<(Option<EmbeddedKafka>, String), StartError> {
    match &config.wiring.kafka {
        KafkaChoice::Embedded => {
            let k = EmbeddedKafka::start()?;
            let brokers = k.bootstrap_servers().to_owned();
            Ok((Some(k), brokers))
        }
        KafkaChoice::External(brokers) => {
            if uses_kafka {
                kafka::ensure_topics(brokers).await?;
            }
            Ok((None, brokers.clone()))
        }
    }
}

impl Pipeline {
    /// Starts `config.services`.
    ///
    /// # Errors
    ///
    /// Fails on an unknown service name, an unreachable RabbitMQ or Kafka, an invalid mock
    /// configuration, or an address that cannot be bound.
    pub async fn start(mut config: PipelineConfig) -> Result<Self, StartError> {
        let services = resolve(&config)?;
        let runs = |s: &str| services.contains(&s);
        let (stop, stop_rx) = watch::channel(false);
        let mut spawned = Services {
            stop: stop_rx,
            tasks: JoinSet::new(),
        };
        let uses_kafka = [
            tb_worker::SERVICE,
            tb_consumers::CHARACTER,
            tb_consumers::MY,
        ]
        .iter()
        .any(|s| runs(s));
        let (embedded, kafka_brokers) = kafka_for(&config, uses_kafka).await?;

        config.worker.queue = config.wiring.queue.clone();
        let (vision, llm) = start_mocks(&config, &services, &mut spawned).await?;
        // The worker finds the APIs where the wiring says, or where the mocks bound here.
        config.worker.vision_url = config.wiring.worker_vision_url(vision);
        config.worker.llm_url = config.wiring.worker_llm_url(llm);

        let stores = Stores::open(&config.store, config.store_latency).await?;
        let store = stores.events.clone();
        let link = if runs(tb_scan_api::SERVICE) || runs(tb_worker::SERVICE) {
            Some(connect_amqp(&config.wiring.amqp_url).await?)
        } else {
            None
        };
        let mut worker = Arc::new(WorkerStats::default());
        let mut scan_api = None;
        if let Some(link) = &link {
            if runs(tb_worker::SERVICE) {
                worker = start_worker(&config, link, &kafka_brokers, &store, &mut spawned).await?;
            }
            if runs(tb_scan_api::SERVICE) {
                scan_api = Some(start_scan_api(&config, link, &store, &mut spawned).await?);
            }
        }

        let consumers = start_consumers(&config, &services, &kafka_brokers, &stores, &mut spawned)?;

        Ok(Self {
            scan_api,
            vision,
            llm,
            kafka_brokers,
            store,
            rewards: consumers.rewards,
            history: consumers.history,
            worker,
            processed: consumers.processed,
            stop,
            tasks: spawned.tasks,
            _link: link,
            kafka: embedded,
        })
    }

    /// The embedded Kafka broker, when this pipeline runs one (to take it down and up).
    pub fn embedded_kafka(&self) -> Option<&EmbeddedKafka> {
        self.kafka.as_ref()
    }

    /// Takes the stream of finished scan events, leaving an empty one. Drop it when nobody
    /// counts: the consumers' sends then fail and are ignored.
    pub fn take_processed(&mut self) -> mpsc::UnboundedReceiver<Processed> {
        std::mem::replace(&mut self.processed, mpsc::unbounded_channel().1)
    }

    /// Waits until one service stops on its own (an error, or an injected crash) and returns
    /// its name and outcome; `None` when none is running.
    pub async fn next_exit(&mut self) -> Option<(&'static str, Result<(), ServiceError>)> {
        match self.tasks.join_next().await? {
            Ok(exit) => Some(exit),
            Err(e) => Some(("unknown", Err(ServiceError::Panicked(e)))),
        }
    }

    /// Stops intake everywhere, drains what is in flight (acks and commits included), and
    /// returns the services that ended with an error.
    pub async fn shutdown(mut self) -> Vec<(&'static str, ServiceError)> {
        self.stop.send_replace(true);
        let mut errors = Vec::new();
        while let Some(exit) = self.next_exit().await {
            if let (name, Err(e)) = exit {
                errors.push((name, e));
            }
        }
        errors
    }
}

/// Starts the mocks `services` names; returns their bound addresses.
async fn start_mocks(
    config: &PipelineConfig,
    services: &[&'static str],
    spawned: &mut Services,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>), StartError> {
    let mut vision = None;
    if services.contains(&tb_mocks::vision::SERVICE) {
        let state = VisionState::new(&config.vision).map_err(|e| StartError::Mock("vision", e))?;
        let (listener, addr) = bind(config.wiring.vision_addr).await?;
        vision = Some(addr);
        let shutdown = spawned.stopped();
        spawned.spawn(
            tb_mocks::vision::SERVICE,
            tb_mocks::vision::run(state, listener, shutdown),
        );
    }
    let mut llm = None;
    if services.contains(&tb_mocks::llm::SERVICE) {
        let state = LlmState::new(&config.llm).map_err(|e| StartError::Mock("llm", e))?;
        let (listener, addr) = bind(config.wiring.llm_addr).await?;
        llm = Some(addr);
        let shutdown = spawned.stopped();
        spawned.spawn(
            tb_mocks::llm::SERVICE,
            tb_mocks::llm::run(state, listener, shutdown),
        );
    }
    Ok((vision, llm))
}

/// What the consumers leave to observe.
struct Consumers {
    rewards: Rewards,
    history: History,
    processed: mpsc::UnboundedReceiver<Processed>,
}

/// Starts the consumers `services` names on `kafka_brokers`.
fn start_consumers(
    config: &PipelineConfig,
    services: &[&'static str],
    kafka_brokers: &str,
    stores: &Stores,
    spawned: &mut Services,
) -> Result<Consumers, StartError> {
    let (processed_tx, processed) = mpsc::unbounded_channel();
    let rewards = stores.rewards.clone();
    let history = stores.history.clone();
    if services.contains(&tb_consumers::CHARACTER) {
        let consumer = kafka::consumer(kafka_brokers, tb_consumers::CHARACTER_GROUP)?;
        let producer = kafka::producer(kafka_brokers)?;
        let shutdown = spawned.stopped();
        spawned.spawn(
            tb_consumers::CHARACTER,
            tb_consumers::run_character(
                config.consumers.clone(),
                consumer,
                producer,
                rewards.clone(),
                Some(processed_tx.clone()),
                shutdown,
            ),
        );
    }
    if services.contains(&tb_consumers::MY) {
        let consumer = kafka::consumer(kafka_brokers, tb_consumers::MY_GROUP)?;
        let shutdown = spawned.stopped();
        spawned.spawn(
            tb_consumers::MY,
            tb_consumers::run_my(
                config.consumers.clone(),
                consumer,
                history.clone(),
                Some(processed_tx),
                shutdown,
            ),
        );
    }
    Ok(Consumers {
        rewards,
        history,
        processed,
    })
}

async fn connect_amqp(url: &str) -> Result<Link, StartError> {
    Link::connect(url).await.map_err(|source| StartError::Amqp {
        url: url.to_owned(),
        source,
    })
}

/// Starts the worker on `link`; returns its counters.
async fn start_worker(
    config: &PipelineConfig,
    link: &Link,
    kafka_brokers: &str,
    store: &Arc<dyn EventStore>,
    spawned: &mut Services,
) -> Result<Arc<WorkerStats>, StartError> {
    let retries = Publisher::new(link, &config.worker.queue).await?;
    let producer = kafka::producer(kafka_brokers)?;
    let worker = Worker::new(config.worker.clone(), retries, producer, store.clone());
    let stats = worker.stats();
    let link = link.clone();
    let shutdown = spawned.stopped();
    spawned.spawn(tb_worker::SERVICE, async move {
        worker.run(&link, shutdown).await
    });
    Ok(stats)
}

/// Starts scan-api publishing on `link`; returns its bound address.
async fn start_scan_api(
    config: &PipelineConfig,
    link: &Link,
    store: &Arc<dyn EventStore>,
    spawned: &mut Services,
) -> Result<SocketAddr, StartError> {
    let publisher = Publisher::new(link, &config.worker.queue).await?;
    let (listener, addr) = bind(config.wiring.scan_api_addr).await?;
    let state = ScanApiState::new(publisher, store.clone())
        .with_strip_amqp(config.strip_amqp.clone())
        .with_w3c_test_endpoint(config.w3c_test_endpoint);
    let shutdown = spawned.stopped();
    spawned.spawn(
        tb_scan_api::SERVICE,
        tb_scan_api::run(state, listener, shutdown),
    );
    Ok(addr)
}
