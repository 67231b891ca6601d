//! Stage 1: a scenario file as written. Every field is documented (`scenarios/README.md`
//! repeats each with its default) and unknown fields are rejected.

use std::collections::BTreeMap;

use serde::Deserialize;
use tb_mocks::Latency;
use tb_telemetry::Sampling;
use tb_telemetry::spans::ConsumerRelation;

/// A scenario file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    /// Short name, used in reports.
    pub name: String,
    /// What the scenario shows, for people.
    #[serde(default)]
    pub description: String,
    /// Seed of every random draw (arrivals, latencies, faults). Default 1.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// How long load is measured, after the warmup (`10s`, `2m`).
    pub duration: String,
    /// Load offered before measuring starts; not recorded. Default `0s`.
    #[serde(default)]
    pub warmup: Option<String>,
    /// Multiplies every simulated latency (0.01 turns the seed's 5 s into 50 ms). Default 1.
    #[serde(default = "default_one")]
    pub time_scale: f64,
    /// The offered load.
    pub load: RawLoad,
    /// Knobs of the mock services.
    #[serde(default)]
    pub services: RawServices,
    /// Tracing setup.
    #[serde(default)]
    pub tracing: RawTracing,
    /// Where RabbitMQ, Kafka and the trace backend come from.
    #[serde(default)]
    pub infra: RawInfra,
    /// What must hold for the run to pass.
    #[serde(default)]
    pub expect: RawExpect,
    /// Injected propagation faults.
    #[serde(default)]
    pub faults: RawFaultsSection,
    /// What `tracebench overhead` measures; `run` ignores it.
    #[serde(default)]
    pub overhead: RawOverhead,
}

/// Where an overhead arm's spans go.
#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArmExporter {
    /// The SDK and its batch processor, exporting nothing.
    Discard,
    /// OTLP/gRPC into the embedded sink, run as a process of its own.
    #[default]
    Otlp,
    /// OTLP/gRPC to `overhead.otlp_endpoint` (a Collector, Tempo).
    External,
}

impl ArmExporter {
    /// The name as a scenario writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Discard => "discard",
            Self::Otlp => "otlp",
            Self::External => "external",
        }
    }
}

/// One arm of the overhead ladder.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArm {
    /// Name in the results; default from the sampler and exporter (`always_on+otlp`).
    #[serde(default)]
    pub name: Option<String>,
    /// `off` (no SDK), `always_off`, `{ratio: 0.1}` or `always_on`.
    pub sampler: Sampling,
    /// `discard`, `otlp` (default) or `external`; ignored with `off`.
    #[serde(default)]
    pub exporter: ArmExporter,
    /// CPU microseconds burnt for every sampled span as it ends (the bench's self-test).
    #[serde(default)]
    pub synthetic_span_cost_us: f64,
}

/// `load.arrival.search` and `overhead.search`: rate after rate until one does not hold.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    /// First rate (requests/s).
    pub from: f64,
    /// Last rate tried (requests/s).
    pub to: f64,
    /// Increment between steps (requests/s).
    pub step: f64,
    /// How long each rate is held (`10s`).
    pub hold: String,
    /// The end-to-end p99 (corrected, ms) a step must stay under.
    pub max_p99_ms: f64,
}

/// `overhead:`: the ladder `tracebench overhead` runs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverhead {
    /// The arms, in any order (they run interleaved); default: `off`, then `always_off`,
    /// `ratio 0.01`, `ratio 0.1` and `always_on` with each of `discard` and `otlp` (and
    /// `external` when `otlp_endpoint` is given).
    #[serde(default)]
    pub arms: Option<Vec<RawArm>>,
    /// Measured runs of each arm (default 5, at least 2).
    #[serde(default)]
    pub repeats: Option<u32>,
    /// The offered rate (requests/s); default `rate_share` of the `off` arm's saturation.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Share of the `off` saturation offered when no `rate` is given (default 0.6).
    #[serde(default)]
    pub rate_share: Option<f64>,
    /// The search that finds the `off` saturation; default the scenario's own
    /// `load.arrival.search`, else from 250 to 6000 by 250, 3 s holds, p99 under 100 ms.
    #[serde(default)]
    pub search: Option<RawSearch>,
    /// OTLP/gRPC endpoint of an external backend (Collector, Tempo) for `external` arms.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

/// Which hop a propagation fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hop {
    /// The worker's HTTP calls to the Vision and LLM APIs.
    Http,
    /// scan-api's task publish to RabbitMQ.
    Amqp,
    /// The worker's `scan.completed` event on Kafka.
    Kafka,
}

/// `strip_headers`: remove the trace headers at one hop for a share of messages.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStrip {
    /// `http`, `amqp` or `kafka`.
    pub hop: Hop,
    /// Share of messages on that hop sent without trace headers (0–1).
    pub ratio: f64,
}

/// Injected propagation faults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFaultsSection {
    /// Strip trace headers at one hop.
    #[serde(default)]
    pub strip_headers: Option<RawStrip>,
    /// Faults injected for a while during the load.
    #[serde(default)]
    pub schedule: Vec<RawScheduledFault>,
}

/// One entry of `faults.schedule`: `{at: 5s, for: 3s, fault: {outage: rabbitmq}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScheduledFault {
    /// When it starts, after the load started (warm-up included).
    pub at: String,
    /// How long it lasts.
    #[serde(rename = "for")]
    pub lasts: String,
    /// What happens.
    pub fault: RawFault,
}

/// A fault of the schedule.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawFault {
    /// The hop is gone: connections reset, new ones refused.
    Outage(FaultHop),
    /// The hop stops answering but keeps connections open.
    Blackhole(FaultHop),
    /// The OTLP path to the trace collector blackholed: `{blackhole: collector}`.
    CollectorDown,
    /// The worker process is killed (SIGKILL) and started again `for` later; needs
    /// `--services process`.
    WorkerCrash,
    /// Every chunk on the hop is delayed.
    Latency {
        /// The hop.
        hop: FaultHop,
        /// The delay, in milliseconds.
        ms: f64,
    },
    /// Each direction of each connection on the hop carries at most this many bytes a second.
    Bandwidth {
        /// The hop.
        hop: FaultHop,
        /// The limit.
        bytes_per_s: u64,
    },
}

/// A hop the schedule can fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultHop {
    /// RabbitMQ, through a fault proxy in front of it.
    Rabbitmq,
    /// The embedded Kafka broker, through its own down/up controls (outages only).
    Kafka,
    /// The OTLP path from the services to the trace collector, through a fault proxy.
    Collector,
    /// The worker process (`worker_crash` only).
    Worker,
    /// The worker's calls to the Vision API, through a fault proxy.
    Vision,
    /// The worker's calls to the LLM API, through a fault proxy.
    Llm,
}

impl FaultHop {
    /// The hop's name in the scenario.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rabbitmq => "rabbitmq",
            Self::Kafka => "kafka",
            Self::Collector => "collector",
            Self::Worker => "worker",
            Self::Vision => "vision",
            Self::Llm => "llm",
        }
    }
}

/// The expected trace: a named template or a tree.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawTraceShape {
    /// A named template: `seed-pipeline`.
    Named(String),
    /// A tree of nodes.
    Tree(tb_verify::Node),
}

fn default_seed() -> u64 {
    1
}

fn default_one() -> f64 {
    1.0
}

/// How requests arrive.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawArrival {
    /// Evenly spaced at `rate`.
    Constant,
    /// A Poisson process at `rate` (exponential gaps).
    Poisson,
    /// `base` requests/s, rising to `peak` for `duty` of every `period`.
    Burst {
        /// Rate outside bursts (requests/s).
        base: f64,
        /// Rate inside bursts (requests/s).
        peak: f64,
        /// Burst period (`10s`).
        period: String,
        /// Share of each period spent at `peak` (0–1).
        duty: f64,
    },
    /// A linear ramp from `from` to `to` requests/s over the measured duration.
    Ramp {
        /// Starting rate (requests/s).
        from: f64,
        /// Final rate (requests/s).
        to: f64,
    },
    /// A saturation search: constant load at `from`, `from + step`, … up to `to` requests/s,
    /// each rate held for `hold`, until a step loses a scan, skips or fails a request, or its
    /// end-to-end p99 exceeds `max_p99_ms`. The highest rate that held is the capacity.
    /// `duration` caps the whole search.
    Search(RawSearch),
}

/// The offered load.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoad {
    /// Arrival process: `constant`, `poisson`, `{burst: {...}}`, `{ramp: {...}}` or
    /// `{search: {...}}`.
    pub arrival: RawArrival,
    /// Requests per second for `constant` and `poisson`.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Requests pending at once (waiting for a connection or in flight); an arrival beyond it
    /// is skipped and counted. Default 10000.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Concurrent HTTP requests (connections). Default 64.
    #[serde(default)]
    pub connections: Option<usize>,
}

/// A latency distribution in milliseconds.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawLatency {
    /// Always `ms`.
    Constant {
        /// Milliseconds.
        ms: f64,
    },
    /// Uniform between `min_ms` and `max_ms`.
    Uniform {
        /// Lower bound.
        min_ms: f64,
        /// Upper bound.
        max_ms: f64,
    },
    /// Normal, clamped at 0.
    Normal {
        /// Mean.
        mean_ms: f64,
        /// Standard deviation.
        stddev_ms: f64,
    },
    /// Lognormal given its median and 99th percentile.
    Lognormal {
        /// Median.
        median_ms: f64,
        /// 99th percentile; must exceed the median.
        p99_ms: f64,
    },
    /// Lognormal given its median and σ.
    LognormalSigma {
        /// Median.
        median_ms: f64,
        /// σ of the underlying normal.
        sigma: f64,
    },
    /// Exponential with mean `mean_ms`.
    Exponential {
        /// Mean.
        mean_ms: f64,
    },
    /// Pareto with scale `scale_ms` and shape `shape`.
    Pareto {
        /// Scale (minimum).
        scale_ms: f64,
        /// Shape (α).
        shape: f64,
    },
}

impl From<RawLatency> for Latency {
    fn from(raw: RawLatency) -> Self {
        match raw {
            RawLatency::Constant { ms } => Latency::Constant { ms },
            RawLatency::Uniform { min_ms, max_ms } => Latency::Uniform { min_ms, max_ms },
            RawLatency::Normal { mean_ms, stddev_ms } => Latency::Normal { mean_ms, stddev_ms },
            RawLatency::Lognormal { median_ms, p99_ms } => {
                Latency::LogNormalP99 { median_ms, p99_ms }
            }
            RawLatency::LognormalSigma { median_ms, sigma } => {
                Latency::LogNormalSigma { median_ms, sigma }
            }
            RawLatency::Exponential { mean_ms } => Latency::Exponential { mean_ms },
            RawLatency::Pareto { scale_ms, shape } => Latency::Pareto { scale_ms, shape },
        }
    }
}

/// Injected faults of a mock API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFaults {
    /// Share of requests answered 500. Default 0.
    #[serde(default)]
    pub error_rate: f64,
    /// Share answered 429 with `Retry-After`. Default 0.
    #[serde(default)]
    pub rate_limit_rate: f64,
    /// `Retry-After` seconds of a 429. Default 1.
    #[serde(default)]
    pub retry_after_s: Option<u32>,
    /// Share that never answers within the worker's call timeout. Default 0.
    #[serde(default)]
    pub timeout_rate: f64,
    /// The first this-many requests answer 500. Default 0.
    #[serde(default)]
    pub fail_first: u32,
}

/// The Vision mock.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVision {
    /// Latency of `POST /v1/analyze`. Default lognormal median 1900 ms, p99 3500 ms.
    #[serde(default)]
    pub latency: Option<RawLatency>,
    /// Faults.
    #[serde(default, flatten)]
    pub faults: RawFaults,
}

/// The LLM mock.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLlm {
    /// Time to first token. Default lognormal median 400 ms, p99 900 ms.
    #[serde(default)]
    pub ttft: Option<RawLatency>,
    /// Time per further token. Default constant 20 ms.
    #[serde(default)]
    pub per_token: Option<RawLatency>,
    /// Tokens per answer. Default 100.
    #[serde(default)]
    pub tokens: Option<u32>,
    /// Faults.
    #[serde(default, flatten)]
    pub faults: RawFaults,
}

/// The worker.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorker {
    /// Tasks processed at once. Default 16.
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Unacked deliveries RabbitMQ pushes ahead. Default 2 × concurrency.
    #[serde(default)]
    pub prefetch: Option<u16>,
    /// Retries after the first attempt. Default 3.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Base retry backoff (doubles per retry). Default `200ms`.
    #[serde(default)]
    pub retry_backoff: Option<String>,
    /// Timeout of each Vision/LLM call. Default `10s`.
    #[serde(default)]
    pub call_timeout: Option<String>,
    /// CPU time of `rule_match` in ms before `time_scale`. Default 500.
    #[serde(default)]
    pub rule_match_ms: Option<f64>,
}

/// Simulated times of the rest of the pipeline, in ms before `time_scale`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServices {
    /// The Vision mock.
    #[serde(default)]
    pub vision: RawVision,
    /// The LLM mock.
    #[serde(default)]
    pub llm: RawLlm,
    /// The worker.
    #[serde(default)]
    pub worker: RawWorker,
    /// `save_to_event_store` write time. Default 20.
    #[serde(default)]
    pub store_ms: Option<f64>,
    /// `handle_scan_completed` time in the character consumer. Default 20.
    #[serde(default)]
    pub handle_ms: Option<f64>,
    /// `grant_reward` time. Default 30.
    #[serde(default)]
    pub grant_ms: Option<f64>,
    /// The Kafka consumers.
    #[serde(default)]
    pub consumers: RawConsumers,
    /// Where scans, rewards and histories live: `memory` (default) or `postgres`.
    #[serde(default)]
    pub store: RawStore,
    /// The PostgreSQL database of `store: postgres`.
    #[serde(default)]
    pub postgres: Option<RawPostgres>,
}

/// `services.store`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawStore {
    /// Each process's own memory.
    #[default]
    Memory,
    /// PostgreSQL, shared by every process and kept across restarts.
    Postgres,
}

/// `services.postgres`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    /// A `postgres://` URL. Default: `$TB_POSTGRES_URL`, then the local server's `postgres`
    /// database as user `postgres`.
    #[serde(default)]
    pub url: Option<String>,
    /// The schema holding the tables. Default `tracebench`.
    #[serde(default)]
    pub schema: Option<String>,
}

/// The Kafka consumers (character and my).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumers {
    /// Records each consumer processes at once; offsets advance only past finished records.
    /// Default 64.
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// Where spans go.
#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawExporter {
    /// The harness's embedded sink, read in-process.
    #[default]
    Embedded,
    /// OTLP/gRPC to `infra.otlp_endpoint`.
    Otlp,
    /// Batched and dropped: every cost but the network.
    Discard,
}

/// Batch processor settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    /// Spans buffered before new ones are dropped. Default 65536.
    #[serde(default)]
    pub max_queue_size: Option<usize>,
    /// Spans per export. Default 4096.
    #[serde(default)]
    pub max_export_batch_size: Option<usize>,
    /// Time between exports. Default `200ms`.
    #[serde(default)]
    pub scheduled_delay: Option<String>,
}

/// Tracing setup.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// `off`, `always_off`, `{ratio: 0.1}` or `always_on` (default).
    #[serde(default)]
    pub sampler: Sampling,
    /// `embedded` (default), `otlp` or `discard`.
    #[serde(default)]
    pub exporter: RawExporter,
    /// Batch processor.
    #[serde(default)]
    pub batch: RawBatch,
    /// `child` (default) or `link`.
    #[serde(default)]
    pub consumer_relation: ConsumerRelation,
    /// CPU microseconds burnt for every sampled span as it ends: a known cost for the
    /// overhead bench's self-test. Default 0.
    #[serde(default)]
    pub synthetic_span_cost_us: f64,
}

/// Where a piece of infrastructure comes from.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InfraMode {
    /// The first that works: explicit URL, Docker, embedded, the local default.
    #[default]
    Auto,
    /// A container started with testcontainers.
    Docker,
    /// The URL given here or in the environment.
    External,
    /// In this process (Kafka's mock cluster, the embedded trace sink).
    Embedded,
}

/// Where RabbitMQ, Kafka and the trace backend come from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInfra {
    /// RabbitMQ: `auto` (default), `docker` or `external`.
    #[serde(default)]
    pub rabbitmq: InfraMode,
    /// RabbitMQ URL; else `TB_AMQP_URL`.
    #[serde(default)]
    pub amqp_url: Option<String>,
    /// Kafka: `auto` (default), `docker`, `external` or `embedded`.
    #[serde(default)]
    pub kafka: InfraMode,
    /// Kafka bootstrap servers; else `TB_KAFKA_BROKERS`.
    #[serde(default)]
    pub kafka_brokers: Option<String>,
    /// Trace backend: `auto` (default), `docker`, `external` or `embedded`.
    #[serde(default)]
    pub traces: InfraMode,
    /// OTLP endpoint for `tracing.exporter: otlp`; else `TB_OTLP_ENDPOINT`.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Tempo query URL; else `TB_TEMPO_URL`.
    #[serde(default)]
    pub tempo_url: Option<String>,
}

/// What must hold for the run to pass.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    /// Minimum share of scans accepted (202) and completed end to end. Default 0.99.
    #[serde(default)]
    pub min_success_rate: Option<f64>,
    /// Maximum corrected end-to-end p99 in ms. Default: none.
    #[serde(default)]
    pub max_p99_ms: Option<f64>,
    /// The expected trace of one scan: `seed-pipeline` (default) or a tree of
    /// `{service, name, kind, relation, count, children}`.
    #[serde(default)]
    pub trace: Option<RawTraceShape>,
    /// Minimum share of expected traces that are complete. Default 1.0 when spans are
    /// collected (embedded or external trace backend), none otherwise.
    #[serde(default)]
    pub min_complete_ratio: Option<f64>,
    /// Most broken edges allowed, by edge: a full edge label, or `http`, `amqp`, `kafka` for
    /// every edge of that hop. Default: none.
    #[serde(default)]
    pub max_broken: BTreeMap<String, u64>,
    /// Whether spans lost to telemetry (dropped by an SDK, evicted by the sink) are expected,
    /// as in a `collector_down` scenario: still counted and reported, no longer a failure.
    /// Default false.
    #[serde(default)]
    pub allow_telemetry_loss: bool,
    /// Largest change of any service process's resident memory once warmed up, as a share
    /// (0.1: within ±10 %), for soaks. Default: none.
    #[serde(default)]
    pub max_rss_growth: Option<f64>,
}
