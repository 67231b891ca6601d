//! `tracebench overhead`: what tracing costs the system under test. Every arm of the ladder
//! (a sampler and an exporter) runs the pipeline as child processes at one offered rate, a
//! number of times, in rounds: every arm once a round, in an order the seed shuffles anew for
//! each round (see [`tb_report::overhead::stats`] for why arms are compared inside a round); each repeat measures the CPU
//! time every service process spent on its scans, apart from the load generator (this process)
//! and the trace sink (a process of its own). The statistics say how far each arm is from
//! `off` (no SDK at all) and whether the bench can tell it from its own noise.
//!
//! `overhead.json`'s types and the statistics behind its figures are `tb-report`'s
//! ([`tb_report::overhead`]); this module runs the ladder: the arms' scenario files, the sink
//! process, the rate, the repeats, the sums.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tb_load::Arrival;
use tb_telemetry::Sampling;
use tb_traces::sink::StoreStats;
use tokio::process::{Child, Command};

use crate::infra::Provisioned;
use crate::run::{Measured, ProcessCost, RunError, RunOptions, Services, SpanSource};
use tb_report::Machine;
use tb_report::overhead::schema::{
    ArmResult, Diff, OVERHEAD_SCHEMA_VERSION, OverheadResult, PerHop, RepeatResult, SelfTest, TOTAL,
};
use tb_report::overhead::stats::{self, Spread, median, median_ci95};
use tb_scenario::{Arm, ArmExporter, CapacitySearch, OverheadRate, Scenario};

/// scan-api's service name (`tb_scan_api::SERVICE`, which this crate does not depend on).
const SCAN_API: &str = "scan-api";

/// How `tracebench overhead` runs (as opposed to what the scenario runs).
#[derive(Clone, Debug)]
pub struct OverheadOptions {
    /// The scenario file.
    pub file: PathBuf,
    /// Where `overhead.json` and every repeat's logs and service spec go.
    pub out: PathBuf,
    /// The `tracebench` executable, for the service and sink processes.
    pub exe: PathBuf,
    /// No progress output.
    pub quiet: bool,
}

/// Why the overhead run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum OverheadError {
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A run failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The sink process did not start or answer.
    #[error("the trace sink process: {0}")]
    Sink(String),
    /// The `off` arm held at no rate of the search, down to its lowest step.
    #[error(
        "the off arm held at no rate of the search (from {0}/s down to its lowest step): give overhead.rate"
    )]
    NoSaturation(f64),
}

/// Runs the ladder of `scenario.overhead` and writes `overhead.json` into `options.out`:
/// the sink process when an arm exports to it, the offered rate,
/// every repeat, the statistics.
///
/// # Errors
///
/// Fails when a file cannot be written, the sink or the services do not start, or the `off`
/// saturation cannot be found.
pub async fn run(
    scenario: &Scenario,
    infra: &Provisioned,
    options: &OverheadOptions,
) -> Result<OverheadResult, OverheadError> {
    let plan = &scenario.overhead;
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let machine = crate::machine::measure().await;
    std::fs::create_dir_all(&options.out).map_err(io(&options.out))?;
    let needs_sink = plan
        .arms
        .iter()
        .any(|a| a.exporter == ArmExporter::Otlp && a.sampling != Sampling::Off);
    let sink = if needs_sink {
        Some(SinkProcess::start(&options.exe, &options.out).await?)
    } else {
        None
    };
    let (rate, off_saturation) = match plan.rate {
        OverheadRate::Fixed(r) => (r, None),
        OverheadRate::ShareOfSaturation(share, search) => {
            let max = off_saturation(scenario, infra, options, search).await?;
            if !options.quiet {
                eprintln!(
                    "tracebench: overhead: off saturates at {max:.0} scans/s; offering {:.0} % of it",
                    share * 100.0
                );
            }
            (max * share, Some(max))
        }
    };
    let ladder = Ladder {
        scenario,
        infra,
        options,
        sink: sink.as_ref(),
        rate,
    };
    let (repeats, order) = ladder.run_repeats().await?;
    if let Some(sink) = sink {
        sink.stop().await;
    }
    let header = Header {
        started_at,
        machine,
        rate,
        off_saturation,
        order,
    };
    let result = summarise(scenario, &plan.arms, repeats, header);
    let path = options.out.join("overhead.json");
    let json = serde_json::to_vec_pretty(&result).unwrap_or_default();
    std::fs::write(&path, json).map_err(io(&path))?;
    Ok(result)
}

/// An I/O error about `path`, for `map_err`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OverheadError {
    let path = path.to_owned();
    move |e| OverheadError::Io(path, e)
}

/// The `off` arm's saturation rate: the capacity search, with tracing off, every service its
/// own process.
async fn off_saturation(
    scenario: &Scenario,
    infra: &Provisioned,
    options: &OverheadOptions,
    search: CapacitySearch,
) -> Result<f64, OverheadError> {
    let off = Arm {
        name: "off".to_owned(),
        sampling: Sampling::Off,
        exporter: ArmExporter::Discard,
        synthetic_span_cost: Duration::ZERO,
    };
    let mut s = scenario.with_arm(&off);
    s.warmup = Duration::ZERO;
    // Each step is held, then drained; the budget only stops a runaway search.
    s.duration = (search.hold + Duration::from_secs(5)) * crate::run::most_search_steps(&search);
    s.search = Some(search);
    let run_options = RunOptions {
        out: Some(options.out.join("saturation")),
        junit: None,
        quiet: options.quiet,
        services: Services::Process {
            exe: options.exe.clone(),
            otlp_endpoint: None,
        },
        collector: None,
    };
    let result = crate::run::run(&s, infra, None, SpanSource::None, &run_options).await?;
    result
        .capacity
        .and_then(|c| c.max_rate)
        .ok_or(OverheadError::NoSaturation(search.from))
}

/// What every repeat of the ladder shares.
struct Ladder<'a> {
    scenario: &'a Scenario,
    infra: &'a Provisioned,
    options: &'a OverheadOptions,
    sink: Option<&'a SinkProcess>,
    /// The offered rate (scans/s).
    rate: f64,
}

impl Ladder<'_> {
    /// Every repeat in the order of [`round_order`]: each arm's repeats (by arm index, repeat
    /// `r` from round `r`), and the labels (`arm#repeat`) in the order they ran.
    async fn run_repeats(&self) -> Result<(Vec<Vec<RepeatResult>>, Vec<String>), OverheadError> {
        let arms = &self.scenario.overhead.arms;
        let order = round_order(
            arms.len(),
            self.scenario.overhead.repeats,
            self.scenario.seed,
        );
        let mut repeats: Vec<Vec<RepeatResult>> = vec![Vec::new(); arms.len()];
        let mut labels = Vec::new();
        for (n, &(a, r)) in order.iter().enumerate() {
            let label = format!("{}#{}", arms[a].name, r + 1);
            let repeat = self.repeat(a, n).await?;
            if !self.options.quiet {
                eprintln!(
                    "tracebench: overhead {}/{}: {label}: {:.1} CPU µs/scan, {:.0} scans/s, e2e p99 {:.1} ms, {} lost",
                    n + 1,
                    order.len(),
                    repeat.cpu_us_per_scan.get(TOTAL).copied().unwrap_or(0.0),
                    repeat.throughput_rps,
                    repeat.e2e_p99_ms,
                    repeat.lost,
                );
            }
            repeats[a].push(repeat);
            labels.push(label);
        }
        Ok((repeats, labels))
    }

    /// Repeat number `n` (in running order) of arm `a`, with the OTLP bytes the sink took.
    async fn repeat(&self, a: usize, n: usize) -> Result<RepeatResult, OverheadError> {
        let arm = &self.scenario.overhead.arms[a];
        let (endpoint, sink) = match arm.exporter {
            ArmExporter::Discard => (None, None),
            ArmExporter::Otlp => (self.sink.map(|s| s.grpc_endpoint.clone()), self.sink),
            ArmExporter::External => (self.scenario.overhead.otlp_endpoint.clone(), None),
        };
        let received = || async {
            match sink {
                Some(s) => s.stats().await.request_bytes_received,
                None => 0,
            }
        };
        let before = received().await;
        let mut s = self.scenario.with_arm(arm);
        s.search = None;
        s.load.arrival = Arrival::Constant { rate: self.rate };
        s.seed = self.scenario.seed.wrapping_add(n as u64);
        let run_options = RunOptions {
            out: Some(self.options.out.join("repeats").join(format!(
                "{:03}-{}",
                n + 1,
                slug(&arm.name)
            ))),
            junit: None,
            quiet: true,
            services: Services::Process {
                exe: self.options.exe.clone(),
                otlp_endpoint: endpoint,
            },
            collector: None,
        };
        let measured = crate::run::measure(&s, self.infra, &run_options).await?;
        let otlp_bytes = received().await.saturating_sub(before);
        Ok(repeat_result(&measured, otlp_bytes))
    }
}

/// The order of the repeats: `repeats` rounds, each running every arm once in an order `seed`
/// shuffles anew for that round (Fisher–Yates); an arm's repeat `r` runs in round `r`. Drift
/// over the ladder (a warming machine, a neighbour) then moves every arm of a round alike, and
/// a comparison inside a round leaves it out (see [`tb_report::overhead::stats`]); the shuffle keeps a fixed arm
/// from always running first in its round.
pub fn round_order(arms: usize, repeats: u32, seed: u64) -> Vec<(usize, u32)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order = Vec::with_capacity(arms * repeats as usize);
    for r in 0..repeats {
        let mut round: Vec<usize> = (0..arms).collect();
        for i in (1..round.len()).rev() {
            let j = rng.random_range(0..=i);
            round.swap(i, j);
        }
        order.extend(round.into_iter().map(|a| (a, r)));
    }
    order
}

/// `name` as a file name: letters, digits, `.` and `-`; anything else becomes `_`.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A repeat's figures from what [`crate::run::measure`] measured.
fn repeat_result(m: &Measured, otlp_bytes: u64) -> RepeatResult {
    let scans = m.load.followed.accepted.max(1) as f64;
    let per_scan = |of: fn(&ProcessCost) -> u64, scale: f64| {
        let mut map: BTreeMap<String, f64> = m
            .cpu
            .iter()
            .map(|p| (p.name.clone(), of(p) as f64 * scale / scans))
            .collect();
        let total = map.values().sum();
        map.insert(TOTAL.to_owned(), total);
        map
    };
    RepeatResult {
        cpu_us_per_scan: per_scan(|p| p.cpu_ns, 1e-3),
        switches_per_scan: per_scan(|p| p.switches, 1.0),
        peak_rss_kb: m
            .cpu
            .iter()
            .map(|p| (p.name.clone(), p.peak_rss_kb))
            .collect(),
        scans: m.load.followed.accepted,
        lost: m.load.followed.lost,
        e2e_p50_ms: m.load.end_to_end.corrected.p50,
        e2e_p99_ms: m.load.end_to_end.corrected.p99,
        throughput_rps: m.load.throughput_rps,
        spans_ended: m.spans.ended,
        spans_exported: m.spans.exported,
        spans_dropped: m.spans.dropped,
        scans_total: m.scans_total,
        otlp_bytes,
    }
}

/// What the result says besides the arms.
struct Header {
    started_at: String,
    machine: Machine,
    rate: f64,
    off_saturation: Option<f64>,
    order: Vec<String>,
}

/// The statistics of every arm, the per-hop figures and the self-tests.
fn summarise(
    scenario: &Scenario,
    arms: &[Arm],
    repeats: Vec<Vec<RepeatResult>>,
    header: Header,
) -> OverheadResult {
    let off = arms.iter().position(|a| a.sampling == Sampling::Off);
    let off_repeats = off.map(|i| repeats[i].clone());
    let results: Vec<ArmResult> = arms
        .iter()
        .zip(repeats)
        .enumerate()
        .map(|(i, (arm, rs))| {
            // The baseline itself is not compared with itself.
            let base = off_repeats.as_deref().filter(|_| Some(i) != off);
            arm_result(arm, rs, base, scenario.seed ^ (i as u64 + 1))
        })
        .collect();
    OverheadResult {
        overhead_schema_version: OVERHEAD_SCHEMA_VERSION,
        scenario: scenario.name.clone(),
        seed: scenario.seed,
        started_at: header.started_at,
        machine: header.machine,
        rate_rps: header.rate,
        off_saturation_rps: header.off_saturation,
        warmup_s: scenario.warmup.as_secs_f64(),
        duration_s: scenario.duration.as_secs_f64(),
        ci_method: stats::METHOD.to_owned(),
        order: header.order,
        per_hop_us: per_hop(arms, &results),
        self_test: self_tests(arms, &results),
        arms: results,
    }
}

/// One figure of every repeat: `key`'s CPU µs per scan (a service, or [`TOTAL`]).
fn cpu_of(rs: &[RepeatResult], key: &str) -> Vec<f64> {
    rs.iter()
        .filter_map(|r| r.cpu_us_per_scan.get(key).copied())
        .collect()
}

/// `key`'s CPU µs per scan in `own` less `base`'s, round by round: an arm's repeat `r` ran in
/// round `r` (see [`round_order`]), so the repeats pair by position. A round where either
/// lacks `key` is left out rather than paired with another round's.
fn round_differences(own: &[RepeatResult], base: &[RepeatResult], key: &str) -> Vec<f64> {
    own.iter()
        .zip(base)
        .filter_map(|(o, b)| Some(o.cpu_us_per_scan.get(key)? - b.cpu_us_per_scan.get(key)?))
        .collect()
}

/// One arm's statistics; `base` is the `off` arm's repeats to compare with (none for `off`
/// itself, or without an `off` arm), `seed` the bootstrap's.
fn arm_result(
    arm: &Arm,
    rs: Vec<RepeatResult>,
    base: Option<&[RepeatResult]>,
    seed: u64,
) -> ArmResult {
    let services: std::collections::BTreeSet<String> = rs
        .iter()
        .flat_map(|r| r.cpu_us_per_scan.keys().cloned())
        .collect();
    let cpu_us_per_scan: BTreeMap<String, Spread> = services
        .iter()
        .map(|s| (s.clone(), Spread::of(&cpu_of(&rs, s))))
        .collect();
    let spans_per_scan = median(
        &rs.iter()
            .map(|r| r.spans_ended as f64 / r.scans_total.max(1) as f64)
            .collect::<Vec<_>>(),
    );
    let vs_off = base.map(|b| diff(&round_differences(&rs, b, TOTAL), &cpu_of(b, TOTAL), seed));
    let vs_off_by_service = base.map_or_else(BTreeMap::new, |b| {
        services
            .iter()
            .filter(|s| *s != TOTAL)
            .map(|s| (s.clone(), median(&round_differences(&rs, b, s))))
            .collect()
    });
    let pick = |f: fn(&RepeatResult) -> f64| Spread::of(&rs.iter().map(f).collect::<Vec<_>>());
    let switches: Vec<f64> = rs
        .iter()
        .filter_map(|r| r.switches_per_scan.get(TOTAL).copied())
        .collect();
    ArmResult {
        name: arm.name.clone(),
        sampler: sampler_name(arm.sampling),
        exporter: if arm.sampling == Sampling::Off {
            "none".to_owned()
        } else {
            arm.exporter.name().to_owned()
        },
        synthetic_span_cost_us: arm.synthetic_span_cost.as_secs_f64() * 1e6,
        cpu_us_per_scan,
        added_us_per_span: vs_off
            .as_ref()
            .filter(|_| spans_per_scan > 0.0)
            .map(|d| d.diff / spans_per_scan),
        vs_off,
        vs_off_by_service,
        spans_per_scan,
        e2e_p50_ms: pick(|r| r.e2e_p50_ms),
        e2e_p99_ms: pick(|r| r.e2e_p99_ms),
        throughput_rps: pick(|r| r.throughput_rps),
        otlp_bytes_per_scan: pick(|r| r.otlp_bytes as f64 / r.scans_total.max(1) as f64),
        switches_per_scan: (!switches.is_empty()).then(|| Spread::of(&switches)),
        repeats: rs,
    }
}

/// The median of one arm's `differences` from `base` round by round (see
/// [`round_differences`]), with its bootstrap interval (seeded by `seed`) and as a share of
/// `base`'s median.
fn diff(differences: &[f64], base: &[f64], seed: u64) -> Diff {
    let base_median = median(base);
    let diff = median(differences);
    let (lo, hi) = median_ci95(differences, seed);
    Diff {
        diff,
        ci95: [lo, hi],
        diff_pct: if base_median > 0.0 {
            diff / base_median * 100.0
        } else {
            0.0
        },
        within_noise: lo <= 0.0 && 0.0 <= hi,
    }
}

fn sampler_name(s: Sampling) -> String {
    match s {
        Sampling::Off => "off".to_owned(),
        Sampling::AlwaysOff => "always_off".to_owned(),
        Sampling::Ratio(r) => format!("ratio {r}"),
        Sampling::AlwaysOn => "always_on".to_owned(),
    }
}

/// See [`PerHop`]: from the first `always_on` arm without a synthetic cost, `otlp` preferred.
fn per_hop(arms: &[Arm], results: &[ArmResult]) -> Option<PerHop> {
    let candidates = || {
        arms.iter().zip(results).filter(|(a, r)| {
            a.sampling == Sampling::AlwaysOn
                && a.synthetic_span_cost.is_zero()
                && r.vs_off.is_some()
        })
    };
    let (_, r) = candidates()
        .find(|(a, _)| a.exporter == ArmExporter::Otlp)
        .or_else(|| candidates().next())?;
    let d = |s: &str| r.vs_off_by_service.get(s).copied().unwrap_or(0.0);
    let http = (d(tb_mocks::vision::SERVICE) + d(tb_mocks::llm::SERVICE)) / 2.0;
    Some(PerHop {
        arm: r.name.clone(),
        http,
        amqp: d(SCAN_API) - http,
        kafka: d(tb_consumers::MY),
    })
}

/// Every arm with a synthetic cost against the arm alike in all but that, round by round: the
/// median of the paired differences in total CPU per scan, over the spans per scan.
fn self_tests(arms: &[Arm], results: &[ArmResult]) -> Vec<SelfTest> {
    arms.iter()
        .zip(results)
        .filter(|(a, _)| !a.synthetic_span_cost.is_zero())
        .filter_map(|(a, r)| {
            let (_, twin) = arms.iter().zip(results).find(|(b, _)| {
                b.synthetic_span_cost.is_zero()
                    && b.sampling == a.sampling
                    && b.exporter == a.exporter
            })?;
            let expected = a.synthetic_span_cost.as_secs_f64() * 1e6;
            let added = median(&round_differences(&r.repeats, &twin.repeats, TOTAL));
            let recovered = added / r.spans_per_scan.max(f64::MIN_POSITIVE);
            let error_pct = (recovered / expected - 1.0) * 100.0;
            Some(SelfTest {
                arm: r.name.clone(),
                baseline: twin.name.clone(),
                expected_us: expected,
                recovered_us: recovered,
                error_pct,
                passed: error_pct.abs() <= 10.0,
            })
        })
        .collect()
}

/// `tracebench sink` as a process of its own: the spans' receiver, whose CPU is not the system
/// under test's.
struct SinkProcess {
    child: Child,
    grpc_endpoint: String,
    stats_url: String,
    http: reqwest::Client,
}

impl SinkProcess {
    async fn start(exe: &Path, out: &Path) -> Result<Self, OverheadError> {
        let sink_err = |e: &dyn std::fmt::Display| OverheadError::Sink(e.to_string());
        let port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| sink_err(&e))
        };
        let (grpc, http) = (port()?, port()?);
        let log_path = out.join("sink.log");
        let log = std::fs::File::create(&log_path).map_err(|e| OverheadError::Io(log_path, e))?;
        let err_log = log.try_clone().map_err(|e| sink_err(&e))?;
        let child = Command::new(exe)
            .args(["sink", "--grpc-addr", &grpc.to_string()])
            .args(["--http-addr", &http.to_string(), "--max-bytes", "512MiB"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| sink_err(&e))?;
        let sink = Self {
            child,
            grpc_endpoint: format!("http://{grpc}"),
            stats_url: format!("http://{http}/api/sink/stats"),
            http: reqwest::Client::new(),
        };
        let ready = format!("http://{http}/ready");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if sink
                .http
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(sink);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(OverheadError::Sink(format!(
                    "not ready on {http} within 30 s (see {})",
                    out.join("sink.log").display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The sink's counters; zeros when it does not answer (the bytes are then unknown).
    async fn stats(&self) -> StoreStats {
        match self.http.get(&self.stats_url).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => StoreStats::default(),
        }
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_arm_runs_once_a_round_in_a_seeded_shuffle() {
        let order = round_order(3, 4, 9);
        assert_eq!(order.len(), 12);
        for (r, round) in order.chunks(3).enumerate() {
            assert!(
                round.iter().all(|p| p.1 as usize == r),
                "round {r}: {round:?}"
            );
            let mut arms: Vec<usize> = round.iter().map(|p| p.0).collect();
            arms.sort_unstable();
            assert_eq!(arms, [0, 1, 2], "every arm once in round {r}");
        }
        assert_eq!(order, round_order(3, 4, 9));
        assert_ne!(order, round_order(3, 4, 10));
        let fixed: Vec<(usize, u32)> = (0..4).flat_map(|r| (0..3).map(move |a| (a, r))).collect();
        assert_ne!(
            order, fixed,
            "shuffled within the rounds, not the arms' order each time"
        );
    }

    #[test]
    fn scan_api_is_a_service_of_the_pipeline() {
        assert!(tb_pipeline::SERVICES.contains(&SCAN_API));
    }

    fn repeat(total: f64, vision: f64, spans: u64) -> RepeatResult {
        RepeatResult {
            cpu_us_per_scan: BTreeMap::from([
                (TOTAL.to_owned(), total),
                (tb_mocks::vision::SERVICE.to_owned(), vision),
            ]),
            spans_ended: spans,
            scans_total: 10,
            ..RepeatResult::default()
        }
    }

    #[test]
    fn a_round_missing_a_service_is_left_out_not_paired_with_another() {
        let mut gap = repeat(510.0, 0.0, 0);
        gap.cpu_us_per_scan.remove(tb_mocks::vision::SERVICE);
        let own = [repeat(560.0, 45.0, 0), gap, repeat(580.0, 65.0, 0)];
        let base = [
            repeat(500.0, 40.0, 0),
            repeat(500.0, 50.0, 0),
            repeat(520.0, 60.0, 0),
        ];
        assert_eq!(round_differences(&own, &base, TOTAL), [60.0, 10.0, 60.0]);
        assert_eq!(
            round_differences(&own, &base, tb_mocks::vision::SERVICE),
            [5.0, 5.0],
            "rounds 1 and 3 only"
        );
    }

    #[test]
    fn arms_are_compared_with_off_and_a_synthetic_cost_is_found_again() {
        let scenario = Scenario::parse(
            Path::new("s.yaml"),
            "name: s\nduration: 1s\nload: {arrival: constant, rate: 10}\n",
        )
        .expect("scenario");
        let arm = |sampling, us: f64| Arm {
            name: tb_scenario::arm_name(
                sampling,
                ArmExporter::Discard,
                Duration::from_secs_f64(us / 1e6),
            ),
            sampling,
            exporter: ArmExporter::Discard,
            synthetic_span_cost: Duration::from_secs_f64(us / 1e6),
        };
        let arms = [
            arm(Sampling::Off, 0.0),
            arm(Sampling::AlwaysOn, 0.0),
            arm(Sampling::AlwaysOn, 10.0),
        ];
        // 20 spans a scan; the synthetic arm costs 200 µs a scan more than its twin.
        let repeats = vec![
            vec![
                repeat(500.0, 40.0, 0),
                repeat(502.0, 41.0, 0),
                repeat(498.0, 39.0, 0),
            ],
            vec![
                repeat(560.0, 45.0, 200),
                repeat(562.0, 46.0, 200),
                repeat(558.0, 44.0, 200),
            ],
            vec![
                repeat(760.0, 55.0, 200),
                repeat(761.0, 56.0, 200),
                repeat(759.0, 54.0, 200),
            ],
        ];
        let r = summarise(
            &scenario,
            &arms,
            repeats,
            Header {
                started_at: String::new(),
                machine: Machine::default(),
                rate: 10.0,
                off_saturation: None,
                order: Vec::new(),
            },
        );
        assert!(r.arms[0].vs_off.is_none());
        let on = r.arms[1].vs_off.as_ref().expect("vs off");
        assert_eq!(on.diff, 60.0);
        assert!(!on.within_noise);
        assert!((on.diff_pct - 12.0).abs() < 1e-9);
        assert_eq!(r.arms[1].added_us_per_span, Some(3.0));
        assert_eq!(r.arms[1].vs_off_by_service[tb_mocks::vision::SERVICE], 5.0);
        assert_eq!(r.self_test.len(), 1);
        let t = &r.self_test[0];
        assert_eq!(
            (t.arm.as_str(), t.baseline.as_str()),
            ("always_on+discard+10us", "always_on+discard")
        );
        assert!((t.recovered_us - 10.0).abs() < 1e-9 && t.passed);
        assert_eq!(
            r.per_hop_us.as_ref().map(|p| p.arm.as_str()),
            Some("always_on+discard")
        );
    }
}
