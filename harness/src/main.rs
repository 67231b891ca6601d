//! `tracebench`: the one binary. `tracebench service all` runs the whole scan pipeline in this
//! process; `tracebench service <name>` runs one service of it; `tracebench run FILE` drives a
//! scenario and reports; `tracebench check FILE` validates one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tb_telemetry::spans::ConsumerRelation;
use tb_telemetry::{Exporter, Protocol, Sampling, TelemetryConfig};
use tracebench::infra::Env;
use tracebench::pipeline::{KafkaChoice, Pipeline, PipelineConfig, SERVICES};
use tracebench::run::{RunOptions, Services, SpanSource, run, summary};
use tracebench::scenario::{RawExporter, Scenario};
use tracebench::sink::client::TraceClient;

#[derive(Parser)]
#[command(
    name = "tracebench",
    version,
    about = "A testbench for distributed tracing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scan pipeline's services: `all`, or one of scan-api, worker, vision-api,
    /// llm-api, character-consumer, my-consumer.
    Service(Box<ServiceArgs>),
    /// Run a scenario: provision, start the pipeline, drive the load, report. Exit 0 when every
    /// expectation holds, 1 when one fails, 2 on errors.
    Run(RunArgs),
    /// Validate a scenario file without running it (exit 0 valid, 2 invalid).
    Check {
        /// The scenario file.
        file: PathBuf,
    },
    /// Render a run's `result.json` as one self-contained HTML page.
    Report {
        /// The `result.json` of a run.
        result: PathBuf,
        /// Where to write the HTML.
        #[arg(long)]
        html: PathBuf,
    },
    /// Run the trace sink standalone: OTLP in (gRPC and HTTP), a Tempo-shaped query API out.
    Sink {
        /// OTLP/gRPC listen address.
        #[arg(long, default_value = "127.0.0.1:4317")]
        grpc_addr: SocketAddr,
        /// OTLP/HTTP and query API listen address.
        #[arg(long, default_value = "127.0.0.1:4318")]
        http_addr: SocketAddr,
        /// Most spans kept; beyond it the oldest traces are evicted whole.
        #[arg(long, default_value_t = 1_000_000)]
        max_spans: usize,
    },
}

#[derive(Parser)]
struct RunArgs {
    /// The scenario file (`scenarios/smoke.yaml`).
    file: PathBuf,
    /// Directory for `result.json` and the services' log.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write a JUnit XML report (one test case per expectation) here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Where the services run: `in-process` (default) or `process` (each as its own child
    /// `tracebench service <name>`, always reaped).
    #[arg(long, value_enum, default_value = "in-process")]
    services: ServicesArg,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum SamplingArg {
    /// No SDK at all.
    Off,
    /// SDK installed, nothing sampled.
    AlwaysOff,
    /// Every trace sampled.
    AlwaysOn,
}

#[derive(Clone, Copy, ValueEnum)]
enum ServicesArg {
    /// Every service in this process.
    InProcess,
    /// Each service as a child process.
    Process,
}

#[derive(Clone, Copy, ValueEnum)]
enum RelationArg {
    Child,
    Link,
}

#[derive(Parser)]
struct ServiceArgs {
    /// `all` or a service name.
    name: String,
    /// RabbitMQ URL.
    #[arg(long, env = "TB_AMQP_URL", default_value = tb_messaging::amqp::DEFAULT_URL)]
    amqp_url: String,
    /// Kafka `bootstrap.servers`; without it, an embedded broker (only useful with `all`).
    #[arg(long, env = "TB_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// scan-api's listen address.
    #[arg(long, default_value = "127.0.0.1:8000")]
    scan_api_addr: SocketAddr,
    /// The Vision mock's listen address.
    #[arg(long, default_value = "127.0.0.1:8001")]
    vision_addr: SocketAddr,
    /// The LLM mock's listen address.
    #[arg(long, default_value = "127.0.0.1:8002")]
    llm_addr: SocketAddr,
    /// Vision API base URL for the worker (when the mock runs elsewhere).
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    vision_url: String,
    /// LLM API base URL for the worker (when the mock runs elsewhere).
    #[arg(long, default_value = "http://127.0.0.1:8002")]
    llm_url: String,
    /// Multiplies every simulated latency (0.01 turns the seed's 5 s into 50 ms).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Worker concurrency.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Sampling.
    #[arg(long, value_enum, default_value = "always-on")]
    sampling: SamplingArg,
    /// OTLP endpoint (gRPC); defaults to OTEL_EXPORTER_OTLP_ENDPOINT, then localhost:4317.
    #[arg(long, env = "TB_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// How consumer spans relate to their producers.
    #[arg(long, value_enum, default_value = "child")]
    relation: RelationArg,
    /// Take every service knob (latencies, faults, worker, tracing) from this scenario file;
    /// the address flags still apply. `tracebench run --services process` passes it.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// The task queue (default `scan.tasks`).
    #[arg(long)]
    queue: Option<String>,
}

fn scale(d: Duration, s: f64) -> Duration {
    d.mul_f64(s)
}

async fn service(args: ServiceArgs) -> anyhow::Result<()> {
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        anyhow::bail!("--time-scale must be a finite number > 0");
    }
    let services: Vec<&'static str> = if args.name == "all" {
        SERVICES.to_vec()
    } else {
        match SERVICES.iter().find(|s| **s == args.name) {
            Some(s) => vec![*s],
            None => anyhow::bail!(
                "unknown service {:?}; expected all or one of {SERVICES:?}",
                args.name
            ),
        }
    };
    let scenario = match &args.scenario {
        Some(file) => {
            Some(Scenario::load(file).map_err(|e| anyhow::anyhow!("scenario error: {e}"))?)
        }
        None => None,
    };
    let mut telemetry = TelemetryConfig {
        sampling: match args.sampling {
            SamplingArg::Off => Sampling::Off,
            SamplingArg::AlwaysOff => Sampling::AlwaysOff,
            SamplingArg::AlwaysOn => Sampling::AlwaysOn,
        },
        exporter: Exporter::Otlp {
            protocol: Protocol::Grpc,
            endpoint: args.otlp_endpoint.clone(),
            timeout: Duration::from_secs(10),
        },
        ..TelemetryConfig::default()
    };
    if let Some(s) = &scenario {
        telemetry.sampling = s.tracing.sampling;
        telemetry.batch = s.tracing.batch;
        if s.tracing.exporter == RawExporter::Discard {
            telemetry.exporter = Exporter::Discard;
        }
    }
    let guard = if let [one] = services.as_slice() {
        tb_telemetry::init(one, telemetry)
    } else {
        tb_telemetry::init_services(&services, telemetry)
    }
    .context("setting up telemetry")?;

    let mut config = PipelineConfig {
        services: services.clone(),
        amqp_url: args.amqp_url,
        kafka: args
            .kafka_brokers
            .map_or(KafkaChoice::Embedded, KafkaChoice::External),
        scan_api_addr: args.scan_api_addr,
        vision_addr: args.vision_addr,
        llm_addr: args.llm_addr,
        ..PipelineConfig::default()
    };
    config.vision.time_scale = args.time_scale;
    config.llm.time_scale = args.time_scale;
    config.worker.vision_url = args.vision_url;
    config.worker.llm_url = args.llm_url;
    config.worker.concurrency = args.concurrency;
    config.worker.prefetch = u16::try_from(args.concurrency * 2).unwrap_or(u16::MAX);
    config.worker.rule_match_work = scale(Duration::from_millis(500), args.time_scale);
    let relation = match args.relation {
        RelationArg::Child => ConsumerRelation::Child,
        RelationArg::Link => ConsumerRelation::Link,
    };
    config.worker.relation = relation;
    config.consumers.relation = relation;
    config.consumers.handle_latency = scale(Duration::from_millis(20), args.time_scale);
    config.consumers.grant_latency = scale(Duration::from_millis(30), args.time_scale);
    config.store_latency = scale(Duration::from_millis(20), args.time_scale);
    if let Some(s) = scenario {
        // The scenario's knobs, this process's addresses and brokers.
        let mut from = s.pipeline;
        from.services = config.services;
        from.amqp_url = config.amqp_url;
        from.kafka = config.kafka;
        from.scan_api_addr = config.scan_api_addr;
        from.vision_addr = config.vision_addr;
        from.llm_addr = config.llm_addr;
        from.worker.vision_url = config.worker.vision_url;
        from.worker.llm_url = config.worker.llm_url;
        config = from;
    }
    if let Some(queue) = args.queue {
        config.worker.queue = queue;
    }

    let mut pipeline = Pipeline::start(config)
        .await
        .context("starting the pipeline")?;
    tracing::info!(
        services = ?services,
        scan_api = ?pipeline.scan_api,
        kafka = %pipeline.kafka_brokers,
        "tracebench services running; Ctrl-C stops"
    );
    let failed = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        exit = pipeline.next_exit() => exit,
    };
    let errors = pipeline.shutdown().await;
    guard.flush().ok();
    if let Some((name, Err(e))) = failed {
        anyhow::bail!("{name} stopped: {e}");
    }
    if let Some((name, e)) = errors.first() {
        anyhow::bail!("{name} stopped with an error: {e}");
    }
    Ok(())
}

/// Exit code 2: usage, configuration or infrastructure error.
const ERROR: u8 = 2;

async fn run_scenario(args: RunArgs) -> anyhow::Result<ExitCode> {
    let scenario = match Scenario::load(&args.file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tracebench: scenario error: {e}");
            return Ok(ExitCode::from(ERROR));
        }
    };
    let env = Env::from_process();
    let otlp = scenario.tracing.exporter == RawExporter::Otlp;
    let infra = match tracebench::infra::provision(&scenario.infra, &env, otlp).await {
        Ok(i) => i,
        Err(e) => {
            eprintln!("tracebench: infrastructure: {e}");
            return Ok(ExitCode::from(ERROR));
        }
    };
    let log_path = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.join("services.log")
        }
        None => std::env::temp_dir().join(format!("tracebench-{}.log", scenario.name)),
    };
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    // The embedded sink receives the services' spans over OTLP/gRPC, exactly as Tempo would,
    // and the verifier reads them back from its store.
    let collect = scenario.tracing.sampling != Sampling::Off;
    let mut sink = None;
    let (exporter, spans) = match scenario.tracing.exporter {
        RawExporter::Embedded => {
            let any = SocketAddr::from(([127, 0, 0, 1], 0));
            let running = tracebench::sink::start(tracebench::sink::SinkConfig {
                grpc_addr: any,
                http_addr: any,
                ..tracebench::sink::SinkConfig::default()
            })
            .await
            .context("starting the embedded trace sink")?;
            let exporter = Exporter::Otlp {
                protocol: Protocol::Grpc,
                endpoint: Some(running.grpc_endpoint()),
                timeout: Duration::from_secs(10),
            };
            let spans = if collect {
                SpanSource::Store(running.store().clone())
            } else {
                SpanSource::None
            };
            sink = Some(running);
            (exporter, spans)
        }
        RawExporter::Discard => (Exporter::Discard, SpanSource::None),
        RawExporter::Otlp => {
            let exporter = Exporter::Otlp {
                protocol: Protocol::Grpc,
                endpoint: infra.otlp_endpoint.clone(),
                timeout: Duration::from_secs(10),
            };
            let spans = match infra.tempo_url.clone() {
                Some(url) if collect => SpanSource::Query(TraceClient::new(url)),
                _ => SpanSource::None,
            };
            (exporter, spans)
        }
    };
    // Child processes export where this process would.
    let child_otlp = match &exporter {
        Exporter::Otlp { endpoint, .. } => endpoint.clone(),
        _ => None,
    };
    let telemetry = TelemetryConfig {
        sampling: scenario.tracing.sampling,
        exporter,
        batch: scenario.tracing.batch,
        log_filter: Some("info".to_owned()),
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
    };
    let result = match run(&scenario, &infra, Some(&guard), spans, &options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tracebench: {e}");
            return Ok(ExitCode::from(ERROR));
        }
    };
    print!("{}", summary(&result));
    if let Some(dir) = &args.out {
        println!("wrote {}", dir.join("result.json").display());
    }
    if let Some(sink) = sink {
        let _ = sink.shutdown().await;
    }
    Ok(if result.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn report(result: &std::path::Path, html: &std::path::Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read(result).with_context(|| format!("reading {}", result.display()))?;
    let parsed: tracebench::run::RunResult = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a tracebench result.json", result.display()))?;
    let page = tracebench::report::html(&parsed)?;
    std::fs::write(html, page).with_context(|| format!("writing {}", html.display()))?;
    println!("wrote {}", html.display());
    Ok(ExitCode::SUCCESS)
}

async fn sink_standalone(
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    max_spans: usize,
) -> anyhow::Result<ExitCode> {
    let _guard = tb_telemetry::init(
        "tracebench-sink",
        TelemetryConfig {
            sampling: Sampling::Off,
            ..TelemetryConfig::default()
        },
    )
    .context("setting up logs")?;
    let config = tracebench::sink::SinkConfig {
        grpc_addr,
        http_addr,
        max_spans,
    };
    tracebench::sink::serve(config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("running the sink")?;
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Service(args) => service(*args).await.map(|()| ExitCode::SUCCESS),
        Command::Run(args) => run_scenario(args).await,
        Command::Report { result, html } => report(&result, &html),
        Command::Sink {
            grpc_addr,
            http_addr,
            max_spans,
        } => sink_standalone(grpc_addr, http_addr, max_spans).await,
        Command::Check { file } => Ok(match Scenario::load(&file) {
            Ok(s) => {
                println!("{}: ok ({})", file.display(), s.name);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tracebench: scenario error: {e}");
                ExitCode::from(ERROR)
            }
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tracebench: {e:#}");
            ExitCode::from(ERROR)
        }
    }
}
