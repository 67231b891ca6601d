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
use tracebench::run::{RunOptions, run, summary};
use tracebench::scenario::{RawExporter, Scenario};

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
}

#[derive(Parser)]
struct RunArgs {
    /// The scenario file (`scenarios/smoke.yaml`).
    file: PathBuf,
    /// Directory for `result.json` and the services' log.
    #[arg(long)]
    out: Option<PathBuf>,
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
    let telemetry = TelemetryConfig {
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
    let log_path = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.join("services.log")
        }
        None => std::env::temp_dir().join(format!("tracebench-{}.log", scenario.name)),
    };
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let memory = tb_telemetry::MemorySpans::default();
    let exporter = match scenario.tracing.exporter {
        RawExporter::Embedded => Exporter::Memory(memory.clone()),
        RawExporter::Discard => Exporter::Discard,
        RawExporter::Otlp => Exporter::Otlp {
            protocol: Protocol::Grpc,
            endpoint: scenario
                .infra
                .otlp_endpoint
                .clone()
                .or(env.otlp_endpoint.clone()),
            timeout: Duration::from_secs(10),
        },
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
    let options = RunOptions {
        out: args.out.clone(),
        quiet: args.quiet,
    };
    let result = match run(&scenario, &env, Some(&guard), &options).await {
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
    drop(memory);
    Ok(if result.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Service(args) => service(*args).await.map(|()| ExitCode::SUCCESS),
        Command::Run(args) => run_scenario(args).await,
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
