//! `result.json`'s types: the schema at the bottom, below the run that fills it and the reports
//! that read it. Stable (schema version 1), documented in `scenarios/README.md`.

use serde::{Deserialize, Serialize};
use tb_load::{Followed, Latencies, Percentiles, Requests};
use tb_telemetry::SpanCounts;
use tb_verify::{Attribution, TraceSummary, Waterfall};

use crate::machine::Machine;

/// Version of the `result.json` schema (see `scenarios/README.md`).
pub const SCHEMA_VERSION: u32 = 1;

/// The traces section of `result.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TracesSection {
    /// Where spans were read from: `embedded` or the query URL.
    pub source: String,
    /// Sampled scans whose trace the query API never returned before its deadline (a backend
    /// that had not ingested them yet): counted here, not judged, never missing spans.
    #[serde(default)]
    pub not_queryable: u64,
    /// Verification aggregates.
    #[serde(flatten)]
    pub summary: TraceSummary,
    /// The waterfall of the median complete trace (by critical-path length).
    pub median: Option<Waterfall>,
    /// The waterfall of the slowest complete trace.
    pub slowest: Option<Waterfall>,
}

/// One expectation's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The expectation, as named in the scenario (`expect.min_success_rate`).
    pub name: String,
    /// The threshold.
    pub expected: f64,
    /// What the run measured.
    pub actual: f64,
    /// Whether it held.
    pub passed: bool,
}

/// Span counts of the run's tracer provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanSummary {
    /// Sampled spans that ended.
    pub ended: u64,
    /// Spans exported.
    pub exported: u64,
    /// Spans dropped (a full queue), in failed exports, or still pending at the end.
    pub dropped: u64,
    /// Spans the embedded sink evicted to stay within its bound.
    #[serde(default)]
    pub evicted: u64,
    /// Service processes killed by the fault schedule (`worker_crash`): whatever spans they
    /// held unexported are lost, uncounted, as they never reported.
    #[serde(default)]
    pub killed_processes: u64,
}

impl SpanSummary {
    /// Adds another provider's counts (a child process's).
    pub fn add(&mut self, other: Self) {
        self.ended += other.ended;
        self.exported += other.exported;
        self.dropped += other.dropped;
        self.evicted += other.evicted;
        self.killed_processes += other.killed_processes;
    }

    /// Whether spans may have been lost: some were counted lost, or a process died holding
    /// an unknown number.
    pub fn maybe_lost(&self) -> bool {
        self.lost() > 0 || self.killed_processes > 0
    }

    /// Spans that never reached the verifier: dropped by an SDK or evicted by the sink.
    pub fn lost(&self) -> u64 {
        self.dropped + self.evicted
    }
}

impl From<SpanCounts> for SpanSummary {
    fn from(c: SpanCounts) -> Self {
        Self {
            ended: c.ended,
            exported: c.exported,
            dropped: c.not_exported(),
            evicted: 0,
            killed_processes: 0,
        }
    }
}

/// Latency of both kinds a scan has.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySection {
    /// `POST /scan` until its 202.
    pub http: Latencies,
    /// `POST /scan` until both consumers processed the scan.
    pub end_to_end: Latencies,
}

impl LatencySection {
    /// The four figures as the reports label them.
    pub fn rows(&self) -> [(&'static str, Percentiles); 4] {
        [
            ("http corrected", self.http.corrected),
            ("http uncorrected", self.http.uncorrected),
            ("e2e corrected", self.end_to_end.corrected),
            ("e2e uncorrected", self.end_to_end.uncorrected),
        ]
    }
}

/// What one process of the run used, from its start to the end of the load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessUsage {
    /// The service it runs (`tracebench` for everything in one process, load generator and
    /// trace sink included).
    pub process: String,
    /// CPU seconds, user + system.
    pub cpu_s: f64,
    /// CPU microseconds per scan accepted (probe and warmup included: they cost CPU too).
    pub cpu_us_per_scan: f64,
    /// Peak resident memory, KiB.
    pub peak_rss_kb: u64,
    /// Resident memory once warmed up: the median of the second fifth of the samples taken
    /// while the load ran (about 60, 1 to 10 s apart), KiB. Absent in runs too short to tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_settled_kb: Option<u64>,
    /// Resident memory at the end: the median of the last fifth of the samples, KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_end_kb: Option<u64>,
    /// `rss_end_kb / rss_settled_kb - 1`: how much memory grew once warmed up (a leak grows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_growth: Option<f64>,
    /// Every RSS sample, KiB, in order, `rss_sample_every_s` apart: the curve behind the
    /// trend (a plateau, a slope, steps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rss_samples_kb: Vec<u64>,
    /// Seconds between two RSS samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_sample_every_s: Option<f64>,
    /// Times one of its threads was put on a CPU, per scan accepted (probe and warm-up
    /// included, as for the CPU): each wake-up of a parked thread and each return after a
    /// preemption, the hand-offs that cost CPU of their own. Read from its live threads'
    /// `schedstat` at the end, so a thread that exited earlier takes its count with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switches_per_scan: Option<f64>,
}

/// One rate of a saturation search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapacityStep {
    /// Offered rate (requests/s).
    pub rate: f64,
    /// Rate served: successful answers per held second.
    pub throughput_rps: f64,
    /// End-to-end p99, corrected, ms.
    pub p99_ms: f64,
    /// Scans accepted, completed and lost in this step.
    pub scans: Followed,
    /// Requests of this step.
    pub requests: Requests,
    /// Whether the step held: nothing lost, skipped or failed, p99 under the bound.
    pub passed: bool,
    /// Whether this was the second try of a rate whose first did not hold.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry: bool,
}

/// The result of `load.arrival: {search: …}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapacitySection {
    /// The end-to-end p99 bound each step had to hold, ms.
    pub max_p99_ms: f64,
    /// The highest rate that held (requests/s); `None` when none did, down to the search's
    /// lowest step.
    pub max_rate: Option<f64>,
    /// Every step tried, in order: up from `from` until a rate fails twice; from a first rate
    /// that failed twice, down by halves until one holds, then bisecting.
    pub steps: Vec<CapacityStep>,
}

/// A fault of `faults.schedule`, as played.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InjectedFault {
    /// What: `outage rabbitmq`, `latency rabbitmq 50ms`.
    pub fault: String,
    /// When it started, seconds after the load started.
    pub at_s: f64,
    /// How long it lasted, seconds.
    pub for_s: f64,
}

/// `result.json`: a stable schema, documented in `scenarios/README.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// When load started (RFC 3339, UTC).
    pub started_at: String,
    /// Measured seconds (warmup excluded).
    pub duration_s: f64,
    /// What infrastructure was used.
    pub infra: InfraReport,
    /// What it ran on, with the wake-up round trip measured before the services started.
    #[serde(default)]
    pub machine: Machine,
    /// Request counters of the measured window.
    pub requests: Requests,
    /// Scans followed end to end.
    pub scans: Followed,
    /// Rate the schedule offered (requests/s).
    pub target_rps: f64,
    /// Rate served: successful answers per measured second.
    pub throughput_rps: f64,
    /// Latencies in ms.
    pub latency: LatencySection,
    /// Span counts.
    pub spans: SpanSummary,
    /// Time from the last scan's completion (spans flushed) to the verdict, ms.
    pub verification_ms: f64,
    /// Propagation verification (absent when spans are not collected).
    pub traces: Option<TracesSection>,
    /// Latency attribution over complete traces.
    pub critical_path: Option<Attribution>,
    /// End-to-end corrected latency histogram: `[upper bound ms, count]` buckets.
    pub histogram: Vec<(f64, u64)>,
    /// Up to five failure messages.
    pub sample_errors: Vec<String>,
    /// The saturation search, when the scenario runs one. The rest of the result then
    /// describes the highest rate that held (or the first step, when none did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacitySection>,
    /// The faults of `faults.schedule` played during the load.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<InjectedFault>,
    /// CPU and memory of each process of the run (Linux).
    #[serde(default)]
    pub processes: Vec<ProcessUsage>,
    /// Every expectation's verdict.
    pub expectations: Vec<Verdict>,
    /// Whether every expectation held.
    pub passed: bool,
}

/// What a run uses, for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfraReport {
    /// RabbitMQ.
    pub rabbitmq: Choice,
    /// Kafka.
    pub kafka: Choice,
    /// Trace backend.
    pub traces: Choice,
}

/// How one piece of infrastructure was provided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// `explicit`, `docker`, `embedded` or `local`.
    pub source: String,
    /// Where it is (URL, bootstrap servers), when it has an address.
    pub address: Option<String>,
}
