//! The `tracebench` binary's library: the command line, the commands, and the services and
//! demo it runs. The harness itself lives in crates of its own: `tb-scenario` (scenario files),
//! `tb-runner` (provisioning, child processes, runs, the overhead ladder) and `tb-report`
//! (result schemas, renderers, compare).
//!
//! | module       | what                                                                   |
//! |--------------|------------------------------------------------------------------------|
//! | [`cli`]      | the command line as clap parses it                                     |
//! | [`commands`] | `run`, `overhead`, `report`, `compare`, `check`, `sink`                |
//! | [`service`]  | `tracebench service`: one service of the pipeline, or all, here        |
//! | [`traffic`]  | `tracebench load`: gentle open-loop traffic into a running scan-api    |
//! | [`demo`]     | `tracebench demo`: pipeline, load, sink and a page, in one process     |

pub mod cli;
pub mod commands;
pub mod demo;
pub mod service;
pub mod traffic;

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
