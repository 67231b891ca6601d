//! `tracebench run`: provision what the scenario needs, start the pipeline, drive the load,
//! wait for every accepted scan to finish end to end, and judge the expectations.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tb_consumers::{CHARACTER, MY};
use tb_telemetry::{SpanCounts, TelemetryGuard};

use crate::infra::{Env, InfraError, InfraReport, provision};
use crate::load::{self, Followed, Latencies, Requests, Target, Tracker};
use crate::pipeline::{Pipeline, StartError};
use crate::scenario::Scenario;

/// Version of the `result.json` schema (see `scenarios/README.md`).
pub const SCHEMA_VERSION: u32 = 1;

/// How the harness runs a scenario (as opposed to what the scenario runs).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Where `result.json` and `services.log` go.
    pub out: Option<PathBuf>,
    /// No progress output.
    pub quiet: bool,
}

/// One expectation's verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySection {
    /// `POST /scan` until its 202.
    pub http: Latencies,
    /// `POST /scan` until both consumers processed the scan.
    pub end_to_end: Latencies,
}

/// `result.json`: a stable schema, documented in `scenarios/README.md`.
#[derive(Clone, Debug, PartialEq, Serialize)]
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
    /// Rate achieved (requests/s).
    pub throughput_rps: f64,
    /// Latencies in ms.
    pub latency: LatencySection,
    /// Span counts.
    pub spans: SpanSummary,
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
    /// The load generator's thread failed.
    #[error("load generator: {0}")]
    Generator(std::io::Error),
    /// Writing the output failed.
    #[error("writing {0}: {1}")]
    Output(PathBuf, std::io::Error),
}

/// `POST /scan` against scan-api.
struct ScanTarget {
    client: reqwest::Client,
    url: String,
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
            Some(id) => Ok(Some(id.to_owned())),
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
    verdicts
}

/// Runs `scenario`: provisions, starts the pipeline, drives it, judges.
///
/// `telemetry` is the process's telemetry (installed by the caller for the scenario's tracing
/// plan); its span counts go into the result.
///
/// # Errors
///
/// Fails when infrastructure is unavailable or the pipeline does not start.
pub async fn run(
    scenario: &Scenario,
    env: &Env,
    telemetry: Option<&TelemetryGuard>,
    options: &RunOptions,
) -> Result<RunResult, RunError> {
    let otlp = scenario.tracing.exporter == crate::scenario::RawExporter::Otlp;
    let infra = provision(&scenario.infra, env, otlp).await?;
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
    let mut pipeline = Pipeline::start(config).await?;
    let scan_api = pipeline.scan_api.ok_or_else(|| {
        RunError::Start(StartError::UnknownService(
            "scan-api did not start".to_owned(),
        ))
    })?;

    let tracker = Arc::new(Tracker::default());
    let mut processed = std::mem::replace(
        &mut pipeline.processed,
        tokio::sync::mpsc::unbounded_channel().1,
    );
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
    });
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

    let errors = pipeline.shutdown().await;
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
    let spans = match telemetry {
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
    let offered = report.requests.sent + report.requests.skipped;
    let expectations = judge(scenario, offered, &report.followed, &latency);
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
        spans,
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
    Ok(result)
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
        "requests  sent {}  ok {}  failed {}  late {}  skipped {}   {:.1}/s of {:.1}/s offered",
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
    for (name, l) in [
        ("http corrected", r.latency.http.corrected),
        ("http uncorrected", r.latency.http.uncorrected),
        ("e2e corrected", r.latency.end_to_end.corrected),
        ("e2e uncorrected", r.latency.end_to_end.uncorrected),
    ] {
        let _ = writeln!(
            s,
            "{name:<17}{:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>9.1}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
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
