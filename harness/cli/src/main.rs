//! `tracebench`: the one binary. `tracebench service all` runs the whole scan pipeline in this
//! process; `tracebench service <name>` runs one service of it; `tracebench run FILE` drives a
//! scenario and reports; `tracebench overhead FILE` measures what tracing costs;
//! `tracebench compare BASE CAND` gates regressions; `tracebench check FILE` validates a
//! scenario.
//!
//! Exit codes are decided here and nowhere else: 0 passed, 1 an expectation failed (or a
//! regression, or a failed self-test), 2 any usage, configuration or infrastructure error
//! (every `Err` that reaches [`main`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use tb_pipeline::SERVICES;
use tb_telemetry::{Exporter, Protocol, Sampling, TelemetryConfig};
use tb_traces::TraceClient;
use tb_traces::sink::{Limits, RunningSink, SinkConfig};
use tracebench::cli::{Cli, Command, RunArgs, ServicesArg};
use tracebench::compare::Thresholds;
use tracebench::infra::{Env, Provisioned};
use tracebench::overhead::OverheadOptions;
use tracebench::overhead::schema::OverheadResult;
use tracebench::report::RunResult;
use tracebench::run::{RunOptions, Services, SpanSource, collector_proxy, run};
use tracebench::scenario::{RawExporter, Scenario};

/// Exit code 1: the run finished and an expectation failed.
const FAILED: u8 = 1;
/// Exit code 2: usage, configuration or infrastructure error.
const ERROR: u8 = 2;

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
async fn run_scenario(args: RunArgs) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(&args.file).context("scenario error")?;
    if matches!(args.services, Some(ServicesArg::InProcess)) && scenario.kills_processes() {
        anyhow::bail!(
            "{}: faults.schedule has a worker_crash, which kills the worker process: it needs \
             --services process (the default for such a schedule)",
            args.file.display()
        );
    }
    let otlp = scenario.tracing.exporter == RawExporter::Otlp;
    let infra = tracebench::infra::provision(&scenario.infra, &Env::from_process(), otlp)
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
        sampling: scenario.tracing.sampling,
        exporter: collection.exporter.clone(),
        batch: scenario.tracing.batch,
        log_filter: Some("info".to_owned()),
        synthetic_span_cost: scenario.tracing.synthetic_span_cost,
        ..TelemetryConfig::default()
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
            scenario: args.file.clone(),
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
    print!("{}", tracebench::report::summary(&result));
    if let Some(dir) = &args.out {
        println!("wrote {}", dir.join("result.json").display());
    }
    tracebench::shut_down_telemetry(guard, collection.sink)
        .await
        .context("shutting down telemetry")?;
    Ok(if result.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FAILED)
    })
}

fn report(result: &Path, html: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(result).with_context(|| format!("reading {}", result.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not JSON", result.display()))?;
    let page = if value.get("overhead_schema_version").is_some() {
        let parsed: OverheadResult = serde_json::from_value(value)
            .with_context(|| format!("{} is not a tracebench overhead.json", result.display()))?;
        tracebench::report::overhead::overhead_html(&parsed)?
    } else {
        let parsed: RunResult = serde_json::from_value(value)
            .with_context(|| format!("{} is not a tracebench result.json", result.display()))?;
        tracebench::report::html(&parsed)?
    };
    std::fs::write(html, page).with_context(|| format!("writing {}", html.display()))?;
    println!("wrote {}", html.display());
    Ok(())
}

async fn sink_standalone(config: SinkConfig) -> anyhow::Result<()> {
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
async fn overhead(file: &Path, out: PathBuf, quiet: bool) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(file).context("scenario error")?;
    let infra = tracebench::infra::provision(&scenario.infra, &Env::from_process(), false)
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
    let result = tracebench::overhead::run(&scenario, &infra, &options).await?;
    print!(
        "{}",
        tracebench::report::overhead::overhead_summary(&result)
    );
    println!("wrote {}", out.join("overhead.json").display());
    Ok(if result.self_test.iter().all(|t| t.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FAILED)
    })
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
fn compare(
    base: &Path,
    candidate: &Path,
    thresholds: Thresholds,
    junit: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let comparison = tracebench::compare::compare(base, candidate, thresholds)?;
    print!("{}", tracebench::compare::render(&comparison));
    if let Some(path) = junit {
        std::fs::write(path, tracebench::compare::junit(&comparison))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if comparison.regressions().next().is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FAILED)
    })
}

fn check(file: &Path) -> anyhow::Result<()> {
    let scenario = Scenario::load(file).context("scenario error")?;
    println!("{}: ok ({})", file.display(), scenario.name);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    // One service in a process of its own: one worker thread, unless TOKIO_WORKER_THREADS or
    // --worker-threads says otherwise (see `ServiceArgs::worker_threads`).
    if let Command::Service(args) = &cli.command
        && let Some(n) = args.worker_threads()
    {
        runtime.worker_threads(n);
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(dispatch(cli)),
        Err(e) => {
            eprintln!("tracebench: starting the async runtime: {e}");
            ExitCode::from(ERROR)
        }
    }
}

async fn dispatch(cli: Cli) -> ExitCode {
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Command::Service(args) => done(tracebench::service::serve(*args).await),
        Command::Load(args) => done(tracebench::traffic::load(args).await),
        Command::Demo(args) => done(tracebench::demo::demo(args).await),
        Command::Run(args) => run_scenario(args).await,
        Command::Report { result, html } => done(report(&result, &html)),
        Command::Sink {
            grpc_addr,
            http_addr,
            max_bytes,
            max_spans,
            max_spans_per_request,
            max_attributes_per_span,
            max_concurrent_requests,
        } => done(
            sink_standalone(SinkConfig {
                grpc_addr,
                http_addr,
                limits: Limits {
                    max_bytes,
                    max_spans: max_spans.unwrap_or(u64::MAX),
                    max_spans_per_request,
                    max_attributes_per_span,
                    max_concurrent_requests,
                },
            })
            .await,
        ),
        Command::Check { file } => done(check(&file)),
        Command::Overhead { file, out, quiet } => overhead(&file, out, quiet).await,
        Command::Compare {
            base,
            candidate,
            max_regression,
            max_p99_regression,
            max_complete_drop,
            max_count_increase,
            junit,
        } => compare(
            &base,
            &candidate,
            Thresholds {
                max_regression,
                max_p99_regression,
                max_complete_drop,
                max_count_increase,
            },
            junit.as_deref(),
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tracebench: {}", describe(&e));
            ExitCode::from(ERROR)
        }
    }
}

/// An error and its causes on one line, each cause said once: some errors repeat their
/// source in their own message (`pipeline: kafka: …`), others leave it to the chain.
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !previous.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        previous = text;
    }
    out
}
