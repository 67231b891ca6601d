//! `tracebench service NAME`: one service of the pipeline, or `all`, in this process — and the
//! command line the harness gives each child in `--services process`, built and parsed here so
//! the two cannot drift apart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tb_consumers::Processed;
use tb_pipeline::config::local;
use tb_pipeline::{
    KafkaChoice, Pipeline, PipelineConfig, ProcessedLine, SERVICES, SpansLine, Wiring,
};
use tb_telemetry::spans::ConsumerRelation;
use tb_telemetry::{Exporter, Protocol, Sampling, TelemetryConfig, TelemetryGuard};
use tokio::sync::mpsc;

use tb_scenario::{Scenario, ServiceSpec};

/// The arguments of `tracebench service`.
#[derive(Debug, Parser)]
pub struct ServiceArgs {
    /// `all` or a service name.
    pub name: String,
    /// RabbitMQ URL.
    #[arg(long, env = "TB_AMQP_URL", default_value = tb_messaging::amqp::DEFAULT_URL)]
    pub amqp_url: String,
    /// Kafka `bootstrap.servers`; without it, an embedded broker (only useful with `all`).
    #[arg(long, env = "TB_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// scan-api's listen address.
    #[arg(long, default_value = local::SCAN_API_ADDR)]
    pub scan_api_addr: SocketAddr,
    /// The Vision mock's listen address.
    #[arg(long, default_value = local::VISION_ADDR)]
    pub vision_addr: SocketAddr,
    /// The LLM mock's listen address.
    #[arg(long, default_value = local::LLM_ADDR)]
    pub llm_addr: SocketAddr,
    /// Vision API base URL for the worker (when the mock runs elsewhere).
    #[arg(long, default_value = local::VISION_URL)]
    pub vision_url: String,
    /// LLM API base URL for the worker (when the mock runs elsewhere).
    #[arg(long, default_value = local::LLM_URL)]
    pub llm_url: String,
    /// Multiplies every simulated latency (0.01 turns the seed's 5 s into 50 ms; 0 simulates
    /// no time at all).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Worker concurrency.
    #[arg(long, default_value_t = tb_pipeline::seed::CONCURRENCY)]
    pub concurrency: usize,
    /// Sampling: `off`, `always_off`, `always_on` or `ratio:R` (R from 0 to 1), as in a
    /// scenario file's `tracing.sampler`.
    #[arg(long, default_value = "always_on", value_parser = parse_sampling)]
    pub sampling: Sampling,
    /// OTLP endpoint (gRPC); defaults to OTEL_EXPORTER_OTLP_ENDPOINT, then localhost:4317.
    #[arg(long, env = "TB_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// How consumer spans relate to their producers.
    #[arg(long, default_value = "child", value_parser = relation_parser())]
    pub relation: ConsumerRelation,
    /// Take every service knob (latencies, faults, worker, tracing) from this scenario file;
    /// the address flags still apply.
    #[arg(long, conflicts_with = "spec")]
    pub scenario: Option<PathBuf>,
    /// Take every service knob from this service spec (JSON), as `tracebench run --services
    /// process` and `tracebench overhead` hand them to their children (`spec.json` in the
    /// output directory); the address flags still apply.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// The task queue (default `scan.tasks`).
    #[arg(long)]
    pub queue: Option<String>,
    /// Write a JSON line `{"processed":{"consumer":…,"task_id":…}}` on stdout for every scan
    /// event a consumer finished, whatever the log level, and `{"spans":{…}}` with the span
    /// counts at exit (`tracebench run --services process` counts scans and lost spans by them).
    #[arg(long)]
    pub report_processed: bool,
    /// Async runtime worker threads. Default: 1 for a single service other than the worker (a
    /// process of its own beside five others: more threads only add hand-offs between them;
    /// with every service on one thread, the worker too, the pipeline spent 11 % less CPU per
    /// scan at 1000 scans/s); one per CPU for the worker, whose
    /// `rule_match` spins on its runtime thread, and for `all`. `TOKIO_WORKER_THREADS` also
    /// sets it when this flag is absent.
    #[arg(long)]
    pub worker_threads: Option<usize>,
    /// Where scans, rewards and histories live when no scenario says: `memory` (each process
    /// its own) or `postgres` (shared, kept across restarts).
    #[arg(long, default_value = "memory", value_parser = ["memory", "postgres"])]
    pub store: String,
    /// The PostgreSQL database of `--store postgres`.
    #[arg(long, env = tb_store::URL_ENV, default_value = tb_store::DEFAULT_URL)]
    pub postgres_url: String,
    /// The schema holding the tables with `--store postgres`.
    #[arg(long, default_value = tb_store::DEFAULT_SCHEMA)]
    pub postgres_schema: String,
    /// Also append the JSON log lines to this file (created when missing), for a shipper that
    /// tails files: the compose demo's collector (to Loki) and Fluent Bit (to Elasticsearch).
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Serve `POST /test`, the W3C trace-context test suite's protocol, on scan-api. It posts
    /// to URLs the caller names, so it takes loopback targets only and stays off unless asked.
    #[arg(long)]
    pub w3c_test_endpoint: bool,
}

/// `--sampling`'s value; the old `always-on` and `always-off` are read with a warning.
fn parse_sampling(text: &str) -> Result<Sampling, tb_telemetry::UnknownSampling> {
    if Sampling::is_old_spelling(text) {
        eprintln!(
            "tracebench: --sampling {text} is the old spelling; write {}",
            text.replace('-', "_")
        );
    }
    text.parse()
}

/// `--relation`'s values, listed in `--help`, parsed by [`ConsumerRelation`]'s own `FromStr`.
fn relation_parser() -> impl clap::builder::TypedValueParser<Value = ConsumerRelation> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(["child", "link"])
        .map(|s| s.parse().unwrap_or_default())
}

impl ServiceArgs {
    /// The runtime's worker threads, when this process should not take tokio's default.
    pub fn worker_threads(&self) -> Option<usize> {
        match self.worker_threads {
            Some(n) => Some(n.max(1)),
            None if self.name != "all"
                && self.name != tb_worker::SERVICE
                && std::env::var_os("TOKIO_WORKER_THREADS").is_none() =>
            {
                Some(1)
            }
            None => None,
        }
    }

    /// The services named: `all`, or one.
    pub fn services(&self) -> anyhow::Result<Vec<&'static str>> {
        if self.name == "all" {
            return Ok(SERVICES.to_vec());
        }
        match SERVICES.iter().find(|s| **s == self.name) {
            Some(s) => Ok(vec![*s]),
            None => anyhow::bail!(
                "unknown service {:?}; expected all or one of {SERVICES:?}",
                self.name
            ),
        }
    }

    /// Who talks to whom, from the flags.
    pub fn wiring(&self) -> Wiring {
        Wiring {
            amqp_url: self.amqp_url.clone(),
            kafka: self
                .kafka_brokers
                .clone()
                .map_or(KafkaChoice::Embedded, KafkaChoice::External),
            queue: self
                .queue
                .clone()
                .unwrap_or_else(|| tb_messaging::amqp::SCAN_TASKS.to_owned()),
            scan_api_addr: self.scan_api_addr,
            vision_addr: self.vision_addr,
            llm_addr: self.llm_addr,
            vision_url: self.vision_url.clone(),
            llm_url: self.llm_url.clone(),
            vision_via: None,
            llm_via: None,
        }
    }

    /// The service knobs from the flags, when no scenario gives them: the seed at the time
    /// scale, with the worker's concurrency and the consumer relation.
    fn knobs(&self) -> PipelineConfig {
        let mut config = PipelineConfig::seed(self.time_scale).with_relation(self.relation);
        config.worker.concurrency = self.concurrency;
        config.worker.prefetch = tb_pipeline::seed::prefetch(self.concurrency);
        if self.store == "postgres" {
            config.store = tb_store::StoreChoice::Postgres(tb_store::PgConfig {
                url: self.postgres_url.clone(),
                schema: self.postgres_schema.clone(),
            });
        }
        config
    }

    /// Telemetry for these services, under the plan's tracing when there is one.
    fn telemetry(&self, spec: Option<&ServiceSpec>) -> TelemetryConfig {
        let otlp = Exporter::Otlp {
            protocol: Protocol::Grpc,
            endpoint: self.otlp_endpoint.clone(),
            timeout: Duration::from_secs(10),
        };
        match spec {
            Some(spec) => spec.tracing.telemetry(otlp),
            None => TelemetryConfig {
                sampling: self.sampling,
                exporter: otlp,
                ..TelemetryConfig::default()
            },
        }
    }

    /// The plan's knobs: from `--spec`, from `--scenario`, or none (the flags').
    fn spec(&self) -> anyhow::Result<Option<ServiceSpec>> {
        if let Some(file) = &self.spec {
            return Ok(Some(ServiceSpec::read(file)?));
        }
        match &self.scenario {
            Some(file) => Ok(Some(ServiceSpec::of(
                &Scenario::load(file).context("scenario error")?,
            ))),
            None => Ok(None),
        }
    }
}

/// Runs the services `args` names until Ctrl-C or until one stops on its own.
///
/// # Errors
///
/// Fails on an unknown service, a bad scenario or time scale, telemetry that cannot be set up,
/// a pipeline that does not start, or a service that stopped with an error.
pub async fn serve(args: ServiceArgs) -> anyhow::Result<()> {
    if !(args.time_scale.is_finite() && args.time_scale >= 0.0) {
        anyhow::bail!("--time-scale must be a finite number >= 0");
    }
    let services = args.services()?;
    let spec = args.spec()?;
    let telemetry = args.telemetry(spec.as_ref());
    let guard = init_telemetry(&services, telemetry, args.log_file.as_deref())?;
    let mut config = match spec {
        Some(s) => s.pipeline,
        None => args.knobs(),
    };
    config.services = services.clone();
    config.wiring = args.wiring();
    config.w3c_test_endpoint = args.w3c_test_endpoint;

    let mut pipeline = Pipeline::start(config)
        .await
        .context("starting the pipeline")?;
    // Without a reader the receiver is dropped and the consumers' sends fail (and are ignored).
    let processed = pipeline.take_processed();
    let reporter = args
        .report_processed
        .then(|| tokio::spawn(report_processed(processed)));
    let stop = crate::shutdown_signal();
    tracing::info!(
        services = ?services,
        scan_api = ?pipeline.scan_api,
        kafka = %pipeline.kafka_brokers,
        "tracebench services running; Ctrl-C (or SIGTERM) stops"
    );
    let failed = tokio::select! {
        () = stop => None,
        exit = pipeline.next_exit() => exit,
    };
    let errors = pipeline.shutdown().await;
    if let Some(reporter) = reporter {
        // The consumers have stopped: the reporter ends once it wrote what is left.
        let _ = reporter.await;
    }
    guard.flush().ok();
    if args.report_processed {
        println!("{}", SpansLine::render(guard.span_counts().into()));
    }
    if let Some((name, Err(e))) = failed {
        anyhow::bail!("{name} stopped: {e}");
    }
    if let Some((name, e)) = errors.first() {
        anyhow::bail!("{name} stopped with an error: {e}");
    }
    Ok(())
}

fn init_telemetry(
    services: &[&'static str],
    telemetry: TelemetryConfig,
    log_file: Option<&Path>,
) -> anyhow::Result<TelemetryGuard> {
    use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt as _};
    let writer = match log_file {
        None => BoxMakeWriter::new(std::io::stdout),
        Some(path) => BoxMakeWriter::new(std::io::stdout.and(crate::append_log(path)?)),
    };
    if let [one] = services {
        tb_telemetry::init_with_writer(one, telemetry, writer)
    } else {
        tb_telemetry::init_services_with_writer(services, telemetry, writer)
    }
    .context("setting up telemetry")
}

/// Writes one [`ProcessedLine`] per event on stdout until the consumers stop.
async fn report_processed(mut processed: mpsc::UnboundedReceiver<Processed>) {
    use tokio::io::AsyncWriteExt as _;
    let mut stdout = tokio::io::stdout();
    while let Some(p) = processed.recv().await {
        let mut line = ProcessedLine::render(&p);
        line.push('\n');
        // Each line goes out whole and at once: the harness reads them as they come.
        if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_childs_command_line_parses_back_to_the_same_wiring() {
        let wiring = Wiring {
            amqp_url: "amqp://guest:guest@127.0.0.1:5673/%2f".to_owned(),
            kafka: KafkaChoice::External("127.0.0.1:9093".to_owned()),
            queue: "scan.tasks.run-1".to_owned(),
            scan_api_addr: SocketAddr::from(([127, 0, 0, 1], 18000)),
            vision_addr: SocketAddr::from(([127, 0, 0, 1], 18001)),
            llm_addr: SocketAddr::from(([127, 0, 0, 1], 18002)),
            vision_url: "http://127.0.0.1:18001".to_owned(),
            llm_url: "http://127.0.0.1:18002".to_owned(),
            vision_via: None,
            llm_via: None,
        };
        let line = tb_runner::children::command_line(
            "worker",
            &wiring,
            Path::new("run/spec.json"),
            Some("http://127.0.0.1:4317"),
        );
        // The first element stands where clap expects the executable's name.
        let args = ServiceArgs::try_parse_from(line).expect("parses");
        assert_eq!(args.name, "worker");
        assert_eq!(args.wiring(), wiring);
        assert_eq!(args.spec, Some(PathBuf::from("run/spec.json")));
        assert_eq!(args.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        assert!(args.report_processed);
    }

    #[test]
    fn a_lone_service_gets_one_runtime_thread_but_the_worker_and_all_keep_theirs() {
        let threads = |args: &[&str]| {
            ServiceArgs::try_parse_from(args)
                .expect("parses")
                .worker_threads()
        };
        if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
            assert_eq!(threads(&["service", "vision-api"]), Some(1));
        }
        assert_eq!(threads(&["service", "worker"]), None);
        assert_eq!(threads(&["service", "all"]), None);
        assert_eq!(
            threads(&["service", "all", "--worker-threads", "3"]),
            Some(3)
        );
    }
}
