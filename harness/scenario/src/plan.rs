//! Stage 2's product: the validated plan, in types that hold the invariants (positive rates,
//! p99 above median, shares in 0–1). [`crate::check`] builds it from a [`crate::RawScenario`].

use std::collections::BTreeMap;
use std::time::Duration;

use tb_load::Load;
use tb_pipeline::PipelineConfig;
use tb_telemetry::spans::ConsumerRelation;
use tb_telemetry::{BatchSettings, Sampling};
use tb_verify::Template;

use crate::raw::{ArmExporter, FaultHop, Hop, InfraMode, RawExporter};

/// Expectations.
#[derive(Clone, Debug, PartialEq)]
pub struct Expect {
    /// Minimum success share.
    pub min_success_rate: f64,
    /// Maximum corrected end-to-end p99.
    pub max_p99_ms: Option<f64>,
    /// The expected trace.
    pub template: Template,
    /// Minimum complete-trace share.
    pub min_complete_ratio: Option<f64>,
    /// Most broken edges allowed, by edge key.
    pub max_broken: BTreeMap<String, u64>,
    /// Spans lost to telemetry are expected (reported, not a failure).
    pub allow_telemetry_loss: bool,
    /// Largest change of a process's resident memory once warmed up, as a share.
    pub max_rss_growth: Option<f64>,
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
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TracingPlan {
    /// Sampler.
    pub sampling: Sampling,
    /// Exporter.
    pub exporter: RawExporter,
    /// Batch settings.
    pub batch: BatchSettings,
    /// Consumer relation.
    pub relation: ConsumerRelation,
    /// CPU burnt for every sampled span as it ends (the overhead bench's self-test).
    pub synthetic_span_cost: Duration,
}

/// One arm of the overhead ladder.
#[derive(Clone, Debug, PartialEq)]
pub struct Arm {
    /// Name in the results.
    pub name: String,
    /// Sampler (`Off`: no SDK at all).
    pub sampling: Sampling,
    /// Where spans go.
    pub exporter: ArmExporter,
    /// CPU burnt for every sampled span as it ends.
    pub synthetic_span_cost: Duration,
}

/// Which rate the overhead arms are offered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OverheadRate {
    /// This rate (requests/s).
    Fixed(f64),
    /// This share of the `off` arm's saturation, found first with the search.
    ShareOfSaturation(f64, CapacitySearch),
}

/// What `tracebench overhead` runs.
#[derive(Clone, Debug, PartialEq)]
pub struct OverheadPlan {
    /// The arms, in the scenario's order (they run shuffled).
    pub arms: Vec<Arm>,
    /// Measured runs of each arm.
    pub repeats: u32,
    /// The offered rate.
    pub rate: OverheadRate,
    /// Endpoint of `external` arms.
    pub otlp_endpoint: Option<String>,
}

/// A saturation search: constant rates from `from` to `to` by `step`, each held for `hold`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CapacitySearch {
    /// First rate (requests/s).
    pub from: f64,
    /// Last rate tried (requests/s).
    pub to: f64,
    /// Increment (requests/s).
    pub step: f64,
    /// How long each rate is held.
    pub hold: Duration,
    /// The end-to-end p99 (corrected, ms) a step must stay under.
    pub max_p99_ms: f64,
}

impl CapacitySearch {
    /// The rates tried, in order.
    pub fn rates(&self) -> impl Iterator<Item = f64> + '_ {
        (0u32..)
            .map(|i| self.from + self.step * f64::from(i))
            .take_while(|r| *r <= self.to + self.step * 1e-9)
    }
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
    pub pipeline: PipelineConfig,
    /// Tracing.
    pub tracing: TracingPlan,
    /// Infrastructure.
    pub infra: Infra,
    /// Expectations.
    pub expect: Expect,
    /// `strip_headers` fault, if any.
    pub strip: Option<(Hop, f64)>,
    /// Faults injected for a while during the load (`faults.schedule`), in order.
    pub faults: Vec<ScheduledFault>,
    /// A saturation search instead of one load (`load.arrival: {search: …}`); `load.arrival`
    /// then holds its first rate.
    pub search: Option<CapacitySearch>,
    /// What `tracebench overhead` runs (`run` ignores it).
    pub overhead: OverheadPlan,
}

/// A fault of `faults.schedule`, checked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduledFault {
    /// When it starts, after the load started (warm-up included).
    pub at: Duration,
    /// How long it lasts.
    pub lasts: Duration,
    /// What happens.
    pub fault: Fault,
}

/// What a scheduled fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The hop is gone.
    Outage(FaultHop),
    /// The hop stops answering.
    Blackhole(FaultHop),
    /// Every chunk on the hop is delayed this long.
    Latency(FaultHop, Duration),
    /// Each direction of each connection carries at most this many bytes a second.
    Bandwidth(FaultHop, u64),
    /// The worker process is killed (SIGKILL) and started again when the fault ends.
    WorkerCrash,
}

impl Fault {
    /// The hop it touches.
    pub fn hop(self) -> FaultHop {
        match self {
            Self::Outage(h) | Self::Blackhole(h) | Self::Latency(h, _) | Self::Bandwidth(h, _) => h,
            Self::WorkerCrash => FaultHop::Worker,
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Outage(h) => write!(f, "outage {}", h.name()),
            Self::Blackhole(h) => write!(f, "blackhole {}", h.name()),
            Self::Latency(h, d) => write!(f, "latency {} {d:?}", h.name()),
            Self::Bandwidth(h, b) => write!(f, "bandwidth {} {b} B/s", h.name()),
            Self::WorkerCrash => f.write_str("worker_crash"),
        }
    }
}

/// An arm's default name: `off`, or the sampler and exporter (`ratio_0.01+otlp`), with the
/// synthetic cost when there is one (`always_on+discard+50us`).
pub fn arm_name(sampling: Sampling, exporter: ArmExporter, synthetic: Duration) -> String {
    let sampler = match sampling {
        Sampling::Off => return "off".to_owned(),
        Sampling::AlwaysOff => "always_off".to_owned(),
        Sampling::Ratio(r) => format!("ratio_{r}"),
        Sampling::AlwaysOn => "always_on".to_owned(),
    };
    let mut name = format!("{sampler}+{}", exporter.name());
    if !synthetic.is_zero() {
        name.push_str(&format!("+{}us", synthetic.as_secs_f64() * 1e6));
    }
    name
}

impl Scenario {
    /// Whether the schedule kills a service process (`worker_crash`), which needs every
    /// service in a process of its own.
    pub fn kills_processes(&self) -> bool {
        self.faults
            .iter()
            .any(|f| matches!(f.fault, Fault::WorkerCrash))
    }
}
