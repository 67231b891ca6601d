//! `tracebench run`: on provisioned infrastructure, start the pipeline, drive the load, drain,
//! verify the traces and judge the expectations — each step a function of its own below.
//!
//! | file          | what                                                            |
//! |---------------|-----------------------------------------------------------------|
//! | `target`      | `POST /scan` as the load generator's target                     |
//! | `progress`    | the live line on stderr                                         |
//! | [`traces`]    | reading spans back, judging every scan, waterfalls              |
//! | [`expect`]    | the scenario's expectations, one verdict each                   |
//! | `session`     | the pipeline of one run: started, followed, probed, stopped     |
//! | `drive`       | the load (or the search) under the fault schedule               |
//! | `generator`   | the generator's plan and thread, drained to the last scan       |
//! | `capacity`    | the saturation search: the capacity wherever it lies            |
//! | `faults`      | `faults.schedule`: the RabbitMQ proxy, Kafka's controls, playing |

mod capacity;
mod drive;
pub mod expect;
pub mod faults;
mod generator;
mod memory;
mod progress;
mod query;
mod session;
pub mod target;
pub mod traces;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tb_load::LoadReport;
use tb_pipeline::StartError;
use tb_report::{
    CapacitySection, InjectedFault, LatencySection, Machine, ProcessUsage, RunResult,
    SCHEMA_VERSION, SpanSummary, TracesSection, Verdict,
};
use tb_scenario::Scenario;
use tb_telemetry::TelemetryGuard;

pub use capacity::most_steps as most_search_steps;
pub use expect::{edge_matches, judge};
pub use faults::collector as collector_proxy;
pub use session::delete_queue;
pub use target::ScanError;
pub use traces::SpanSource;

use crate::children::ChildrenError;
use crate::infra::{InfraError, Provisioned};
use drive::Driven;

/// How the harness runs a scenario (as opposed to what the scenario runs).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Where `result.json` and `services.log` go.
    pub out: Option<PathBuf>,
    /// Where to write a JUnit report, one test case per expectation.
    pub junit: Option<PathBuf>,
    /// No progress output.
    pub quiet: bool,
    /// Where the services run.
    pub services: Services,
    /// The fault proxy on the services' OTLP path, when the fault schedule takes the collector
    /// down (the caller wires the exporters through it).
    pub collector: Option<Arc<tb_faults::Proxy>>,
}

/// Where the services run.
#[derive(Clone, Debug, Default)]
pub enum Services {
    /// All in this process (the default).
    #[default]
    InProcess,
    /// Each as its own `tracebench service <name>` child process.
    Process {
        /// The `tracebench` executable. The children get the scenario's knobs as a
        /// [`tb_scenario::ServiceSpec`] file in the run's output directory.
        exe: PathBuf,
        /// Where the children export spans.
        otlp_endpoint: Option<String>,
    },
}

/// Why a run could not produce a verdict.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Infrastructure unavailable.
    #[error("infrastructure: {0}")]
    Infra(#[from] InfraError),
    /// The pipeline did not start.
    #[error("pipeline: {0}")]
    Start(#[from] StartError),
    /// The pipeline started without scan-api, so there is nothing to drive.
    #[error("pipeline: scan-api did not start")]
    NoScanApi,
    /// The service processes did not start.
    #[error("services: {0}")]
    Children(#[from] ChildrenError),
    /// The load generator's thread failed.
    #[error("load generator: {0}")]
    Generator(std::io::Error),
    /// Writing the output failed.
    #[error("writing {0}: {1}")]
    Output(PathBuf, std::io::Error),
    /// The scenario's fault schedule cannot be played here.
    #[error("faults.schedule: {0}")]
    Faults(String),
}

/// Runs `scenario` on provisioned infrastructure (see [`crate::infra::provision`]): starts the
/// pipeline, drives it, drains it, verifies the traces and judges.
///
/// `telemetry` is the process's telemetry (installed by the caller for the scenario's tracing
/// plan); its span counts go into the result.
///
/// # Errors
///
/// Fails when the pipeline does not start or the output cannot be written.
pub async fn run(
    scenario: &Scenario,
    infra: &Provisioned,
    telemetry: Option<&TelemetryGuard>,
    spans: SpanSource,
    options: &RunOptions,
) -> Result<RunResult, RunError> {
    if !options.quiet {
        announce(infra);
    }
    let session = session::open(scenario, infra, options).await?;
    let (machine, target) = (session.machine.clone(), session.target.clone());
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    // This process's span counts (and the sink's evictions) so far, its queue flushed.
    let counted = || {
        let mut counts = telemetry.map_or_else(SpanSummary::default, |t| {
            let _ = t.flush();
            SpanSummary::from(t.span_counts())
        });
        counts.evicted = spans.evicted();
        counts
    };
    let ran = drive_and_stop(scenario, session, options, &counted).await?;
    // A search is judged at its capacity: spans the SDK dropped in the overloaded step after
    // it are not the run's. (Children report their counts only when they exit, so theirs
    // cover it all.) Evictions count to the end: they take away traces of any step.
    let mut span_counts = ran.driven.at_capacity.unwrap_or_else(counted);
    span_counts.add(ran.children_spans);
    span_counts.evicted = spans.evicted();
    let verifying = Instant::now();
    let (traces, critical) = traces::verify_traces(
        scenario,
        &ran.driven.scans,
        &spans,
        target.take().1.as_deref(),
        &ran.driven.unjudged,
        span_counts.maybe_lost(),
    )
    .await;
    let header = Header {
        started_at,
        machine,
        verification_ms: verifying.elapsed().as_secs_f64() * 1e3,
    };
    let result = judged(
        scenario,
        infra,
        header,
        ran,
        span_counts,
        (traces, critical),
    );
    write_outputs(&result, options)?;
    Ok(result)
}

/// What a run did before it was verified.
struct Ran {
    driven: Driven,
    injected: Vec<InjectedFault>,
    processes: Vec<ProcessUsage>,
    /// The span counts the children reported at exit.
    children_spans: SpanSummary,
}

/// Drives the session's load under the fault schedule while memory is sampled, then stops
/// the services.
async fn drive_and_stop(
    scenario: &Scenario,
    session: session::Session,
    options: &RunOptions,
    counted: &dyn Fn() -> SpanSummary,
) -> Result<Ran, RunError> {
    let session::Session {
        wiring,
        running,
        trackers,
        feed,
        target,
        proxies,
        ..
    } = session;
    let rig = running.rig(proxies, options.collector.clone());
    let sample_every = memory::interval(scenario.warmup + scenario.duration);
    let sampling = memory::sample(running.children(), sample_every);
    let (driven, injected, rig) =
        drive::load_under_faults(scenario, rig, &target, &trackers, counted, options.quiet).await?;
    let trends = sampling.stop().await;
    let processes = with_trends(running.usage(target.accepted()), trends, sample_every);
    let children_spans = session::stop(running, feed, &wiring, rig).await;
    Ok(Ran {
        driven,
        injected,
        processes,
        children_spans,
    })
}

/// What the result says besides what was driven and verified.
struct Header {
    started_at: String,
    machine: Machine,
    verification_ms: f64,
}

/// The run's result: what it drove, what verification found, and every verdict.
fn judged(
    scenario: &Scenario,
    infra: &Provisioned,
    header: Header,
    ran: Ran,
    spans: SpanSummary,
    (traces, critical): (Option<TracesSection>, Option<tb_verify::Attribution>),
) -> RunResult {
    let Ran {
        driven: Driven { load, capacity, .. },
        injected,
        processes,
        ..
    } = ran;
    let latency = LatencySection {
        http: load.http,
        end_to_end: load.end_to_end,
    };
    let expectations = verdicts(
        scenario,
        &load,
        &latency,
        capacity.as_ref(),
        traces.as_ref(),
        &spans,
        &processes,
    );
    RunResult {
        schema_version: SCHEMA_VERSION,
        scenario: scenario.name.clone(),
        seed: scenario.seed,
        started_at: header.started_at,
        duration_s: scenario
            .search
            .map_or(scenario.duration, |s| s.hold)
            .as_secs_f64(),
        infra: infra.report.clone(),
        machine: header.machine,
        requests: load.requests,
        scans: load.followed,
        target_rps: load.target_rps,
        throughput_rps: load.throughput_rps,
        latency,
        spans,
        verification_ms: header.verification_ms,
        traces,
        critical_path: critical,
        histogram: load.histogram,
        sample_errors: load.sample_errors,
        capacity,
        faults: injected,
        processes,
        passed: expectations.iter().all(|v| v.passed),
        expectations,
    }
}

/// One measured run of the overhead bench (see [`measure`]).
#[derive(Clone, Debug)]
pub struct Measured {
    /// The measured load (warm-up excluded).
    pub load: LoadReport,
    /// What each service process spent over the measured load.
    pub cpu: Vec<ProcessCost>,
    /// Scans accepted over the whole run: probe, warm-up and measured load.
    pub scans_total: u64,
    /// The span counts the services reported at exit (the whole run).
    pub spans: SpanSummary,
}

/// What one service process spent over the measured load of [`measure`].
#[derive(Clone, Debug)]
pub struct ProcessCost {
    /// The service.
    pub name: String,
    /// CPU nanoseconds.
    pub cpu_ns: u64,
    /// Times one of its threads was put on a CPU (see
    /// [`crate::usage::CpuSnapshot::switches_since`]).
    pub switches: u64,
    /// Peak RSS at the end (KiB).
    pub peak_rss_kb: u64,
}

/// Runs `scenario`'s services as child processes (`options.services` must be
/// [`Services::Process`]), warms them up for `scenario.warmup`, then offers `scenario.load` for
/// `scenario.duration` and measures what each process spent on it: the overhead bench's
/// repeat. Nothing is verified.
///
/// # Errors
///
/// Fails when the services do not start or the load generator cannot run.
pub async fn measure(
    scenario: &Scenario,
    infra: &Provisioned,
    options: &RunOptions,
) -> Result<Measured, RunError> {
    let session = session::open(scenario, infra, options).await?;
    let (running, trackers, target) = (session.running, session.trackers, session.target);
    let plan = generator::plan(scenario);
    if !scenario.warmup.is_zero() {
        let warmup = tb_load::Plan {
            warmup: Duration::ZERO,
            duration: scenario.warmup,
            ..plan
        };
        generator::drive(warmup, target.clone(), trackers.renew(), true).await?;
    }
    let before = running.cpu();
    let measured = tb_load::Plan {
        warmup: Duration::ZERO,
        ..plan
    };
    let load = generator::drive(measured, target.clone(), trackers.renew(), options.quiet).await?;
    let after = running.cpu();
    let peaks = running.usage(1);
    let cpu = after
        .into_iter()
        .map(|(name, now)| {
            let then = before.iter().find(|(n, _)| *n == name).map(|(_, t)| t);
            let peak_rss_kb = peaks
                .iter()
                .find(|p| p.process == name)
                .map_or(0, |p| p.peak_rss_kb);
            ProcessCost {
                name: name.to_owned(),
                cpu_ns: then.map_or(0, |t| now.ns_since(t)),
                switches: then.map_or(0, |t| now.switches_since(t)),
                peak_rss_kb,
            }
        })
        .collect();
    let scans_total = target.accepted();
    drop(target.take());
    let spans = session::stop(running, session.feed, &session.wiring, session.proxies).await;
    Ok(Measured {
        load,
        cpu,
        scans_total,
        spans,
    })
}

/// Every verdict of the run: the scenario's expectations, the search's, and lost telemetry's
/// own (lost spans are never blamed on propagation).
fn verdicts(
    scenario: &Scenario,
    load: &LoadReport,
    latency: &LatencySection,
    capacity: Option<&CapacitySection>,
    traces: Option<&TracesSection>,
    spans: &SpanSummary,
    processes: &[ProcessUsage],
) -> Vec<Verdict> {
    let offered = load.requests.sent + load.requests.skipped;
    let summary = traces.map(|t| &t.summary);
    let mut verdicts = judge(scenario, offered, &load.followed, latency, summary);
    if let Some(c) = capacity {
        verdicts.push(capacity::verdict(c));
    }
    // An accepted scan must complete, whatever the load or the faults: lost is never fine.
    verdicts.push(Verdict {
        name: "scans.lost".to_owned(),
        expected: 0.0,
        actual: load.followed.lost as f64,
        passed: load.followed.lost == 0,
    });
    if traces.is_some() {
        verdicts.push(Verdict {
            name: "telemetry.spans_lost".to_owned(),
            expected: 0.0,
            actual: spans.lost() as f64,
            passed: !spans.maybe_lost() || scenario.expect.allow_telemetry_loss,
        });
    }
    if let Some(bound) = scenario.expect.max_rss_growth {
        verdicts.push(rss_verdict(bound, processes));
    }
    verdicts
}

/// `processes` with the memory trend of each over the load, where there is one.
fn with_trends(
    mut processes: Vec<ProcessUsage>,
    trends: Vec<memory::Trend>,
    every: Duration,
) -> Vec<ProcessUsage> {
    for t in trends {
        if let Some(p) = processes.iter_mut().find(|p| p.process == t.process) {
            p.rss_settled_kb = Some(t.settled_kb);
            p.rss_end_kb = Some(t.end_kb);
            p.rss_growth = Some(t.growth());
            p.rss_samples_kb = t.samples_kb;
            p.rss_sample_every_s = Some(every.as_secs_f64());
        }
    }
    processes
}

/// `expect.max_rss_growth`: no process's memory moved by more than `bound` (a share) once
/// warmed up, either way. Fails when no process had enough samples to tell.
fn rss_verdict(bound: f64, processes: &[ProcessUsage]) -> Verdict {
    let growths: Vec<f64> = processes.iter().filter_map(|p| p.rss_growth).collect();
    let worst = growths.iter().map(|g| g.abs()).fold(0.0, f64::max);
    Verdict {
        name: "expect.max_rss_growth".to_owned(),
        expected: bound,
        actual: worst,
        passed: !growths.is_empty() && worst <= bound,
    }
}

/// Says where each piece of infrastructure came from.
fn announce(infra: &Provisioned) {
    for (what, c) in [
        ("rabbitmq", &infra.report.rabbitmq),
        ("kafka", &infra.report.kafka),
        ("traces", &infra.report.traces),
    ] {
        let address = c
            .address
            .as_deref()
            .map(|a| format!(" ({a})"))
            .unwrap_or_default();
        eprintln!("tracebench: {what}: {}{address}", c.source);
    }
}

/// `result.json` into the output directory, and the JUnit report, when asked for.
fn write_outputs(result: &RunResult, options: &RunOptions) -> Result<(), RunError> {
    if let Some(dir) = &options.out {
        std::fs::create_dir_all(dir).map_err(|e| RunError::Output(dir.clone(), e))?;
        let path = dir.join("result.json");
        let json = serde_json::to_vec_pretty(result).unwrap_or_default();
        std::fs::write(&path, json).map_err(|e| RunError::Output(path, e))?;
    }
    if let Some(path) = &options.junit {
        std::fs::write(path, tb_report::junit(result))
            .map_err(|e| RunError::Output(path.clone(), e))?;
    }
    Ok(())
}
