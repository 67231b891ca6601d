//! The tracebench harness behind the `tracebench` binary: what a run is made of, between the
//! scenario file and the reports.
//!
//! | module        | what                                                                   |
//! |---------------|------------------------------------------------------------------------|
//! | [`cli`]       | the command line as clap parses it                                     |
//! | [`scenario`]  | scenario files in two stages: [`scenario::raw`] as written, [`scenario::plan`] validated |
//! | [`infra`]     | where RabbitMQ, Kafka and the trace backend come from (testcontainers where Docker answers) |
//! | [`service`]   | `tracebench service`, and the command line of each child process       |
//! | [`traffic`]   | `tracebench load`: gentle open-loop traffic into a running scan-api    |
//! | [`children`]  | `--services process`: every service as a child, reaped on any exit     |
//! | [`run`]       | one run as named steps: start → probe → drive → drain → verify → judge |
//! | [`overhead`]  | `tracebench overhead`: the ladder of arms, repeats and statistics     |
//! | [`demo`]      | `tracebench demo`: pipeline, load, sink and a page, in one process     |
//! | [`compare`]   | `tracebench compare`: a candidate's result against a base's            |
//! | [`report`]    | `result.json`'s schema (at the bottom), terminal, JUnit and HTML; the overhead table and page |
//! | [`usage`]     | CPU time and peak memory of a process, from `/proc`                    |
//!
//! The pieces it builds on are crates of their own: `tb-pipeline` (the system under test),
//! `tb-load` (the generator), `tb-traces` (spans, sink, query client) and `tb-verify`
//! (judging and attribution).

pub mod children;
pub mod cli;
pub mod compare;
pub mod demo;
pub mod infra;
pub mod machine;
pub mod overhead;
pub mod report;
pub mod run;
pub mod scenario;
pub mod service;
pub mod traffic;
pub mod usage;

/// A future that resolves when the process is asked to stop: Ctrl-C (SIGINT), or SIGTERM,
/// which is how `docker stop` and `docker compose down` ask (a container's first process has
/// no default action for it, so without a handler the stop waits out its grace period and
/// kills). Both handlers are registered by this call, not at the first poll: call it before
/// announcing that the process is up, so that a signal sent on seeing the announcement counts.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    async fn received(signal: Option<Signal>) {
        match signal {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let interrupt = signal(SignalKind::interrupt()).ok();
    let terminate = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            () = received(interrupt) => {}
            () = received(terminate) => {}
        }
    }
}

/// Shuts down the services' span providers, then the embedded sink they flush into. The other
/// way round, each provider's last flush waited out the exporter's 5 s timeout on a sink that
/// was gone. A provider's shutdown blocks, so it runs off the runtime's workers, which the sink
/// needs to answer.
///
/// # Errors
///
/// When dropping the providers panicked; the sink is shut down all the same.
pub async fn shut_down_telemetry(
    telemetry: tb_telemetry::TelemetryGuard,
    sink: Option<tb_traces::sink::RunningSink>,
) -> Result<(), tokio::task::JoinError> {
    let providers = tokio::task::spawn_blocking(move || drop(telemetry)).await;
    if let Some(sink) = sink {
        let _ = sink.shutdown().await;
    }
    providers
}

/// `path` opened for appending JSON log lines (created when missing), shared by the threads
/// that log: `--log-file` of `tracebench service` and `tracebench demo`.
///
/// # Errors
///
/// When the file cannot be opened, naming it.
pub(crate) fn append_log(path: &std::path::Path) -> anyhow::Result<std::sync::Arc<std::fs::File>> {
    use anyhow::Context as _;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the log file {}", path.display()))?;
    Ok(std::sync::Arc::new(file))
}
