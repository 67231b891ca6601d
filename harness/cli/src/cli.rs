//! The `tracebench` command line, as clap parses it: in the library so that anything holding a
//! `tracebench` command line (the compose file's services, the tutorial) can be checked against
//! the parser the binary uses.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::demo::DemoArgs;
use crate::service::ServiceArgs;
use crate::traffic::LoadArgs;

/// `tracebench`: the command line.
#[derive(Parser)]
#[command(
    name = "tracebench",
    version,
    about = "A testbench for distributed tracing"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the scan pipeline's services: `all`, or one of scan-api, worker, vision-api,
    /// llm-api, character-consumer, my-consumer.
    Service(Box<ServiceArgs>),
    /// Keep gentle traffic flowing into a running scan-api (`tracebench service all`, the
    /// compose demo): open-loop `POST /scan`, a line of counts every interval. Joins no consumer
    /// group and follows nothing end to end; `tracebench run` is the measured, verified run.
    Load(LoadArgs),
    /// The demo without Docker: the pipeline, gentle load and the trace sink in this process,
    /// and a page (http://127.0.0.1:8080) with live rates, recent traces and their verdicts,
    /// waterfalls with each hop's edge and the critical path, and switches for faults.
    Demo(DemoArgs),
    /// Run a scenario: provision, start the pipeline, drive the load, report. Exit 0 when every
    /// expectation holds, 1 when one fails, 2 on errors.
    Run(RunArgs),
    /// Validate a scenario file without running it (exit 0 valid, 2 invalid).
    Check {
        /// The scenario file.
        file: PathBuf,
    },
    /// Measure what tracing costs: the scenario's `overhead` ladder, every service as its own
    /// process, arms interleaved and repeated; writes `overhead.json`. Exit 0 when done (and
    /// every self-test recovered its synthetic cost), 1 when a self-test missed, 2 on errors.
    Overhead {
        /// The scenario file (`scenarios/overhead.yaml`).
        file: PathBuf,
        /// Directory for `overhead.json`, the arms' scenario files and every repeat's logs.
        #[arg(long)]
        out: PathBuf,
        /// No progress output.
        #[arg(long)]
        quiet: bool,
    },
    /// Compare a candidate's `result.json` (or `overhead.json`) with a base's. Exit 0 when the
    /// candidate holds, 1 on a regression (each listed), 2 on errors.
    Compare {
        /// The base's result.
        base: PathBuf,
        /// The candidate's result.
        candidate: PathBuf,
        /// Largest drop in throughput, and rise in CPU per scan, allowed.
        #[arg(long, default_value = "5%", value_parser = tb_report::compare::parse_percent)]
        max_regression: f64,
        /// Largest rise in corrected end-to-end p99 allowed.
        #[arg(long, default_value = "25%", value_parser = tb_report::compare::parse_percent)]
        max_p99_regression: f64,
        /// Largest drop in the complete-trace ratio allowed, in points.
        #[arg(long, default_value = "1%", value_parser = tb_report::compare::parse_percent)]
        max_complete_drop: f64,
        /// Largest rise allowed in broken edges, stray spans, lost spans and lost scans.
        #[arg(long, default_value_t = 0)]
        max_count_increase: u64,
        /// Also write a JUnit XML report (one test case per check) here.
        #[arg(long)]
        junit: Option<PathBuf>,
    },
    /// Render a run's `result.json`, or an `overhead.json`, as one self-contained HTML page.
    Report {
        /// The `result.json` of a run, or the `overhead.json` of an overhead run.
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
        /// Most bytes kept (`512MiB`, `2GB`); beyond it the oldest traces are evicted whole.
        /// A span of the `sink` bench counted 396 bytes.
        #[arg(long, default_value = "1GiB", value_parser = tb_traces::sink::parse_size)]
        max_bytes: u64,
        /// Most spans kept, as well; no bound by default.
        #[arg(long)]
        max_spans: Option<u64>,
        /// Most spans one export request may carry; a larger one is refused (413 /
        /// `RESOURCE_EXHAUSTED`).
        #[arg(long, default_value_t = tb_traces::sink::store::DEFAULT_MAX_SPANS_PER_REQUEST)]
        max_spans_per_request: u64,
        /// Most attributes (and events, and links) a span may carry; a larger span is refused
        /// as a partial success.
        #[arg(long, default_value_t = tb_traces::sink::store::DEFAULT_MAX_ATTRIBUTES_PER_SPAN)]
        max_attributes_per_span: usize,
        /// Most export requests handled at once; more are refused (429 / `RESOURCE_EXHAUSTED`)
        /// for the exporter to retry.
        #[arg(long, default_value_t = tb_traces::sink::store::DEFAULT_MAX_CONCURRENT_REQUESTS)]
        max_concurrent_requests: usize,
    },
}

/// The arguments of `tracebench run`.
#[derive(Parser)]
pub struct RunArgs {
    /// The scenario file (`scenarios/smoke.yaml`).
    pub file: PathBuf,
    /// Directory for `result.json` and the services' log.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write a JUnit XML report (one test case per expectation) here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Where the services run: `in-process` (the default) or `process` (each as its own child
    /// `tracebench service <name>`, always reaped; the default when the fault schedule has a
    /// `worker_crash`, which kills one).
    #[arg(long, value_enum)]
    pub services: Option<ServicesArg>,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

/// `--services`: where a run's services run.
#[derive(Clone, Copy, ValueEnum)]
pub enum ServicesArg {
    /// Every service in this process.
    InProcess,
    /// Each service as a child process.
    Process,
}
