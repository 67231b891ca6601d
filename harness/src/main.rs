//! `tracebench`: the one binary. `tracebench service all` runs the whole scan pipeline in this
//! process; `tracebench service <name>` runs one service of it.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tb_telemetry::spans::ConsumerRelation;
use tb_telemetry::{Exporter, Protocol, Sampling, TelemetryConfig};
use tracebench::pipeline::{KafkaChoice, Pipeline, PipelineConfig, SERVICES};

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
    Service(ServiceArgs),
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Service(args) => service(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracebench: {e:#}");
            ExitCode::from(2)
        }
    }
}
