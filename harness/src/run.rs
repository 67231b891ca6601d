//! `tracebench run`: provision what the scenario needs, start the pipeline, drive the load,
//! wait for every accepted scan to finish end to end, and judge the expectations.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tb_consumers::{CHARACTER, MY};
use tb_telemetry::{SpanCounts, TelemetryGuard};

use crate::attribution::{Attribution, attribute, critical_path};
use crate::children::Children;
use crate::infra::{InfraError, InfraReport, Provisioned};
use crate::load::{self, Followed, Latencies, Requests, Target, Tracker};
use crate::model::Span;
use crate::pipeline::{Pipeline, StartError};
use crate::scenario::{Hop, Scenario};
use crate::sink::client::TraceClient;
use crate::sink::store::TraceStore;
use crate::verify::{self, Scan, TraceSummary};

/// Version of the `result.json` schema (see `scenarios/README.md`).
pub const SCHEMA_VERSION: u32 = 1;

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

/// The services of a run, however they run.
enum Running {
    InProcess(Pipeline),
    Children(Children),
}

/// Where the run's spans can be read after the load.
#[derive(Clone)]
pub enum SpanSource {
    /// The embedded sink's store, in this process.
    Store(Arc<TraceStore>),
    /// A Tempo-shaped query API (real Tempo, or a sink elsewhere).
    Query(TraceClient),
    /// Spans are not collected (sampling off, or a discard exporter).
    None,
}

/// A span as the report draws it: offsets in ms from the trace's start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaterfallSpan {
    /// Service.
    pub service: String,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: crate::model::Kind,
    /// Depth in the tree (0 for the root).
    pub depth: u32,
    /// Start offset, ms.
    pub start_ms: f64,
    /// Duration, ms.
    pub duration_ms: f64,
    /// Error status.
    pub error: bool,
}

/// One trace drawn as a waterfall.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Waterfall {
    /// Trace id.
    pub trace_id: String,
    /// End-to-end ms by the critical path.
    pub total_ms: f64,
    /// Spans in tree order.
    pub spans: Vec<WaterfallSpan>,
}

/// The traces section of `result.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TracesSection {
    /// Where spans were read from: `embedded` or the query URL.
    pub source: String,
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
    /// Spans dropped or still pending at the end.
    pub dropped: u64,
}

impl From<SpanCounts> for SpanSummary {
    fn from(c: SpanCounts) -> Self {
        Self {
            ended: c.ended,
            exported: c.exported,
            dropped: c.dropped_or_pending(),
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
    pub fn rows(&self) -> [(&'static str, crate::load::Percentiles); 4] {
        [
            ("http corrected", self.http.corrected),
            ("http uncorrected", self.http.uncorrected),
            ("e2e corrected", self.end_to_end.corrected),
            ("e2e uncorrected", self.end_to_end.uncorrected),
        ]
    }
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
    /// Every expectation's verdict.
    pub expectations: Vec<Verdict>,
    /// Whether every expectation held.
    pub passed: bool,
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
    /// The service processes did not start.
    #[error("services: {0}")]
    Children(#[from] crate::children::ChildrenError),
    /// The load generator's thread failed.
    #[error("load generator: {0}")]
    Generator(std::io::Error),
    /// Writing the output failed.
    #[error("writing {0}: {1}")]
    Output(PathBuf, std::io::Error),
}

/// `POST /scan` against scan-api; remembers each accepted scan's task and trace id.
struct ScanTarget {
    client: reqwest::Client,
    url: String,
    scans: std::sync::Mutex<Vec<Scan>>,
    /// The probe scan's task id: judged like the others, left out of latency attribution
    /// (it pays for the consumer groups joining).
    probe: std::sync::Mutex<Option<String>>,
}

impl Target for ScanTarget {
    async fn send(&self, seq: u64) -> Result<Option<String>, String> {
        const KINDS: [&str; 5] = ["bottle", "can", "box", "jar", "peel"];
        let body = serde_json::json!({
            "image_url": format!("https://img.example/{}/{seq}.jpg", KINDS[(seq % 5) as usize]),
            "user_id": format!("user-{}", seq % 1000),
        });
        let response = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("POST /scan: {e}"))?;
        let status = response.status();
        if status.as_u16() != 202 {
            let text = response.text().await.unwrap_or_default();
            return Err(format!("POST /scan: {status}: {text}"));
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| format!("POST /scan: body: {e}"))?;
        match body["task_id"].as_str() {
            Some(id) => {
                // The probe (seq u64::MAX) is a scan like any other: its spans must be judged,
                // not counted as strays.
                if seq == u64::MAX {
                    *self
                        .probe
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(id.to_owned());
                }
                if let Some(trace_id) = body["trace_id"].as_str() {
                    self.scans
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(Scan {
                            task_id: id.to_owned(),
                            trace_id: trace_id.to_owned(),
                        });
                }
                Ok(Some(id.to_owned()))
            }
            None => Err("POST /scan: no task_id in the answer".to_owned()),
        }
    }
}

/// Progress on stderr: a live line on a terminal, a plain line every 5 s otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    last_plain: std::sync::Mutex<std::time::Instant>,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            quiet,
            last_plain: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    fn update(&self, r: &Requests, in_flight: usize, elapsed: Duration) {
        let rate = r.sent as f64 / elapsed.as_secs_f64().max(1e-3);
        let line = format!(
            "sent {} ({rate:.0}/s)  ok {}  failed {}  skipped {}  in flight {in_flight}",
            r.sent, r.ok, r.failed, r.skipped
        );
        if let Some(bar) = &self.bar {
            bar.set_message(line);
        } else if !self.quiet {
            let mut last = self
                .last_plain
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() >= Duration::from_secs(5) {
                *last = std::time::Instant::now();
                eprintln!("tracebench: {line}");
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Judges the scenario's expectations against a run.
pub fn judge(
    scenario: &Scenario,
    offered: u64,
    scans: &Followed,
    latency: &LatencySection,
    traces: Option<&TraceSummary>,
) -> Vec<Verdict> {
    let e = &scenario.expect;
    // Success means accepted and completed end to end; an arrival skipped for max_in_flight
    // counts as offered and not served.
    let success = if offered == 0 {
        0.0
    } else {
        scans.completed as f64 / offered as f64
    };
    let mut verdicts = vec![Verdict {
        name: "expect.min_success_rate".to_owned(),
        expected: e.min_success_rate,
        actual: success,
        passed: offered > 0 && success >= e.min_success_rate,
    }];
    if let Some(max) = e.max_p99_ms {
        let p99 = latency.end_to_end.corrected.p99;
        verdicts.push(Verdict {
            name: "expect.max_p99_ms".to_owned(),
            expected: max,
            actual: p99,
            passed: latency.end_to_end.corrected.count > 0 && p99 <= max,
        });
    }
    if let Some(t) = traces {
        // Spans are collected: every expected trace must be complete unless the scenario lowers
        // the bar (a fault scenario that means to pass sets `min_complete_ratio` and bounds
        // the broken edges with `max_broken` instead).
        let min = e.min_complete_ratio.unwrap_or(1.0);
        verdicts.push(Verdict {
            name: "expect.min_complete_ratio".to_owned(),
            expected: min,
            actual: t.complete_ratio,
            passed: t.complete_ratio >= min,
        });
        for (key, max) in &e.max_broken {
            let broken: u64 = t
                .broken_edges
                .iter()
                .filter(|(edge, _)| edge_matches(key, edge))
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(0);
            verdicts.push(Verdict {
                name: format!("expect.max_broken.{key}"),
                expected: *max as f64,
                actual: broken as f64,
                passed: broken <= *max,
            });
        }
        // An unsampled scan must leave no span anywhere.
        verdicts.push(Verdict {
            name: "traces.stray_spans".to_owned(),
            expected: 0.0,
            actual: t.stray_spans as f64,
            passed: t.stray_spans == 0 || scenario.strip.is_some_and(|(hop, _)| hop == Hop::Http),
        });
    } else if let Some(min) = e.min_complete_ratio {
        verdicts.push(Verdict {
            name: "expect.min_complete_ratio".to_owned(),
            expected: min,
            actual: 0.0,
            passed: false,
        });
    }
    verdicts
}

/// Whether `key` (a full edge label, or `http`, `amqp`, `kafka`) names `edge`.
pub fn edge_matches(key: &str, edge: &str) -> bool {
    let child = edge.rsplit(" → ").next().unwrap_or_default();
    match key {
        "http" => child.contains("POST /v1/"),
        "amqp" | "rabbitmq" => child.ends_with("/process_image"),
        "kafka" => child.ends_with("/process scan.completed"),
        _ => key == edge,
    }
}

/// Runs `scenario` on provisioned infrastructure (see [`crate::infra::provision`]): starts the
/// pipeline, drives it, judges.
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
        for (what, c) in [
            ("rabbitmq", &infra.report.rabbitmq),
            ("kafka", &infra.report.kafka),
            ("traces", &infra.report.traces),
        ] {
            eprintln!(
                "tracebench: {what}: {}{}",
                c.source,
                c.address
                    .as_deref()
                    .map(|a| format!(" ({a})"))
                    .unwrap_or_default()
            );
        }
    }

    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = scenario.pipeline.clone();
    config.amqp_url = infra.amqp_url.clone();
    config.kafka = infra.kafka.clone();
    config.scan_api_addr = any;
    config.vision_addr = any;
    config.llm_addr = any;
    // A queue of its own, so a run never takes tasks left by another (or leaves any behind).
    let run_id = format!("{:016x}", rand::random::<u64>());
    config.worker.queue = format!("scan.tasks.run-{run_id}");
    let queue = config.worker.queue.clone();
    let amqp_url = config.amqp_url.clone();
    let (running, scan_api, mut processed) = match &options.services {
        Services::InProcess => {
            let mut pipeline = Pipeline::start(config).await?;
            let scan_api = pipeline.scan_api.ok_or_else(|| {
                RunError::Start(StartError::UnknownService(
                    "scan-api did not start".to_owned(),
                ))
            })?;
            let processed = std::mem::replace(
                &mut pipeline.processed,
                tokio::sync::mpsc::unbounded_channel().1,
            );
            (Running::InProcess(pipeline), scan_api, processed)
        }
        Services::Process {
            exe,
            scenario: file,
            otlp_endpoint,
        } => {
            let mut children = Children::spawn(
                exe,
                file,
                &config,
                otlp_endpoint.as_deref(),
                options.out.as_deref(),
            )
            .await?;
            let processed = std::mem::replace(
                &mut children.processed,
                tokio::sync::mpsc::unbounded_channel().1,
            );
            let scan_api = children.scan_api;
            (Running::Children(children), scan_api, processed)
        }
    };

    let tracker = Arc::new(Tracker::default());
    let feed = {
        let tracker = tracker.clone();
        tokio::spawn(async move {
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
                    tracker.complete(&p.task_id, p.at);
                }
            }
        })
    };

    let target = Arc::new(ScanTarget {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(scenario.load.connections)
            .build()
            .unwrap_or_default(),
        url: format!("http://{scan_api}/scan"),
        scans: std::sync::Mutex::default(),
        probe: std::sync::Mutex::default(),
    });
    let scans_of = target.clone();
    // One probe scan first, followed until both consumers have it: the consumer groups have
    // joined and every connection is up before the first measured arrival.
    let probe_deadline = std::time::Instant::now() + Duration::from_secs(60);
    match target.send(u64::MAX).await {
        Ok(Some(id)) => {
            let now = std::time::Instant::now();
            tracker.accept(
                id,
                load::Pending {
                    intended: now,
                    sent: now,
                    measured: false,
                },
            );
            while tracker.outstanding() > 0 && std::time::Instant::now() < probe_deadline {
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
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let progress = Arc::new(Progress::new(options.quiet));
    let began = std::time::Instant::now();
    // Long enough for the slowest scan the scenario can produce: every retry's backoff and
    // call timeout, plus a margin; a run ends sooner once every scan is in.
    let worker = &scenario.pipeline.worker;
    let drain = Duration::from_secs(30)
        + (worker.call_timeout * 2
            + worker.retry_backoff * 2u32.saturating_pow(worker.max_retries))
            * (worker.max_retries + 1);
    // The generator gets a thread and runtime of its own: the in-process services burn CPU on
    // the shared runtime (rule_match spins), and a generator starved by them would send late
    // and measure its own queueing.
    let plan = load::Plan {
        load: scenario.load,
        warmup: scenario.warmup,
        duration: scenario.duration,
        seed: scenario.seed,
        drain,
    };
    let bar = progress.clone();
    let generator = std::thread::Builder::new()
        .name("load-generator".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok::<_, std::io::Error>(runtime.block_on(load::drive(
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

    let errors = match running {
        Running::InProcess(pipeline) => pipeline.shutdown().await,
        Running::Children(children) => children.shutdown().await,
    };
    feed.abort();
    for (service, e) in &errors {
        eprintln!("tracebench: {service} stopped with an error: {e}");
    }
    if let Ok(connection) = tb_messaging::amqp::connect(&amqp_url).await
        && let Ok(channel) = connection.create_channel().await
    {
        let _ = channel
            .queue_delete(
                queue.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
    let span_counts = match telemetry {
        Some(t) => {
            let _ = t.flush();
            SpanSummary::from(t.span_counts())
        }
        None => SpanSummary::default(),
    };

    let latency = LatencySection {
        http: report.http,
        end_to_end: report.end_to_end,
    };
    let scans = std::mem::take(
        &mut *scans_of
            .scans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let probe = scans_of
        .probe
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let verifying = std::time::Instant::now();
    let (traces, critical) = verify_traces(scenario, &scans, &spans, probe.as_deref()).await;
    let verification_ms = verifying.elapsed().as_secs_f64() * 1e3;
    let offered = report.requests.sent + report.requests.skipped;
    let expectations = judge(
        scenario,
        offered,
        &report.followed,
        &latency,
        traces.as_ref().map(|t| &t.summary),
    );
    let passed = expectations.iter().all(|v| v.passed);
    let result = RunResult {
        schema_version: SCHEMA_VERSION,
        scenario: scenario.name.clone(),
        seed: scenario.seed,
        started_at,
        duration_s: scenario.duration.as_secs_f64(),
        infra: infra.report.clone(),
        requests: report.requests,
        scans: report.followed,
        target_rps: report.target_rps,
        throughput_rps: report.throughput_rps,
        latency,
        spans: span_counts,
        verification_ms,
        traces,
        critical_path: critical,
        histogram: report.histogram,
        sample_errors: report.sample_errors,
        expectations,
        passed,
    };
    if let Some(dir) = &options.out {
        std::fs::create_dir_all(dir).map_err(|e| RunError::Output(dir.clone(), e))?;
        let path = dir.join("result.json");
        let json = serde_json::to_vec_pretty(&result).unwrap_or_default();
        std::fs::write(&path, json).map_err(|e| RunError::Output(path, e))?;
    }
    if let Some(path) = &options.junit {
        std::fs::write(path, crate::report::junit(&result))
            .map_err(|e| RunError::Output(path.clone(), e))?;
    }
    Ok(result)
}

/// Whether the root of `trace_id` was sampled under the scenario's sampler, decided by the
/// SDK's own sampler so the verifier and the services can never disagree.
fn sampled_by(sampling: tb_telemetry::Sampling) -> impl Fn(&str) -> bool {
    use opentelemetry::trace::{SpanKind, TraceId};
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};
    let sampler = match sampling {
        tb_telemetry::Sampling::Off => None,
        other => tb_telemetry::setup::sampler(other).ok(),
    };
    move |trace_id: &str| {
        let (Some(sampler), Ok(id)) = (&sampler, TraceId::from_hex(trace_id)) else {
            return false;
        };
        sampler
            .should_sample(None, id, "POST /scan", &SpanKind::Server, &[], &[])
            .decision
            == SamplingDecision::RecordAndSample
    }
}

/// Reads the run's spans, judges every scan and attributes latency over the complete ones.
async fn verify_traces(
    scenario: &Scenario,
    scans: &[Scan],
    source: &SpanSource,
    probe: Option<&str>,
) -> (Option<TracesSection>, Option<Attribution>) {
    let sampled = sampled_by(scenario.tracing.sampling);
    let (spans, name): (Vec<Span>, String) = match source {
        SpanSource::None => return (None, None),
        SpanSource::Store(store) => (
            store
                .trace_ids()
                .iter()
                .filter_map(|id| store.get(id))
                .flatten()
                .collect(),
            "embedded".to_owned(),
        ),
        SpanSource::Query(client) => {
            // Tempo assembles a trace from what its ingesters hold; spans can arrive after the
            // first answer, so each trace is polled until complete or until a shared deadline
            // that leaves room for Tempo's flush.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let template = &scenario.expect.template;
            let mut all = Vec::new();
            for scan in scans.iter().filter(|s| sampled(&s.trace_id)) {
                let one = std::slice::from_ref(scan);
                let polled = client
                    .trace_until(
                        &scan.trace_id,
                        |spans| verify::judge(template, one, spans, |_| true).0.complete == 1,
                        deadline,
                        Duration::from_millis(250),
                    )
                    .await;
                if let Ok(p) = polled {
                    all.extend(p.spans);
                }
            }
            (all, client.base_url().to_owned())
        }
    };
    let (summary, verdicts) = verify::judge(&scenario.expect.template, scans, &spans, &sampled);
    let complete: Vec<&verify::ScanVerdict> = verdicts
        .iter()
        .filter(|v| v.sampled && v.problems.is_empty() && Some(v.task_id.as_str()) != probe)
        .collect();
    let attribution = attribute(complete.iter().map(|v| v.spans.as_slice()));
    let mut by_length: Vec<(u64, &verify::ScanVerdict)> = complete
        .iter()
        .filter_map(|v| critical_path(&v.spans).map(|p| (p.total_ns, *v)))
        .collect();
    by_length.sort_by_key(|(t, _)| *t);
    let median = by_length
        .get(by_length.len() / 2)
        .map(|(t, v)| waterfall(v, *t));
    let slowest = by_length.last().map(|(t, v)| waterfall(v, *t));
    (
        Some(TracesSection {
            source: name,
            summary,
            median,
            slowest,
        }),
        (attribution.scans > 0).then_some(attribution),
    )
}

/// The spans of a verdict in tree order with depths, offsets from the earliest start.
fn waterfall(v: &verify::ScanVerdict, total_ns: u64) -> Waterfall {
    let start = v.spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let (mut roots, children) = crate::model::tree(&v.spans);
    let mut out = Vec::new();
    let mut stack: Vec<(&Span, u32)> = Vec::new();
    roots.sort_by_key(|s| std::cmp::Reverse(s.start_ns));
    stack.extend(roots.into_iter().map(|s| (s, 0)));
    while let Some((s, depth)) = stack.pop() {
        out.push(WaterfallSpan {
            service: s.service.clone(),
            name: s.name.clone(),
            kind: s.kind,
            depth,
            start_ms: (s.start_ns - start) as f64 / 1e6,
            duration_ms: s.duration_ns() as f64 / 1e6,
            error: s.error,
        });
        let mut kids = children
            .get(s.span_id.as_str())
            .cloned()
            .unwrap_or_default();
        kids.sort_by_key(|k| std::cmp::Reverse(k.start_ns));
        stack.extend(kids.into_iter().map(|k| (k, depth + 1)));
    }
    Waterfall {
        trace_id: v.trace_id.clone(),
        total_ms: total_ns as f64 / 1e6,
        spans: out,
    }
}

/// The terminal summary.
pub fn summary(r: &RunResult) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "scenario {} (seed {}), {:.0} s measured",
        r.scenario, r.seed, r.duration_s
    );
    let _ = writeln!(
        s,
        "requests  sent {}  ok {}  failed {}  late {}  skipped {}   {:.1}/s served of {:.1}/s offered",
        r.requests.sent,
        r.requests.ok,
        r.requests.failed,
        r.requests.late,
        r.requests.skipped,
        r.throughput_rps,
        r.target_rps
    );
    let _ = writeln!(
        s,
        "scans     accepted {}  completed {}  lost {}",
        r.scans.accepted, r.scans.completed, r.scans.lost
    );
    let _ = writeln!(
        s,
        "spans     ended {}  exported {}  dropped {}",
        r.spans.ended, r.spans.exported, r.spans.dropped
    );
    let _ = writeln!(
        s,
        "\nlatency ms           p50       p90       p99      p99.9       max"
    );
    for (name, l) in r.latency.rows() {
        let _ = writeln!(
            s,
            "{name:<17}{:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>9.1}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
    }
    if let Some(t) = &r.traces {
        let t2 = &t.summary;
        let _ = writeln!(
            s,
            "\ntraces    expected {} of {} scans  complete {} ({:.1} %)  stray spans {}  (from {}, verdict in {:.0} ms)",
            t2.expected,
            t2.scans,
            t2.complete,
            t2.complete_ratio * 100.0,
            t2.stray_spans,
            t.source,
            r.verification_ms
        );
        for (edge, n) in &t2.broken_edges {
            let share = t2.broken_share.get(edge).copied().unwrap_or(0.0) * 100.0;
            let _ = writeln!(s, "  broken  {edge}: {n} ({share:.1} %)");
        }
        for (span, n) in &t2.missing_spans {
            let _ = writeln!(s, "  missing {span}: {n}");
        }
        for (span, n) in &t2.orphans {
            let _ = writeln!(s, "  orphan  {span}: {n}");
        }
        for (p, n) in &t2.other_problems {
            let _ = writeln!(s, "  other   {p}: {n}");
        }
        for e in &t2.stray_examples {
            let _ = writeln!(s, "  stray   {e}");
        }
    }
    if let Some(a) = &r.critical_path {
        let _ = writeln!(
            s,
            "\ncritical path over {} scans, mean {:.1} ms (root span {:.1} ms); bottleneck {}",
            a.scans,
            a.mean_total_ms,
            a.root_mean_ms,
            a.bottleneck.as_deref().unwrap_or("-")
        );
        let mut by_service: Vec<_> = a.by_service.iter().collect();
        by_service.sort_by(|x, y| y.1.total_cmp(x.1));
        for (service, share) in by_service {
            let _ = writeln!(s, "  {service:<20} {:>5.1} %", share * 100.0);
        }
    }
    let _ = writeln!(s);
    for v in &r.expectations {
        let _ = writeln!(
            s,
            "{} {:<26} expected {:<10} got {:.4}",
            if v.passed { "PASS" } else { "FAIL" },
            v.name,
            v.expected,
            v.actual
        );
    }
    for e in &r.sample_errors {
        let _ = writeln!(s, "error: {e}");
    }
    let _ = writeln!(s, "{}", if r.passed { "PASSED" } else { "FAILED" });
    s
}
