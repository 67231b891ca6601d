//! The commands that run a scenario or read results: `run`, `overhead`, `report`, `compare`,
//! `check` and `sink`. Each returns its [`Outcome`] or an error; `main` maps both to exit codes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tb_pipeline::SERVICES;
use tb_report::RunResult;
use tb_report::compare::Thresholds;
use tb_report::overhead::OverheadResult;
use tb_runner::infra::{Env, Provisioned};
use tb_runner::overhead::OverheadOptions;
use tb_runner::run::{RunOptions, Services, SpanSource, collector_proxy, run};
use tb_scenario::{RawExporter, Scenario};
use tb_telemetry::{Exporter, Protocol, Sampling, TelemetryConfig};
use tb_traces::TraceClient;
use tb_traces::sink::{RunningSink, SinkConfig};

use crate::cli::{RunArgs, ServicesArg};

/// How a command that judges came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every expectation (self-test, comparison) held.
    Passed,
    /// One did not.
    Failed,
}

impl Outcome {
    /// [`Outcome::Passed`] when `passed`.
    pub fn of(passed: bool) -> Self {
        if passed { Self::Passed } else { Self::Failed }
    }
}

/// Where a run's spans go and where the verifier reads them back.
struct Collection {
    exporter: Exporter,
    spans: SpanSource,
    /// The embedded sink, when the scenario uses it; shut down after the verdict.
    sink: Option<RunningSink>,
    /// The fault proxy the exporters go through, when the scenario takes the collector down.
    collector: Option<Arc<tb_faults::Proxy>>,
}

/// The embedded sink receives the services' spans over OTLP/gRPC, exactly as Tempo would, and
/// the verifier reads them back from its store; an external backend is read through its
/// query API.
async fn collection(scenario: &Scenario, infra: &Provisioned) -> anyhow::Result<Collection> {
    let collect = scenario.tracing.sampling != Sampling::Off;
    let otlp = |endpoint| Exporter::Otlp {
        protocol: Protocol::Grpc,
        endpoint,
        timeout: Duration::from_secs(10),
    };
    Ok(match scenario.tracing.exporter {
        RawExporter::Embedded => {
            let running = tb_traces::sink::start(SinkConfig::ephemeral())
                .await
                .context("starting the embedded trace sink")?;
            let spans = if collect {
                SpanSource::Store(running.store().clone())
            } else {
                SpanSource::None
            };
            let (endpoint, collector) =
                collector_proxy(&scenario.faults, &running.grpc_endpoint()).await?;
            Collection {
                exporter: otlp(Some(endpoint)),
                spans,
                sink: Some(running),
                collector,
            }
        }
        RawExporter::Discard => Collection {
            exporter: Exporter::Discard,
            spans: SpanSource::None,
            sink: None,
            collector: None,
        },
        RawExporter::Otlp => {
            let (endpoint, collector) = match &infra.otlp_endpoint {
                Some(e) => {
                    let (e, proxy) = collector_proxy(&scenario.faults, e).await?;
                    (Some(e), proxy)
                }
                None => (None, None),
            };
            Collection {
                exporter: otlp(endpoint),
                spans: match infra.tempo_url.clone() {
                    Some(url) if collect => SpanSource::Query(TraceClient::new(url)),
                    _ => SpanSource::None,
                },
                sink: None,
                collector,
            }
        }
    })
}

/// The services' log file: in the output directory, or a temporary file.
fn services_log(args: &RunArgs, scenario: &Scenario) -> anyhow::Result<(PathBuf, std::fs::File)> {
    let path = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.join("services.log")
        }
        None => std::env::temp_dir().join(format!("tracebench-{}.log", scenario.name)),
    };
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    Ok((path, file))
}

/// `tracebench run`: load → provision → collect → run → report.
///
/// # Errors
///
/// When the scenario is invalid, or infrastructure, telemetry or the run fails.
pub async fn run_scenario(args: RunArgs) -> anyhow::Result<Outcome> {
    let scenario = Scenario::load(&args.file).context("scenario error")?;
    if matches!(args.services, Some(ServicesArg::InProcess)) && scenario.kills_processes() {
        anyhow::bail!(
            "{}: faults.schedule has a worker_crash, which kills the worker process: it needs \
             --services process (the default for such a schedule)",
            args.file.display()
        );
    }
    let otlp = scenario.tracing.exporter == RawExporter::Otlp;
    let infra = tb_runner::infra::provision(&scenario.infra, &Env::from_process(), otlp)
        .await
        .context("infrastructure")?;
    let (log_path, log) = services_log(&args, &scenario)?;
    let collection = collection(&scenario, &infra).await?;
    // Child processes export where this process would.
    let child_otlp = match &collection.exporter {
        Exporter::Otlp { endpoint, .. } => endpoint.clone(),
        _ => None,
    };
    let telemetry = TelemetryConfig {
        log_filter: Some("info".to_owned()),
        ..scenario.tracing.telemetry(collection.exporter.clone())
    };
    let guard = tb_telemetry::init_services_with_writer(&SERVICES, telemetry, Arc::new(log))
        .context("setting up telemetry")?;
    if !args.quiet {
        eprintln!(
            "tracebench: running {} ({}); service logs in {}",
            scenario.name,
            args.file.display(),
            log_path.display()
        );
    }
    let services = match args.services {
        None if scenario.kills_processes() => ServicesArg::Process,
        None => ServicesArg::InProcess,
        Some(s) => s,
    };
    let services = match services {
        ServicesArg::InProcess => Services::InProcess,
        ServicesArg::Process => Services::Process {
            exe: std::env::current_exe().context("finding the tracebench executable")?,
            otlp_endpoint: child_otlp,
        },
    };
    let options = RunOptions {
        out: args.out.clone(),
        junit: args.junit.clone(),
        quiet: args.quiet,
        services,
        collector: collection.collector.clone(),
    };
    let result = run(&scenario, &infra, Some(&guard), collection.spans, &options).await?;
    print!("{}", tb_report::terminal::summary(&result));
    if let Some(dir) = &args.out {
        println!("wrote {}", dir.join("result.json").display());
    }
    crate::shut_down_telemetry(guard, collection.sink)
        .await
        .context("shutting down telemetry")?;
    Ok(Outcome::of(result.passed))
}

/// `tracebench report`: the HTML page of a `result.json` or an `overhead.json`.
///
/// # Errors
///
/// When the file cannot be read, is neither, or the page cannot be drawn or written.
pub fn report(result: &Path, html: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(result).with_context(|| format!("reading {}", result.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not JSON", result.display()))?;
    let page = if value.get("overhead_schema_version").is_some() {
        let parsed: OverheadResult = serde_json::from_value(value)
            .with_context(|| format!("{} is not a tracebench overhead.json", result.display()))?;
        tb_report::overhead::overhead_html(&parsed)?
    } else {
        let parsed: RunResult = serde_json::from_value(value)
            .with_context(|| format!("{} is not a tracebench result.json", result.display()))?;
        tb_report::html(&parsed)?
    };
    std::fs::write(html, page).with_context(|| format!("writing {}", html.display()))?;
    println!("wrote {}", html.display());
    Ok(())
}

/// `tracebench sink`: the embedded trace sink alone, until Ctrl-C.
///
/// # Errors
///
/// When its logs cannot be set up or it cannot listen.
pub async fn sink_standalone(config: SinkConfig) -> anyhow::Result<()> {
    let _guard = tb_telemetry::init(
        "tracebench-sink",
        TelemetryConfig {
            sampling: Sampling::Off,
            ..TelemetryConfig::default()
        },
    )
    .context("setting up logs")?;
    tb_traces::sink::serve(config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("running the sink")
}

/// `tracebench overhead`: provision, run the ladder, print the table.
///
/// # Errors
///
/// When the scenario is invalid, or infrastructure or the ladder fails.
pub async fn overhead(file: &Path, out: PathBuf, quiet: bool) -> anyhow::Result<Outcome> {
    let scenario = Scenario::load(file).context("scenario error")?;
    let infra = tb_runner::infra::provision(&scenario.infra, &Env::from_process(), false)
        .await
        .context("infrastructure")?;
    if !quiet {
        announce_overhead(&scenario, file, &out);
    }
    let options = OverheadOptions {
        file: file.to_owned(),
        out: out.clone(),
        exe: std::env::current_exe().context("finding the tracebench executable")?,
        quiet,
    };
    let result = tb_runner::overhead::run(&scenario, &infra, &options).await?;
    print!("{}", tb_report::overhead::overhead_summary(&result));
    println!("wrote {}", out.join("overhead.json").display());
    Ok(Outcome::of(result.self_test.iter().all(|t| t.passed)))
}

fn announce_overhead(scenario: &Scenario, file: &Path, out: &Path) {
    let plan = &scenario.overhead;
    eprintln!(
        "tracebench: overhead of {} ({}): {} arms × {} repeats; results and logs in {}",
        scenario.name,
        file.display(),
        plan.arms.len(),
        plan.repeats,
        out.display()
    );
}

/// `tracebench compare`: exit 0 when the candidate holds, 1 on a regression.
///
/// # Errors
///
/// When either file cannot be read or the two cannot be compared.
pub fn compare(
    base: &Path,
    candidate: &Path,
    thresholds: Thresholds,
    junit: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let comparison = tb_report::compare::compare(base, candidate, thresholds)?;
    print!("{}", tb_report::compare::render(&comparison));
    if let Some(path) = junit {
        std::fs::write(path, tb_report::compare::junit(&comparison))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Outcome::of(comparison.regressions().next().is_none()))
}

/// `tracebench check`: validates a scenario file.
///
/// # Errors
///
/// When it does not validate, naming the field.
pub fn check(file: &Path) -> anyhow::Result<()> {
    let scenario = Scenario::load(file).context("scenario error")?;
    println!("{}: ok ({})", file.display(), scenario.name);
    Ok(())
}
