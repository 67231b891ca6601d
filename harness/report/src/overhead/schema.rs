//! `overhead.json`: what `tracebench overhead` measured, arm by arm and repeat by repeat, with
//! the statistics drawn from it. `scenarios/README.md` documents every field; `compare` and
//! `report --html` read it back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::machine::Machine;

use super::stats::Spread;

/// The version of this schema; bumped on any incompatible change.
pub const OVERHEAD_SCHEMA_VERSION: u32 = 1;

/// The key of the sum over every service in [`ArmResult::cpu_us_per_scan`].
pub const TOTAL: &str = "total";

/// A whole overhead run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverheadResult {
    /// [`OVERHEAD_SCHEMA_VERSION`].
    pub overhead_schema_version: u32,
    /// The scenario's name.
    pub scenario: String,
    /// The scenario's seed (it also shuffles the order of the repeats).
    pub seed: u64,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// What it ran on.
    pub machine: Machine,
    /// The rate every repeat was offered (requests/s).
    pub rate_rps: f64,
    /// The `off` arm's saturation rate, when the rate was derived from it.
    pub off_saturation_rps: Option<f64>,
    /// Warm-up before each repeat's measurement (s), not measured.
    pub warmup_s: f64,
    /// Each repeat's measured load (s).
    pub duration_s: f64,
    /// How the confidence intervals are computed.
    pub ci_method: String,
    /// `arm#repeat` in the order they ran: in rounds, each shuffled by the seed.
    pub order: Vec<String>,
    /// The arms, in the scenario's order.
    pub arms: Vec<ArmResult>,
    /// Added CPU per traced hop, from the per-service differences of the first `always_on` arm
    /// without a synthetic cost (see [`PerHop`]).
    pub per_hop_us: Option<PerHop>,
    /// Each arm with a synthetic span cost against its twin without: the cost found again.
    pub self_test: Vec<SelfTest>,
}

/// One arm: its repeats and their statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArmResult {
    /// Name (`off`, `always_on+otlp`, …).
    pub name: String,
    /// `off`, `always_off`, `ratio 0.01`, `always_on`.
    pub sampler: String,
    /// `discard`, `otlp` or `external` (`none` for `off`).
    pub exporter: String,
    /// CPU µs burnt for every sampled span (the self-test's known cost).
    pub synthetic_span_cost_us: f64,
    /// Every repeat, in the order run.
    pub repeats: Vec<RepeatResult>,
    /// CPU µs per scan of each service process, and their sum under [`TOTAL`].
    pub cpu_us_per_scan: BTreeMap<String, Spread>,
    /// The total's difference to the `off` arm; `None` for `off` itself.
    pub vs_off: Option<Diff>,
    /// Each service's median difference to `off` (µs per scan).
    pub vs_off_by_service: BTreeMap<String, f64>,
    /// Spans ended per scan (median over repeats; probe and warm-up scans included both above
    /// and below the line).
    pub spans_per_scan: f64,
    /// The total's difference to `off` per ended span (µs); `None` without spans or for `off`.
    pub added_us_per_span: Option<f64>,
    /// Corrected end-to-end p50 (ms).
    pub e2e_p50_ms: Spread,
    /// Corrected end-to-end p99 (ms).
    pub e2e_p99_ms: Spread,
    /// Scans served per second.
    pub throughput_rps: Spread,
    /// OTLP bytes the sink received per scan.
    pub otlp_bytes_per_scan: Spread,
    /// Context switches per scan, all service processes together (see
    /// [`RepeatResult::switches_per_scan`]); absent in results written before they were counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switches_per_scan: Option<Spread>,
}

/// One measured repeat of an arm.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RepeatResult {
    /// CPU µs per scan of each service process, and [`TOTAL`].
    pub cpu_us_per_scan: BTreeMap<String, f64>,
    /// Times a thread of each service process was put on a CPU, per scan, and [`TOTAL`]: the
    /// context switches (wake-ups and returns from preemption) that cost CPU of their own.
    /// Absent in results written before it was counted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub switches_per_scan: BTreeMap<String, f64>,
    /// Peak RSS of each service process (KiB).
    pub peak_rss_kb: BTreeMap<String, u64>,
    /// Scans accepted in the measured window.
    pub scans: u64,
    /// Of those, not completed end to end.
    pub lost: u64,
    /// Corrected end-to-end p50 (ms).
    pub e2e_p50_ms: f64,
    /// Corrected end-to-end p99 (ms).
    pub e2e_p99_ms: f64,
    /// Scans served per second.
    pub throughput_rps: f64,
    /// Spans the services ended (the whole repeat: probe, warm-up and measured load).
    pub spans_ended: u64,
    /// Of those, exported.
    pub spans_exported: u64,
    /// Of those, never exported (dropped or failed).
    pub spans_dropped: u64,
    /// Scans accepted in the whole repeat (what `spans_ended` is divided by).
    pub scans_total: u64,
    /// OTLP message bytes the sink received (the whole repeat).
    pub otlp_bytes: u64,
}

/// An arm's difference to `off` in total CPU per scan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    /// Median of the arm minus median of `off` (µs per scan).
    pub diff: f64,
    /// 95 % confidence interval of `diff`.
    pub ci95: [f64; 2],
    /// `diff` as a percentage of `off`'s median.
    pub diff_pct: f64,
    /// The interval includes 0: no difference the bench can tell from its noise.
    pub within_noise: bool,
}

/// The CPU one traced hop adds, estimated from the services that do little else: the
/// receiving side of HTTP from the Vision and LLM mocks (a server span each, nothing more),
/// of Kafka from my-consumer (a consumer span), and the AMQP publish from scan-api less its
/// HTTP server span. The sending sides sit in the worker, which does all three at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerHop {
    /// The arm the figures come from.
    pub arm: String,
    /// HTTP server side (µs per hop).
    pub http: f64,
    /// AMQP publish side (µs per hop).
    pub amqp: f64,
    /// Kafka consumer side (µs per hop).
    pub kafka: f64,
}

/// A synthetic span cost found again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelfTest {
    /// The arm with the synthetic cost.
    pub arm: String,
    /// Its twin without.
    pub baseline: String,
    /// The cost set (µs per span).
    pub expected_us: f64,
    /// The cost measured: the difference in total CPU per scan over spans per scan.
    pub recovered_us: f64,
    /// `recovered_us / expected_us - 1`, in percent.
    pub error_pct: f64,
    /// Within ±10 %.
    pub passed: bool,
}
