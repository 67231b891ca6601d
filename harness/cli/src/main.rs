//! `tracebench`: the one binary. `tracebench service all` runs the whole scan pipeline in this
//! process; `tracebench service <name>` runs one service of it; `tracebench run FILE` drives a
//! scenario and reports; `tracebench overhead FILE` measures what tracing costs;
//! `tracebench compare BASE CAND` gates regressions; `tracebench check FILE` validates a
//! scenario.
//!
//! Exit codes are decided here and nowhere else: 0 passed, 1 an expectation failed (or a
//! regression, or a failed self-test), 2 any usage, configuration or infrastructure error
//! (every `Err` that reaches [`main`]).

use std::process::ExitCode;

use clap::Parser as _;
use tb_report::compare::Thresholds;
use tb_traces::sink::{Limits, SinkConfig};
use tracebench::cli::{Cli, Command};
use tracebench::commands::{self, Outcome};

/// Exit code 1: the run finished and an expectation failed.
const FAILED: u8 = 1;
/// Exit code 2: usage, configuration or infrastructure error.
const ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    // The overhead bench's synthetic span cost is burnt as a worker thread goes idle, not in
    // the middle of its work (see `tb_telemetry::processors::pay_synthetic_cost`).
    runtime.on_thread_park(tb_telemetry::processors::pay_synthetic_cost);
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
    let done = |r: anyhow::Result<()>| r.map(|()| Outcome::Passed);
    let result = match cli.command {
        Command::Service(args) => done(tracebench::service::serve(*args).await),
        Command::Load(args) => done(tracebench::traffic::load(args).await),
        Command::Demo(args) => done(tracebench::demo::demo(args).await),
        Command::Run(args) => commands::run_scenario(args).await,
        Command::Report { result, html } => done(commands::report(&result, &html)),
        Command::Sink {
            grpc_addr,
            http_addr,
            max_bytes,
            max_spans,
            max_spans_per_request,
            max_attributes_per_span,
            max_concurrent_requests,
        } => done(
            commands::sink_standalone(SinkConfig {
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
        Command::Check { file } => done(commands::check(&file)),
        Command::Overhead { file, out, quiet } => commands::overhead(&file, out, quiet).await,
        Command::Compare {
            base,
            candidate,
            max_regression,
            max_p99_regression,
            max_complete_drop,
            max_count_increase,
            junit,
        } => commands::compare(
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
        Ok(Outcome::Passed) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(FAILED),
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
