//! What the pipeline is made of: the seed design's figures, who is wired to whom, and every
//! service's knobs, in one [`PipelineConfig`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tb_consumers::ConsumerConfig;
use tb_messaging::amqp;
use tb_mocks::llm::LlmConfig;
use tb_mocks::vision::VisionConfig;
use tb_store::StoreChoice;
use tb_telemetry::fault::Strip;
use tb_telemetry::spans::ConsumerRelation;
use tb_worker::WorkerConfig;

use crate::SERVICES;

/// The seed design's simulated times (`docs/design.md`), before a time scale. The
/// mocks' latency distributions (Vision ≈ 1900 ms, LLM ≈ 400 ms + 100 × 20 ms) are their own
/// defaults in `tb-mocks`.
pub mod seed {
    use std::time::Duration;

    /// `rule_match`: CPU time the worker spins for.
    pub const RULE_MATCH: Duration = Duration::from_millis(500);
    /// `save_to_event_store`: the event store's write.
    pub const STORE_WRITE: Duration = Duration::from_millis(20);
    /// `handle_scan_completed`'s own time; with `grant_reward` inside it the span lasts the
    /// seed's 50 ms.
    pub const HANDLE: Duration = Duration::from_millis(20);
    /// `grant_reward`.
    pub const GRANT: Duration = Duration::from_millis(30);
    /// Tasks the worker processes at once.
    pub const CONCURRENCY: usize = 16;
    /// Unacked deliveries RabbitMQ may push ahead of a worker running `concurrency` tasks.
    pub fn prefetch(concurrency: usize) -> u16 {
        u16::try_from(concurrency * 2).unwrap_or(u16::MAX)
    }

    /// Records each Kafka consumer processes at once. Enough that simulated waits overlap at
    /// thousands of scans a second; offsets still advance only past finished records.
    pub const CONSUMER_CONCURRENCY: usize = 64;
}

/// Which Kafka to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KafkaChoice {
    /// librdkafka's mock cluster in this process.
    Embedded,
    /// An external broker (`bootstrap.servers`).
    External(String),
}

/// Who talks to whom: brokers, the task queue, listen addresses, and where the worker finds
/// the mock APIs. Everything else about the pipeline is a knob of [`PipelineConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wiring {
    /// RabbitMQ URL.
    pub amqp_url: String,
    /// Kafka.
    pub kafka: KafkaChoice,
    /// The task queue scan-api publishes to and the worker consumes.
    pub queue: String,
    /// scan-api's listen address.
    pub scan_api_addr: SocketAddr,
    /// The Vision mock's listen address.
    pub vision_addr: SocketAddr,
    /// The LLM mock's listen address.
    pub llm_addr: SocketAddr,
    /// Vision API base URL for a worker whose Vision mock runs elsewhere.
    pub vision_url: String,
    /// LLM API base URL for a worker whose LLM mock runs elsewhere.
    pub llm_url: String,
    /// A URL the worker calls the Vision API at even when the mock runs beside it: a fault
    /// proxy in front of the mock's `vision_addr`, which must then be a fixed port.
    pub vision_via: Option<String>,
    /// As `vision_via`, for the LLM API.
    pub llm_via: Option<String>,
}

/// The local demo's addresses, as `tracebench service`'s flags default to them.
pub mod local {
    /// scan-api's listen address.
    pub const SCAN_API_ADDR: &str = "127.0.0.1:8000";
    /// The Vision mock's listen address.
    pub const VISION_ADDR: &str = "127.0.0.1:8001";
    /// The LLM mock's listen address.
    pub const LLM_ADDR: &str = "127.0.0.1:8002";
    /// Where the worker finds the Vision mock.
    pub const VISION_URL: &str = "http://127.0.0.1:8001";
    /// Where the worker finds the LLM mock.
    pub const LLM_URL: &str = "http://127.0.0.1:8002";
}

impl Wiring {
    /// The local demo: RabbitMQ on 5672, embedded Kafka, `scan.tasks`, the [`local`] addresses.
    pub fn local_demo() -> Self {
        let addr = |a: &str| {
            a.parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
        };
        Self {
            amqp_url: amqp::DEFAULT_URL.to_owned(),
            kafka: KafkaChoice::Embedded,
            queue: amqp::SCAN_TASKS.to_owned(),
            scan_api_addr: addr(local::SCAN_API_ADDR),
            vision_addr: addr(local::VISION_ADDR),
            llm_addr: addr(local::LLM_ADDR),
            vision_url: local::VISION_URL.to_owned(),
            llm_url: local::LLM_URL.to_owned(),
            vision_via: None,
            llm_via: None,
        }
    }

    /// Where the worker calls the Vision API: `vision_via` when set, else the mock bound in
    /// this process (`bound`), else `vision_url`.
    pub fn worker_vision_url(&self, bound: Option<SocketAddr>) -> String {
        worker_url(self.vision_via.as_deref(), bound, &self.vision_url)
    }

    /// As [`Wiring::worker_vision_url`], for the LLM API.
    pub fn worker_llm_url(&self, bound: Option<SocketAddr>) -> String {
        worker_url(self.llm_via.as_deref(), bound, &self.llm_url)
    }

    /// Every listener on a free loopback port, with the given brokers and queue: for runs and
    /// tests that must never collide with anything else on the machine.
    pub fn ephemeral(amqp_url: String, kafka: KafkaChoice, queue: String) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            amqp_url,
            kafka,
            queue,
            scan_api_addr: any,
            vision_addr: any,
            llm_addr: any,
            ..Self::local_demo()
        }
    }
}

fn worker_url(via: Option<&str>, bound: Option<SocketAddr>, url: &str) -> String {
    match (via, bound) {
        (Some(via), _) => via.to_owned(),
        (None, Some(addr)) => format!("http://{addr}"),
        (None, None) => url.to_owned(),
    }
}

impl Default for Wiring {
    fn default() -> Self {
        Self::local_demo()
    }
}

/// Everything the pipeline's services need. Build it directly, or start from
/// [`PipelineConfig::seed`]; the default is the seed at full time over the local demo's wiring.
///
/// It serialises as a child process's knobs (see `tb_scenario::ServiceSpec`): which services
/// and the wiring are the child's command line, so they are left out and come back empty and
/// as the local demo's.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PipelineConfig {
    /// The services to run here.
    #[serde(skip)]
    pub services: Vec<&'static str>,
    /// Brokers, queue and addresses.
    #[serde(skip)]
    pub wiring: Wiring,
    /// The Vision mock.
    pub vision: VisionConfig,
    /// The LLM mock.
    pub llm: LlmConfig,
    /// The worker. Its queue and API URLs come from [`Wiring`] when the pipeline starts.
    pub worker: WorkerConfig,
    /// The consumers.
    pub consumers: ConsumerConfig,
    /// Where the pipeline keeps scans, rewards and histories.
    pub store: StoreChoice,
    /// Simulated write latency of the in-memory event store (PostgreSQL pays its own).
    pub store_latency: Duration,
    /// Fault injection: share of tasks scan-api publishes without trace headers (shared: it can
    /// be changed while scan-api runs).
    pub strip_amqp: Arc<Strip>,
    /// Whether scan-api serves `POST /test`, the W3C test suite's protocol (loopback targets
    /// only). Off by default.
    pub w3c_test_endpoint: bool,
}

impl PipelineConfig {
    /// The seed design with every simulated time multiplied by `time_scale` (0.01 turns the
    /// seed's 5 s scan into 50 ms).
    pub fn seed(time_scale: f64) -> Self {
        let scaled = |d: Duration| d.mul_f64(time_scale);
        let worker = WorkerConfig {
            concurrency: seed::CONCURRENCY,
            prefetch: seed::prefetch(seed::CONCURRENCY),
            rule_match_work: scaled(seed::RULE_MATCH),
            ..WorkerConfig::default()
        };
        Self {
            services: SERVICES.to_vec(),
            wiring: Wiring::local_demo(),
            vision: VisionConfig {
                time_scale,
                ..VisionConfig::default()
            },
            llm: LlmConfig {
                time_scale,
                ..LlmConfig::default()
            },
            worker,
            consumers: ConsumerConfig {
                relation: ConsumerRelation::Child,
                handle_latency: scaled(seed::HANDLE),
                grant_latency: scaled(seed::GRANT),
                concurrency: seed::CONSUMER_CONCURRENCY,
            },
            store: StoreChoice::Memory,
            store_latency: scaled(seed::STORE_WRITE),
            strip_amqp: Arc::default(),
            w3c_test_endpoint: false,
        }
    }

    /// Sets how consumer spans relate to their producers, at both hops that have one (the
    /// worker's task, the consumers' event).
    pub fn with_relation(mut self, relation: ConsumerRelation) -> Self {
        self.worker.relation = relation;
        self.consumers.relation = relation;
        self
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self::seed(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_demo_listens_on_its_documented_ports() {
        let w = Wiring::local_demo();
        let ports = [w.scan_api_addr, w.vision_addr, w.llm_addr].map(|a| a.port());
        assert_eq!(ports, [8000, 8001, 8002]);
        assert!(w.vision_url.ends_with(":8001") && w.llm_url.ends_with(":8002"));
    }
}
