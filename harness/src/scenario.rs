//! Scenario files: what a run drives, read in two stages. [`RawScenario`] mirrors the YAML —
//! every field documented, unknown fields rejected — and [`Scenario::from_raw`] turns it into
//! a plan whose types hold the invariants (positive rates, p99 above median, shares in 0–1).
//! Every error names the file, the field path and what was expected.
//!
//! `scenarios/README.md` documents each field with its default; keep the two in step.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tb_mocks::{Faults, Latency};
use tb_telemetry::spans::ConsumerRelation;
use tb_telemetry::{BatchSettings, Sampling};

/// A scenario error: which file, which field, what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// The scenario file.
    pub file: PathBuf,
    /// Dotted field path such as `load.rate` (empty for the whole document).
    pub path: String,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.path,
                self.message
            )
        }
    }
}

impl std::error::Error for ScenarioError {}

// ---------------------------------------------------------------------------------------------
// Stage 1: the file as written.

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
}

/// The expected trace: a named template or a tree.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawTraceShape {
    /// A named template: `seed-pipeline`.
    Named(String),
    /// A tree of nodes.
    Tree(crate::verify::Node),
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
}

/// The offered load.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoad {
    /// Arrival process: `constant`, `poisson`, `{burst: {...}}` or `{ramp: {...}}`.
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
}

/// The sampler.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawSampler {
    /// No SDK installed at all.
    Off,
    /// SDK installed, nothing sampled.
    AlwaysOff,
    /// Each trace sampled with probability `ratio` at its root.
    Ratio(f64),
    /// Everything sampled.
    #[default]
    AlwaysOn,
}

/// Where spans go.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
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
    /// Spans buffered before new ones are dropped. Default 2048.
    #[serde(default)]
    pub max_queue_size: Option<usize>,
    /// Spans per export. Default 512.
    #[serde(default)]
    pub max_export_batch_size: Option<usize>,
    /// Time between exports. Default `200ms`.
    #[serde(default)]
    pub scheduled_delay: Option<String>,
}

/// How consumer spans relate to their producers.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawRelation {
    /// Parent/child: one trace end to end.
    #[default]
    Child,
    /// A new trace with a span link.
    Link,
}

/// Tracing setup.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// `off`, `always_off`, `{ratio: 0.1}` or `always_on` (default).
    #[serde(default)]
    pub sampler: RawSampler,
    /// `embedded` (default), `otlp` or `discard`.
    #[serde(default)]
    pub exporter: RawExporter,
    /// Batch processor.
    #[serde(default)]
    pub batch: RawBatch,
    /// `child` (default) or `link`.
    #[serde(default)]
    pub consumer_relation: RawRelation,
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
}

// ---------------------------------------------------------------------------------------------
// Stage 2: the validated plan.

/// How requests arrive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arrival {
    /// Evenly spaced.
    Constant {
        /// Requests/s.
        rate: f64,
    },
    /// Poisson process.
    Poisson {
        /// Requests/s.
        rate: f64,
    },
    /// Periodic bursts, evenly spaced at the current rate.
    Burst {
        /// Requests/s outside bursts.
        base: f64,
        /// Requests/s inside bursts.
        peak: f64,
        /// Period.
        period: Duration,
        /// Share of the period at `peak`.
        duty: f64,
    },
    /// Linear ramp over the measured duration, evenly spaced at the current rate.
    Ramp {
        /// Starting requests/s.
        from: f64,
        /// Final requests/s.
        to: f64,
    },
}

/// The offered load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Arrival process.
    pub arrival: Arrival,
    /// Pending requests beyond which arrivals are skipped.
    pub max_in_flight: usize,
    /// Concurrent HTTP requests.
    pub connections: usize,
}

/// Expectations.
#[derive(Clone, Debug, PartialEq)]
pub struct Expect {
    /// Minimum success share.
    pub min_success_rate: f64,
    /// Maximum corrected end-to-end p99.
    pub max_p99_ms: Option<f64>,
    /// The expected trace.
    pub template: crate::verify::Template,
    /// Minimum complete-trace share.
    pub min_complete_ratio: Option<f64>,
    /// Most broken edges allowed, by edge key.
    pub max_broken: BTreeMap<String, u64>,
}

/// The resolved infrastructure choices (URLs still to be provisioned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Infra {
    /// RabbitMQ mode.
    pub rabbitmq: InfraMode,
    /// RabbitMQ URL from the scenario.
    pub amqp_url: Option<String>,
    /// Kafka mode.
    pub kafka: InfraMode,
    /// Kafka brokers from the scenario.
    pub kafka_brokers: Option<String>,
    /// Trace backend mode.
    pub traces: InfraMode,
    /// OTLP endpoint from the scenario.
    pub otlp_endpoint: Option<String>,
    /// Tempo URL from the scenario.
    pub tempo_url: Option<String>,
}

/// Tracing plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TracingPlan {
    /// Sampler.
    pub sampling: Sampling,
    /// Exporter.
    pub exporter: RawExporter,
    /// Batch settings.
    pub batch: BatchSettings,
    /// Consumer relation.
    pub relation: ConsumerRelation,
}

/// A validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Seed.
    pub seed: u64,
    /// Measured duration.
    pub duration: Duration,
    /// Warmup.
    pub warmup: Duration,
    /// Time scale.
    pub time_scale: f64,
    /// Load.
    pub load: Load,
    /// The pipeline's knobs (addresses and infrastructure are filled in at run time).
    pub pipeline: crate::pipeline::PipelineConfig,
    /// Tracing.
    pub tracing: TracingPlan,
    /// Infrastructure.
    pub infra: Infra,
    /// Expectations.
    pub expect: Expect,
    /// `strip_headers` fault, if any.
    pub strip: Option<(Hop, f64)>,
}

/// Collects the field path while stage 2 walks the raw scenario.
struct Check<'a> {
    file: &'a Path,
}

impl Check<'_> {
    fn err(&self, path: &str, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            file: self.file.to_owned(),
            path: path.to_owned(),
            message: message.into(),
        }
    }

    fn duration(&self, path: &str, text: &str) -> Result<Duration, ScenarioError> {
        humantime::parse_duration(text.trim()).map_err(|e| {
            self.err(
                path,
                format!("expected a duration such as 10s or 500ms ({e}), got {text:?}"),
            )
        })
    }

    fn positive(&self, path: &str, value: f64) -> Result<f64, ScenarioError> {
        if value.is_finite() && value > 0.0 {
            Ok(value)
        } else {
            Err(self.err(path, format!("expected a number > 0, got {value}")))
        }
    }

    fn non_negative(&self, path: &str, value: f64) -> Result<f64, ScenarioError> {
        if value.is_finite() && value >= 0.0 {
            Ok(value)
        } else {
            Err(self.err(path, format!("expected a number >= 0, got {value}")))
        }
    }

    fn share(&self, path: &str, value: f64) -> Result<f64, ScenarioError> {
        if (0.0..=1.0).contains(&value) {
            Ok(value)
        } else {
            Err(self.err(
                path,
                format!("expected a share between 0 and 1, got {value}"),
            ))
        }
    }

    fn latency(&self, path: &str, raw: RawLatency) -> Result<Latency, ScenarioError> {
        let latency = Latency::from(raw);
        latency
            .sampler()
            .map_err(|e| self.err(path, e.to_string()))?;
        Ok(latency)
    }

    fn faults(&self, path: &str, raw: &RawFaults) -> Result<Faults, ScenarioError> {
        let faults = Faults {
            error_rate: self.share(&format!("{path}.error_rate"), raw.error_rate)?,
            rate_limit_rate: self.share(&format!("{path}.rate_limit_rate"), raw.rate_limit_rate)?,
            retry_after_s: raw.retry_after_s.unwrap_or(1),
            timeout_rate: self.share(&format!("{path}.timeout_rate"), raw.timeout_rate)?,
            fail_first: raw.fail_first,
            ..Faults::default()
        };
        faults
            .validate()
            .map_err(|e| self.err(path, e.to_string()))?;
        Ok(faults)
    }

    fn ms(
        &self,
        path: &str,
        value: Option<f64>,
        default: f64,
        scale: f64,
    ) -> Result<Duration, ScenarioError> {
        let ms = self.non_negative(path, value.unwrap_or(default))?;
        Ok(Duration::from_secs_f64(ms * scale / 1000.0))
    }
}

impl Scenario {
    /// Reads and validates the scenario at `path`.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be read, is not valid YAML for the schema, or holds an
    /// impossible value; the error names the field.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.to_owned(),
            path: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates scenario `text`; `path` is used in errors.
    ///
    /// # Errors
    ///
    /// As [`Scenario::load`], less the reading.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ScenarioError> {
        // Enums are written as `{variant: {...}}` maps or plain `variant` strings, which serde's
        // YAML needs the singleton-map adapter for; the path tracker sits underneath it so an
        // error still names the field.
        let mut track = serde_path_to_error::Track::new();
        let deserializer = serde_path_to_error::Deserializer::new(
            serde_norway::Deserializer::from_str(text),
            &mut track,
        );
        let parsed: Result<RawScenario, _> =
            serde_norway::with::singleton_map_recursive::deserialize(deserializer);
        let raw = parsed.map_err(|e| {
            let field = track.path().to_string();
            let mut message = e.to_string();
            // The YAML error starts with the enclosing path ("load: unknown field ..."); the
            // tracked path says it better, so drop the repetition.
            if let Some((prefix, rest)) = message.split_once(": ")
                && field.starts_with(prefix)
            {
                message = rest.to_owned();
            }
            ScenarioError {
                file: path.to_owned(),
                path: if field == "." { String::new() } else { field },
                message,
            }
        })?;
        Self::from_raw(path, raw)
    }

    /// Stage 2: checks every value and builds the plan.
    ///
    /// # Errors
    ///
    /// Fails on the first impossible value, naming its field.
    pub fn from_raw(file: &Path, raw: RawScenario) -> Result<Self, ScenarioError> {
        let c = Check { file };
        if raw.name.trim().is_empty() {
            return Err(c.err("name", "expected a non-empty name"));
        }
        let duration = c.duration("duration", &raw.duration)?;
        if duration.is_zero() {
            return Err(c.err("duration", "expected a duration > 0"));
        }
        let warmup = match &raw.warmup {
            Some(w) => c.duration("warmup", w)?,
            None => Duration::ZERO,
        };
        let scale = c.positive("time_scale", raw.time_scale)?;

        let rate = |path: &str| -> Result<f64, ScenarioError> {
            match raw.load.rate {
                Some(r) => c.positive(path, r),
                None => Err(c.err(path, "required for constant and poisson arrivals")),
            }
        };
        let arrival = match &raw.load.arrival {
            RawArrival::Constant => Arrival::Constant {
                rate: rate("load.rate")?,
            },
            RawArrival::Poisson => Arrival::Poisson {
                rate: rate("load.rate")?,
            },
            RawArrival::Burst {
                base,
                peak,
                period,
                duty,
            } => {
                let base = c.non_negative("load.arrival.burst.base", *base)?;
                let peak = c.positive("load.arrival.burst.peak", *peak)?;
                if peak < base {
                    return Err(c.err(
                        "load.arrival.burst.peak",
                        format!("expected at least base ({base}), got {peak}"),
                    ));
                }
                let period = c.duration("load.arrival.burst.period", period)?;
                if period.is_zero() {
                    return Err(c.err("load.arrival.burst.period", "expected a duration > 0"));
                }
                let duty = c.share("load.arrival.burst.duty", *duty)?;
                Arrival::Burst {
                    base,
                    peak,
                    period,
                    duty,
                }
            }
            RawArrival::Ramp { from, to } => {
                let from = c.non_negative("load.arrival.ramp.from", *from)?;
                let to = c.non_negative("load.arrival.ramp.to", *to)?;
                if from == 0.0 && to == 0.0 {
                    return Err(c.err("load.arrival.ramp", "expected from or to > 0"));
                }
                Arrival::Ramp { from, to }
            }
        };
        if raw.load.rate.is_some()
            && !matches!(raw.load.arrival, RawArrival::Constant | RawArrival::Poisson)
        {
            return Err(c.err(
                "load.rate",
                "only for constant and poisson arrivals; burst and ramp carry their own rates",
            ));
        }
        let max_in_flight = raw.load.max_in_flight.unwrap_or(10_000);
        if max_in_flight == 0 {
            return Err(c.err("load.max_in_flight", "expected at least 1"));
        }
        let connections = raw.load.connections.unwrap_or(64);
        if connections == 0 {
            return Err(c.err("load.connections", "expected at least 1"));
        }

        let mut pipeline = crate::pipeline::PipelineConfig::default();
        let s = &raw.services;
        if let Some(l) = s.vision.latency {
            pipeline.vision.latency = c.latency("services.vision.latency", l)?;
        }
        pipeline.vision.faults = c.faults("services.vision", &s.vision.faults)?;
        pipeline.vision.time_scale = scale;
        pipeline.vision.seed = raw.seed;
        if let Some(l) = s.llm.ttft {
            pipeline.llm.ttft = c.latency("services.llm.ttft", l)?;
        }
        if let Some(l) = s.llm.per_token {
            pipeline.llm.per_token = c.latency("services.llm.per_token", l)?;
        }
        if let Some(t) = s.llm.tokens {
            pipeline.llm.tokens = t;
        }
        pipeline.llm.faults = c.faults("services.llm", &s.llm.faults)?;
        pipeline.llm.time_scale = scale;
        pipeline.llm.seed = raw.seed.wrapping_add(1);
        let w = &s.worker;
        let worker = &mut pipeline.worker;
        if let Some(n) = w.concurrency {
            if n == 0 {
                return Err(c.err("services.worker.concurrency", "expected at least 1"));
            }
            worker.concurrency = n;
        }
        worker.prefetch = match w.prefetch {
            Some(0) => return Err(c.err("services.worker.prefetch", "expected at least 1")),
            Some(p) => p,
            None => u16::try_from(worker.concurrency * 2).unwrap_or(u16::MAX),
        };
        if let Some(r) = w.max_retries {
            worker.max_retries = r;
        }
        if let Some(b) = &w.retry_backoff {
            worker.retry_backoff = c.duration("services.worker.retry_backoff", b)?;
        }
        if let Some(t) = &w.call_timeout {
            worker.call_timeout = c.duration("services.worker.call_timeout", t)?;
        }
        worker.rule_match_work = c.ms(
            "services.worker.rule_match_ms",
            w.rule_match_ms,
            500.0,
            scale,
        )?;
        pipeline.store_latency = c.ms("services.store_ms", s.store_ms, 20.0, scale)?;
        pipeline.consumers.handle_latency = c.ms("services.handle_ms", s.handle_ms, 20.0, scale)?;
        pipeline.consumers.grant_latency = c.ms("services.grant_ms", s.grant_ms, 30.0, scale)?;

        let t = &raw.tracing;
        let sampling = match t.sampler {
            RawSampler::Off => Sampling::Off,
            RawSampler::AlwaysOff => Sampling::AlwaysOff,
            RawSampler::AlwaysOn => Sampling::AlwaysOn,
            RawSampler::Ratio(r) => Sampling::Ratio(c.share("tracing.sampler.ratio", r)?),
        };
        let mut batch = BatchSettings::default();
        if let Some(n) = t.batch.max_queue_size {
            batch.max_queue_size = n;
        }
        if let Some(n) = t.batch.max_export_batch_size {
            batch.max_export_batch_size = n;
        }
        if batch.max_export_batch_size == 0 || batch.max_export_batch_size > batch.max_queue_size {
            return Err(c.err(
                "tracing.batch.max_export_batch_size",
                format!(
                    "expected 1 to max_queue_size ({}), got {}",
                    batch.max_queue_size, batch.max_export_batch_size
                ),
            ));
        }
        if let Some(d) = &t.batch.scheduled_delay {
            batch.scheduled_delay = c.duration("tracing.batch.scheduled_delay", d)?;
        }
        let relation = match t.consumer_relation {
            RawRelation::Child => ConsumerRelation::Child,
            RawRelation::Link => ConsumerRelation::Link,
        };
        pipeline.worker.relation = relation;
        pipeline.consumers.relation = relation;

        let i = raw.infra;
        if i.rabbitmq == InfraMode::Embedded {
            return Err(c.err(
                "infra.rabbitmq",
                "there is no embedded RabbitMQ; expected auto, docker or external",
            ));
        }
        if raw.tracing.exporter == RawExporter::Otlp && i.traces == InfraMode::Embedded {
            return Err(c.err(
                "tracing.exporter",
                "otlp needs an external or docker trace backend, not infra.traces: embedded",
            ));
        }

        let e = &raw.expect;
        let verify_relation = match relation {
            ConsumerRelation::Child => crate::verify::Relation::Child,
            ConsumerRelation::Link => crate::verify::Relation::Link,
        };
        let template = match &e.trace {
            None => crate::verify::Template::seed_pipeline(verify_relation),
            Some(RawTraceShape::Named(n)) if n == "seed-pipeline" => {
                crate::verify::Template::seed_pipeline(verify_relation)
            }
            Some(RawTraceShape::Named(n)) => {
                return Err(c.err(
                    "expect.trace",
                    format!("unknown template {n:?}; expected seed-pipeline or a tree"),
                ));
            }
            Some(RawTraceShape::Tree(node)) => {
                crate::verify::Template::from_tree(node).map_err(|m| c.err("expect.trace", m))?
            }
        };
        let min_complete_ratio = e
            .min_complete_ratio
            .map(|v| c.share("expect.min_complete_ratio", v))
            .transpose()?;
        let expect = Expect {
            min_success_rate: c.share(
                "expect.min_success_rate",
                e.min_success_rate.unwrap_or(0.99),
            )?,
            max_p99_ms: e
                .max_p99_ms
                .map(|v| c.positive("expect.max_p99_ms", v))
                .transpose()?,
            template,
            min_complete_ratio,
            max_broken: e.max_broken.clone(),
        };
        let strip = match raw.faults.strip_headers {
            Some(st) => Some((st.hop, c.share("faults.strip_headers.ratio", st.ratio)?)),
            None => None,
        };
        match strip {
            Some((Hop::Amqp, r)) => pipeline.strip_amqp = r,
            Some((Hop::Http, r)) => pipeline.worker.strip_http = r,
            Some((Hop::Kafka, r)) => pipeline.worker.strip_kafka = r,
            None => {}
        }

        Ok(Self {
            name: raw.name,
            description: raw.description,
            seed: raw.seed,
            duration,
            warmup,
            time_scale: scale,
            load: Load {
                arrival,
                max_in_flight,
                connections,
            },
            pipeline,
            tracing: TracingPlan {
                sampling,
                exporter: raw.tracing.exporter,
                batch,
                relation,
            },
            infra: Infra {
                rabbitmq: i.rabbitmq,
                amqp_url: i.amqp_url,
                kafka: i.kafka,
                kafka_brokers: i.kafka_brokers,
                traces: i.traces,
                otlp_endpoint: i.otlp_endpoint,
                tempo_url: i.tempo_url,
            },
            expect,
            strip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name: t\nduration: 5s\nload:\n  arrival: poisson\n  rate: 10\n";

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(Path::new("s.yaml"), text)
    }

    fn error_path(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.path,
        }
    }

    #[test]
    fn a_minimal_scenario_gets_the_documented_defaults() {
        let s = parse(MINIMAL).expect("valid");
        assert_eq!(s.duration, Duration::from_secs(5));
        assert_eq!(s.warmup, Duration::ZERO);
        assert_eq!(s.load.arrival, Arrival::Poisson { rate: 10.0 });
        assert_eq!((s.load.max_in_flight, s.load.connections), (10_000, 64));
        assert_eq!(s.tracing.sampling, Sampling::AlwaysOn);
        assert_eq!(s.expect.min_success_rate, 0.99);
        assert_eq!(
            s.pipeline.worker.rule_match_work,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        assert_eq!(error_path(&format!("{MINIMAL}bogus: 1\n")), "bogus");
        let e = parse(&format!(
            "{MINIMAL}services:\n  vision:\n    latncy: {{constant: {{ms: 1}}}}\n"
        ))
        .expect_err("typo");
        assert_eq!(e.path, "services.vision");
        assert!(e.message.contains("latncy"), "{e}");
    }

    #[test]
    fn impossible_values_are_named_with_their_path() {
        assert_eq!(
            error_path("name: t\nduration: 5s\nload:\n  arrival: poisson\n  rate: -5\n"),
            "load.rate"
        );
        assert_eq!(
            error_path("name: t\nduration: soon\nload:\n  arrival: constant\n  rate: 1\n"),
            "duration"
        );
        assert_eq!(
            error_path(&format!(
                "{MINIMAL}services:\n  vision:\n    latency: {{lognormal: {{median_ms: 100, p99_ms: 50}}}}\n"
            )),
            "services.vision.latency"
        );
        assert_eq!(
            error_path(&format!(
                "{MINIMAL}services:\n  llm:\n    error_rate: 1.5\n"
            )),
            "services.llm.error_rate"
        );
        assert_eq!(
            error_path(&format!("{MINIMAL}tracing:\n  sampler: {{ratio: 2}}\n")),
            "tracing.sampler.ratio"
        );
        assert_eq!(
            error_path("name: t\nduration: 5s\nload:\n  arrival: constant\n"),
            "load.rate"
        );
        assert_eq!(
            error_path(
                "name: t\nduration: 5s\nload:\n  arrival: {burst: {base: 10, peak: 5, period: 1s, duty: 0.5}}\n"
            ),
            "load.arrival.burst.peak"
        );
        assert_eq!(
            error_path(&format!("{MINIMAL}infra:\n  rabbitmq: embedded\n")),
            "infra.rabbitmq"
        );
    }

    #[test]
    fn the_shipped_scenarios_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("scenarios/") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(
            seen >= 4,
            "expected the four shipped scenarios, found {seen}"
        );
    }
}
