//! Starting the scan pipeline: any subset of its services in this process, wired to each other,
//! to RabbitMQ and to Kafka (the embedded broker or an external one), with one shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tb_consumers::{ConsumerConfig, History, Processed, Rewards};
use tb_messaging::amqp::{self, Publisher};
use tb_messaging::kafka::{self, EmbeddedKafka};
use tb_mocks::llm::{LlmConfig, LlmState};
use tb_mocks::vision::{VisionConfig, VisionState};
use tb_scan_api::ScanApiState;
use tb_store::{EventStore, MemoryStore};
use tb_worker::{Worker, WorkerConfig, WorkerStats};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// The services `tracebench service` knows, by the name their spans carry.
pub const SERVICES: [&str; 6] = [
    tb_scan_api::SERVICE,
    tb_worker::SERVICE,
    tb_mocks::vision::SERVICE,
    tb_mocks::llm::SERVICE,
    tb_consumers::CHARACTER,
    tb_consumers::MY,
];

/// Which Kafka to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KafkaChoice {
    /// librdkafka's mock cluster in this process.
    Embedded,
    /// An external broker (`bootstrap.servers`).
    External(String),
}

/// Everything the pipeline's services need. Build it directly; the default is the local demo
/// (RabbitMQ on 5672, embedded Kafka, ports 8000–8002, the seed's latencies).
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The services to run here.
    pub services: Vec<&'static str>,
    /// RabbitMQ URL.
    pub amqp_url: String,
    /// Kafka.
    pub kafka: KafkaChoice,
    /// scan-api's listen address.
    pub scan_api_addr: SocketAddr,
    /// The Vision mock's listen address.
    pub vision_addr: SocketAddr,
    /// The LLM mock's listen address.
    pub llm_addr: SocketAddr,
    /// The Vision mock.
    pub vision: VisionConfig,
    /// The LLM mock.
    pub llm: LlmConfig,
    /// The worker; its Vision/LLM URLs are replaced by the mocks' bound addresses when the mocks
    /// run in this process.
    pub worker: WorkerConfig,
    /// The consumers.
    pub consumers: ConsumerConfig,
    /// Simulated write latency of the event store (the seed's 20 ms).
    pub store_latency: Duration,
    /// Fault injection: share of tasks scan-api publishes without trace headers.
    pub strip_amqp: f64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            services: SERVICES.to_vec(),
            amqp_url: amqp::DEFAULT_URL.to_owned(),
            kafka: KafkaChoice::Embedded,
            scan_api_addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            vision_addr: SocketAddr::from(([127, 0, 0, 1], 8001)),
            llm_addr: SocketAddr::from(([127, 0, 0, 1], 8002)),
            vision: VisionConfig::default(),
            llm: LlmConfig::default(),
            worker: WorkerConfig::default(),
            consumers: ConsumerConfig::default(),
            store_latency: Duration::from_millis(20),
            strip_amqp: 0.0,
        }
    }
}

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
}

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
    /// Rewards granted by the character consumer.
    pub rewards: Arc<Rewards>,
    /// Scan histories of my consumer.
    pub history: Arc<History>,
    /// The worker's counters (zero when it does not run here).
    pub worker: Arc<WorkerStats>,
    /// Every scan event a consumer finished, as it happens.
    pub processed: mpsc::UnboundedReceiver<Processed>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<(&'static str, Result<(), String>)>,
    _connection: Option<Arc<lapin::Connection>>,
    _kafka: Option<EmbeddedKafka>,
}

fn stopped(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Bind(addr, e))
}

impl Pipeline {
    /// Starts `config.services`.
    ///
    /// # Errors
    ///
    /// Fails on an unknown service name, an unreachable RabbitMQ or Kafka, an invalid mock
    /// configuration, or an address that cannot be bound.
    pub async fn start(mut config: PipelineConfig) -> Result<Self, StartError> {
        let mut services = Vec::new();
        for name in &config.services {
            match SERVICES.iter().find(|s| **s == *name) {
                Some(s) => services.push(*s),
                None => return Err(StartError::UnknownService((*name).to_owned())),
            }
        }
        let runs = |s: &str| services.contains(&s);
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();

        let (embedded, kafka_brokers) = match &config.kafka {
            KafkaChoice::Embedded => {
                let k = EmbeddedKafka::start()?;
                let brokers = k.bootstrap_servers().to_owned();
                (Some(k), brokers)
            }
            KafkaChoice::External(brokers) => {
                let uses_kafka = [
                    tb_worker::SERVICE,
                    tb_consumers::CHARACTER,
                    tb_consumers::MY,
                ]
                .iter()
                .any(|s| runs(s));
                if uses_kafka {
                    kafka::ensure_topics(brokers).await?;
                }
                (None, brokers.clone())
            }
        };

        let mut vision = None;
        if runs(tb_mocks::vision::SERVICE) {
            let state =
                VisionState::new(&config.vision).map_err(|e| StartError::Mock("vision", e))?;
            let listener = bind(config.vision_addr).await?;
            let addr = listener
                .local_addr()
                .map_err(|e| StartError::Bind(config.vision_addr, e))?;
            config.worker.vision_url = format!("http://{addr}");
            vision = Some(addr);
            let shutdown = stopped(&stop_rx);
            tasks.spawn(async move {
                let r = tb_mocks::vision::run(state, listener, shutdown).await;
                (tb_mocks::vision::SERVICE, r.map_err(|e| e.to_string()))
            });
        }
        let mut llm = None;
        if runs(tb_mocks::llm::SERVICE) {
            let state = LlmState::new(&config.llm).map_err(|e| StartError::Mock("llm", e))?;
            let listener = bind(config.llm_addr).await?;
            let addr = listener
                .local_addr()
                .map_err(|e| StartError::Bind(config.llm_addr, e))?;
            config.worker.llm_url = format!("http://{addr}");
            llm = Some(addr);
            let shutdown = stopped(&stop_rx);
            tasks.spawn(async move {
                let r = tb_mocks::llm::run(state, listener, shutdown).await;
                (tb_mocks::llm::SERVICE, r.map_err(|e| e.to_string()))
            });
        }

        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(config.store_latency));
        let needs_amqp = runs(tb_scan_api::SERVICE) || runs(tb_worker::SERVICE);
        let connection = if needs_amqp {
            Some(Arc::new(amqp::connect(&config.amqp_url).await.map_err(
                |source| StartError::Amqp {
                    url: config.amqp_url.clone(),
                    source,
                },
            )?))
        } else {
            None
        };
        let amqp_error = |source| StartError::Amqp {
            url: config.amqp_url.clone(),
            source,
        };

        let mut worker_stats = Arc::new(WorkerStats::default());
        if let (true, Some(connection)) = (runs(tb_worker::SERVICE), &connection) {
            let retries = Publisher::new(connection, &config.worker.queue)
                .await
                .map_err(amqp_error)?;
            let producer = kafka::producer(&kafka_brokers)?;
            let worker = Worker::new(config.worker.clone(), retries, producer, store.clone());
            worker_stats = worker.stats();
            let connection = connection.clone();
            let shutdown = stopped(&stop_rx);
            tasks.spawn(async move {
                let r = worker.run(&connection, shutdown).await;
                (tb_worker::SERVICE, r.map_err(|e| e.to_string()))
            });
        }

        let mut scan_api = None;
        if let (true, Some(connection)) = (runs(tb_scan_api::SERVICE), &connection) {
            let publisher = Publisher::new(connection, &config.worker.queue)
                .await
                .map_err(amqp_error)?;
            let listener = bind(config.scan_api_addr).await?;
            scan_api = Some(
                listener
                    .local_addr()
                    .map_err(|e| StartError::Bind(config.scan_api_addr, e))?,
            );
            let state =
                ScanApiState::new(publisher, store.clone()).with_strip_amqp(config.strip_amqp);
            let shutdown = stopped(&stop_rx);
            tasks.spawn(async move {
                let r = tb_scan_api::run(state, listener, shutdown).await;
                (tb_scan_api::SERVICE, r.map_err(|e| e.to_string()))
            });
        }

        let (processed_tx, processed) = mpsc::unbounded_channel();
        let rewards = Arc::new(Rewards::default());
        let history = Arc::new(History::default());
        if runs(tb_consumers::CHARACTER) {
            let consumer = kafka::consumer(&kafka_brokers, tb_consumers::CHARACTER_GROUP)?;
            let producer = kafka::producer(&kafka_brokers)?;
            let (config, rewards, tx) = (
                config.consumers.clone(),
                rewards.clone(),
                processed_tx.clone(),
            );
            let shutdown = stopped(&stop_rx);
            tasks.spawn(async move {
                let r = tb_consumers::run_character(
                    config,
                    consumer,
                    producer,
                    rewards,
                    Some(tx),
                    shutdown,
                )
                .await;
                (tb_consumers::CHARACTER, r.map_err(|e| e.to_string()))
            });
        }
        if runs(tb_consumers::MY) {
            let consumer = kafka::consumer(&kafka_brokers, tb_consumers::MY_GROUP)?;
            let (config, history, tx) = (
                config.consumers.clone(),
                history.clone(),
                processed_tx.clone(),
            );
            let shutdown = stopped(&stop_rx);
            tasks.spawn(async move {
                let r = tb_consumers::run_my(config, consumer, history, Some(tx), shutdown).await;
                (tb_consumers::MY, r.map_err(|e| e.to_string()))
            });
        }

        Ok(Self {
            scan_api,
            vision,
            llm,
            kafka_brokers,
            store,
            rewards,
            history,
            worker: worker_stats,
            processed,
            stop,
            tasks,
            _connection: connection,
            _kafka: embedded,
        })
    }

    /// Waits until one service stops on its own (an error, or an injected crash) and returns
    /// its name and outcome; `None` when none is running.
    pub async fn next_exit(&mut self) -> Option<(&'static str, Result<(), String>)> {
        match self.tasks.join_next().await? {
            Ok(exit) => Some(exit),
            Err(e) => Some(("unknown", Err(e.to_string()))),
        }
    }

    /// Stops intake everywhere, drains what is in flight (acks and commits included), and
    /// returns the services that ended with an error.
    pub async fn shutdown(mut self) -> Vec<(&'static str, String)> {
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
