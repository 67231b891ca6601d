//! `tracebench run`: on provisioned infrastructure, start the pipeline, drive the load, drain,
//! verify the traces and judge the expectations — each step a function of its own below.
//!
//! | file          | what                                                            |
//! |---------------|-----------------------------------------------------------------|
//! | `target`      | `POST /scan` as the load generator's target                     |
//! | `progress`    | the live line on stderr                                         |
//! | [`traces`]    | reading spans back, judging every scan, waterfalls              |
//! | [`expect`]    | the scenario's expectations, one verdict each                   |
//! | `capacity`    | the saturation search: rate after rate until one does not hold  |
//! | `faults`      | `faults.schedule`: the RabbitMQ proxy, Kafka's controls, playing |

mod capacity;
pub mod expect;
pub(crate) mod faults;
mod memory;
mod progress;
mod query;
pub(crate) mod target;
pub mod traces;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tb_consumers::{CHARACTER, MY, Processed};
use tb_load::{LoadReport, Target as _, Tracker};
use tb_pipeline::{Pipeline, StartError, Wiring};
use tb_telemetry::TelemetryGuard;
use tb_verify::Scan;
use tokio::sync::mpsc;

pub use capacity::{HALVINGS as SEARCH_HALVINGS, most_steps as most_search_steps};
pub use expect::{edge_matches, judge};
pub use faults::collector as collector_proxy;
pub use target::ScanError;
pub use traces::SpanSource;

use crate::children::{Children, ChildrenError};
use crate::infra::{InfraError, Provisioned};
use crate::machine::Machine;
use crate::report::{
    CapacitySection, LatencySection, ProcessUsage, RunResult, SCHEMA_VERSION, SpanSummary,
    TracesSection, Verdict,
};
use crate::scenario::Scenario;
use progress::Progress;
use target::{PROBE, ScanTarget};

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
        /// The `tracebench` executable.
        exe: PathBuf,
        /// The scenario file the children read their knobs from.
        scenario: PathBuf,
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
    let session = open(scenario, infra, options).await?;
    let (running, trackers, target) = (session.running, session.trackers, session.target);
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
    let rig = running.rig(session.proxies, options.collector.clone());
    let sample_every = memory::interval(scenario.warmup + scenario.duration);
    let sampling = memory::sample(running.children(), sample_every);
    let (
        Driven {
            load,
            capacity,
            scans,
            unjudged,
            at_capacity,
        },
        injected,
        rig,
    ) = load_under_faults(scenario, rig, &target, &trackers, &counted, options.quiet).await?;
    let trends = sampling.stop().await;
    let processes = with_trends(running.usage(target.accepted()), trends, sample_every);
    let children_spans = stop(running, session.feed, &session.wiring, rig).await;
    // A search is judged at its capacity: spans the SDK dropped in the overloaded step after
    // it are not the run's. (Children report their counts only when they exit, so theirs
    // cover it all.) Evictions count to the end: they take away traces of any step.
    let mut span_counts = at_capacity.unwrap_or_else(counted);
    span_counts.add(children_spans);
    span_counts.evicted = spans.evicted();
    let verifying = Instant::now();
    let (traces, critical) = traces::verify_traces(
        scenario,
        &scans,
        &spans,
        target.take().1.as_deref(),
        &unjudged,
        span_counts.maybe_lost(),
    )
    .await;
    let verification_ms = verifying.elapsed().as_secs_f64() * 1e3;
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
        &span_counts,
        &processes,
    );
    let result = RunResult {
        schema_version: SCHEMA_VERSION,
        scenario: scenario.name.clone(),
        seed: scenario.seed,
        started_at,
        duration_s: scenario
            .search
            .map_or(scenario.duration, |s| s.hold)
            .as_secs_f64(),
        infra: infra.report.clone(),
        machine: session.machine,
        requests: load.requests,
        scans: load.followed,
        target_rps: load.target_rps,
        throughput_rps: load.throughput_rps,
        latency,
        spans: span_counts,
        verification_ms,
        traces,
        critical_path: critical,
        histogram: load.histogram,
        sample_errors: load.sample_errors,
        capacity,
        faults: injected,
        processes,
        passed: expectations.iter().all(|v| v.passed),
        expectations,
    };
    write_outputs(&result, options)?;
    Ok(result)
}

/// One measured run of the overhead bench (see [`measure`]).
#[derive(Clone, Debug)]
pub struct Measured {
    /// The measured load (warm-up excluded).
    pub load: LoadReport,
    /// CPU nanoseconds each service process spent over the measured load, with its peak RSS
    /// (KiB) at the end.
    pub cpu: Vec<(String, u64, u64)>,
    /// Scans accepted over the whole run: probe, warm-up and measured load.
    pub scans_total: u64,
    /// The span counts the services reported at exit (the whole run).
    pub spans: SpanSummary,
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
    let session = open(scenario, infra, options).await?;
    let (running, trackers, target) = (session.running, session.trackers, session.target);
    let plan = plan(scenario);
    if !scenario.warmup.is_zero() {
        let warmup = tb_load::Plan {
            warmup: Duration::ZERO,
            duration: scenario.warmup,
            ..plan
        };
        drive(warmup, target.clone(), trackers.renew(), true).await?;
    }
    let before = running.cpu();
    let measured = tb_load::Plan {
        warmup: Duration::ZERO,
        ..plan
    };
    let load = drive(measured, target.clone(), trackers.renew(), options.quiet).await?;
    let after = running.cpu();
    let peaks = running.usage(1);
    let cpu = after
        .into_iter()
        .map(|(name, now)| {
            let ns = before
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, then)| now.ns_since(then));
            let peak = peaks
                .iter()
                .find(|p| p.process == name)
                .map_or(0, |p| p.peak_rss_kb);
            (name.to_owned(), ns, peak)
        })
        .collect();
    let scans_total = target.accepted();
    drop(target.take());
    let spans = stop(running, session.feed, &session.wiring, session.proxies).await;
    Ok(Measured {
        load,
        cpu,
        scans_total,
        spans,
    })
}

/// The pipeline of one run, started, probed and ready for load.
struct Session {
    wiring: Wiring,
    running: Running,
    trackers: Arc<CurrentTracker>,
    feed: tokio::task::JoinHandle<()>,
    target: Arc<ScanTarget>,
    /// The fault proxies in front of RabbitMQ and the APIs the fault schedule touches.
    proxies: faults::Rig,
    machine: Machine,
}

/// Starts the scenario's services on a task queue of their own (so a run never takes tasks
/// left by another, or leaves any behind), follows their completions, and sends the probe.
async fn open(
    scenario: &Scenario,
    infra: &Provisioned,
    options: &RunOptions,
) -> Result<Session, RunError> {
    // Measured before anything of the run's own competes for the CPUs.
    let machine = crate::machine::measure().await;
    let queue = tb_messaging::amqp::scoped_queue(tb_messaging::amqp::SCAN_TASKS, "run");
    let (amqp_url, proxy) = faults::rabbitmq(&scenario.faults, &infra.amqp_url).await?;
    let mut wiring = Wiring::ephemeral(amqp_url, infra.kafka.clone(), queue);
    let (vision, llm) = faults::apis(&scenario.faults, &mut wiring).await?;
    let (running, scan_api, processed) = start(scenario, &wiring, options).await?;
    let trackers = Arc::new(CurrentTracker::default());
    let feed = tokio::spawn(count_completions(processed, trackers.clone()));
    let target = Arc::new(ScanTarget::new(scan_api, scenario.load.connections));
    probe(&target, &trackers.get()).await;
    Ok(Session {
        wiring,
        running,
        trackers,
        feed,
        target,
        proxies: faults::Rig {
            rabbitmq: proxy,
            vision,
            llm,
            ..faults::Rig::default()
        },
        machine,
    })
}

/// Drives the scenario while its fault schedule plays; every fault is over before this returns
/// (the drain after it needs the brokers back). Returns the faults played, and the rig, whose
/// proxies must outlive the services (see [`faults::Playing::stop`]).
async fn load_under_faults(
    scenario: &Scenario,
    rig: faults::Rig,
    target: &Arc<ScanTarget>,
    trackers: &CurrentTracker,
    counted: &dyn Fn() -> SpanSummary,
    quiet: bool,
) -> Result<(Driven, Vec<crate::report::InjectedFault>, faults::Rig), RunError> {
    let playing = faults::play(&scenario.faults, rig, quiet)?;
    let driven = load(scenario, target, trackers, counted, quiet).await;
    let (injected, rig) = playing.stop().await;
    Ok((driven?, injected, rig))
}

/// What driving the scenario produced.
struct Driven {
    /// The load report (for a search, of the highest rate that held).
    load: LoadReport,
    /// The search's steps, when the scenario runs one.
    capacity: Option<CapacitySection>,
    /// The scans to judge.
    scans: Vec<Scan>,
    /// Trace ids of scans driven but not judged (a search's overloaded last step).
    unjudged: HashSet<String>,
    /// This process's span counts at a search's capacity.
    at_capacity: Option<SpanSummary>,
}

/// Drives the scenario's one load, or its saturation search.
async fn load(
    scenario: &Scenario,
    target: &Arc<ScanTarget>,
    trackers: &CurrentTracker,
    counted: &dyn Fn() -> SpanSummary,
    quiet: bool,
) -> Result<Driven, RunError> {
    match &scenario.search {
        None => {
            let load = drive(plan(scenario), target.clone(), trackers.get(), quiet).await?;
            Ok(Driven {
                load,
                capacity: None,
                scans: target.take().0,
                unjudged: HashSet::new(),
                at_capacity: None,
            })
        }
        Some(search) => {
            let found =
                capacity::search(scenario, search, target, trackers, counted, quiet).await?;
            Ok(Driven {
                load: found.report,
                capacity: Some(found.section),
                scans: found.scans,
                unjudged: found.unjudged,
                at_capacity: found.spans,
            })
        }
    }
}

/// Stops the services (each drains first), then the fault proxies they drained through (see
/// [`faults::Playing::stop`]), the completion feed and the run's queue; returns the span counts
/// the children reported.
async fn stop(
    running: Running,
    feed: tokio::task::JoinHandle<()>,
    wiring: &Wiring,
    proxies: faults::Rig,
) -> SpanSummary {
    let (errors, children_spans) = running.shutdown().await;
    drop(proxies);
    for (service, e) in errors {
        eprintln!("tracebench: {service} stopped with an error: {e}");
    }
    feed.abort();
    delete_queue(wiring).await;
    children_spans
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

/// The services of a run, however they run.
enum Running {
    InProcess(Pipeline),
    Children(Children),
}

impl Running {
    /// What each process of the services has used so far, per accepted scan.
    fn usage(&self, scans: u64) -> Vec<ProcessUsage> {
        let measured: Vec<(&str, f64, u64)> = match self {
            Self::InProcess(_) => crate::usage::of("self")
                .map(|(cpu, rss)| vec![("tracebench", cpu, rss)])
                .unwrap_or_default(),
            Self::Children(children) => children.usage(),
        };
        measured
            .into_iter()
            .map(|(process, cpu_s, peak_rss_kb)| ProcessUsage {
                process: process.to_owned(),
                cpu_s,
                cpu_us_per_scan: cpu_s * 1e6 / scans.max(1) as f64,
                peak_rss_kb,
                rss_settled_kb: None,
                rss_end_kb: None,
                rss_growth: None,
                rss_samples_kb: Vec::new(),
                rss_sample_every_s: None,
            })
            .collect()
    }

    /// The children, to kill and restart and to read memory from; `None` in process.
    fn children(&self) -> Option<crate::children::ChildControl> {
        match self {
            Self::InProcess(_) => None,
            Self::Children(children) => Some(children.control()),
        }
    }

    /// What the fault schedule acts through: `proxies` (RabbitMQ's and the APIs'), the
    /// collector's, and the embedded Kafka broker's controls when the services run on one.
    fn rig(&self, proxies: faults::Rig, collector: Option<Arc<tb_faults::Proxy>>) -> faults::Rig {
        let kafka = match self {
            Self::InProcess(pipeline) => pipeline
                .embedded_kafka()
                .and_then(tb_messaging::kafka::EmbeddedKafka::control),
            Self::Children(children) => children.kafka_control(),
        };
        faults::Rig {
            collector,
            kafka,
            control: self.children(),
            ..proxies
        }
    }

    /// Each process's CPU time now (see [`crate::usage::CpuSnapshot`]).
    fn cpu(&self) -> Vec<(&'static str, crate::usage::CpuSnapshot)> {
        match self {
            Self::InProcess(_) => crate::usage::cpu_snapshot("self")
                .map(|s| vec![("tracebench", s)])
                .unwrap_or_default(),
            Self::Children(children) => children.cpu(),
        }
    }

    /// Stops every service after it drained; returns the ones that ended with an error,
    /// described, and the span counts the children reported (none in process: this
    /// process's provider counts those).
    async fn shutdown(self) -> (Vec<(&'static str, String)>, SpanSummary) {
        fn described<E: std::fmt::Display>(
            errors: Vec<(&'static str, E)>,
        ) -> Vec<(&'static str, String)> {
            errors
                .into_iter()
                .map(|(n, e)| (n, e.to_string()))
                .collect()
        }
        match self {
            Self::InProcess(pipeline) => {
                (described(pipeline.shutdown().await), SpanSummary::default())
            }
            Self::Children(children) => {
                let (errors, spans, killed) = children.shutdown().await;
                let mut spans = SpanSummary::from(spans);
                spans.killed_processes = killed;
                (described(errors), spans)
            }
        }
    }
}

/// Starts the scenario's pipeline on `wiring`, here or as child processes; returns it with
/// scan-api's address and the stream of scan events the consumers finished.
async fn start(
    scenario: &Scenario,
    wiring: &Wiring,
    options: &RunOptions,
) -> Result<(Running, SocketAddr, mpsc::UnboundedReceiver<Processed>), RunError> {
    match &options.services {
        Services::InProcess => {
            let mut config = scenario.pipeline.clone();
            config.wiring = wiring.clone();
            let mut pipeline = Pipeline::start(config).await?;
            let scan_api = pipeline.scan_api.ok_or(RunError::NoScanApi)?;
            let processed = pipeline.take_processed();
            Ok((Running::InProcess(pipeline), scan_api, processed))
        }
        Services::Process {
            exe,
            scenario: file,
            otlp_endpoint,
        } => {
            let mut children = Children::spawn(
                exe,
                file,
                wiring,
                otlp_endpoint.as_deref(),
                options.out.as_deref(),
            )
            .await?;
            let processed = children.take_processed();
            let scan_api = children.scan_api;
            Ok((Running::Children(children), scan_api, processed))
        }
    }
}

/// The tracker completions go to: one per load, so a saturation search measures each step
/// apart (a straggler of an earlier step is simply never matched).
#[derive(Default)]
pub(crate) struct CurrentTracker(std::sync::Mutex<Arc<Tracker>>);

impl CurrentTracker {
    pub(crate) fn get(&self) -> Arc<Tracker> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Starts a fresh tracker and returns it.
    pub(crate) fn renew(&self) -> Arc<Tracker> {
        let fresh = Arc::new(Tracker::default());
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh.clone();
        fresh
    }
}

/// Marks a scan complete once both consumers have processed it.
async fn count_completions(
    mut processed: mpsc::UnboundedReceiver<Processed>,
    tracker: Arc<CurrentTracker>,
) {
    let mut seen: HashMap<String, (bool, bool)> = HashMap::new();
    while let Some(p) = processed.recv().await {
        let entry = seen.entry(p.task_id.clone()).or_default();
        if p.consumer == CHARACTER {
            entry.0 = true;
        } else if p.consumer == MY {
            entry.1 = true;
        }
        if *entry == (true, true) {
            seen.remove(&p.task_id);
            tracker.get().complete(&p.task_id, p.at);
        }
    }
}

/// One probe scan first, followed until both consumers have it: the consumer groups have
/// joined and every connection is up before the first measured arrival.
async fn probe(target: &ScanTarget, tracker: &Tracker) {
    let deadline = Instant::now() + Duration::from_secs(60);
    match target.send(PROBE).await {
        Ok(Some(id)) => {
            tracker.follow_unmeasured(id);
            while tracker.outstanding() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if tracker.outstanding() > 0 {
                eprintln!(
                    "tracebench: the probe scan did not complete within 60 s; starting anyway"
                );
            }
        }
        Ok(None) => {}
        Err(e) => eprintln!("tracebench: the probe scan failed: {e}; starting anyway"),
    }
}

/// The scenario's one load, drained for as long as its slowest scan can take: every retry's
/// backoff and call timeout, plus a margin (a run ends sooner once every scan is in).
fn plan(scenario: &Scenario) -> tb_load::Plan {
    let worker = &scenario.pipeline.worker;
    let drain = Duration::from_secs(30)
        + (worker.call_timeout * 2
            + worker.retry_backoff * 2u32.saturating_pow(worker.max_retries))
            * (worker.max_retries + 1);
    tb_load::Plan {
        load: scenario.load,
        warmup: scenario.warmup,
        duration: scenario.duration,
        seed: scenario.seed,
        drain,
    }
}

/// Drives `plan` on a thread and runtime of its own, then waits for every scan to finish end
/// to end (or the drain to run out).
async fn drive(
    plan: tb_load::Plan,
    target: Arc<ScanTarget>,
    tracker: Arc<Tracker>,
    quiet: bool,
) -> Result<LoadReport, RunError> {
    let progress = Arc::new(Progress::new(quiet));
    let bar = progress.clone();
    let began = Instant::now();
    // The generator gets a thread and runtime of its own: the in-process services burn CPU on
    // the shared runtime (rule_match spins), and a generator starved by them would send late
    // and measure its own queueing.
    let generator = std::thread::Builder::new()
        .name("load-generator".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok::<_, std::io::Error>(runtime.block_on(tb_load::drive(
                target,
                plan,
                tracker,
                move |r, in_flight| bar.update(r, in_flight, began.elapsed()),
            )))
        })
        .map_err(RunError::Generator)?;
    let report = tokio::task::spawn_blocking(move || generator.join())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| RunError::Generator(std::io::Error::other("the load generator panicked")))?
        .map_err(RunError::Generator)?;
    progress.finish();
    Ok(report)
}

/// Deletes the run's task queue (durable, so it would otherwise outlive the run).
pub(crate) async fn delete_queue(wiring: &Wiring) {
    if let Ok(connection) = tb_messaging::amqp::connect(&wiring.amqp_url).await
        && let Ok(channel) = connection.create_channel().await
    {
        let _ = channel
            .queue_delete(
                wiring.queue.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
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
        std::fs::write(path, crate::report::junit(result))
            .map_err(|e| RunError::Output(path.clone(), e))?;
    }
    Ok(())
}
