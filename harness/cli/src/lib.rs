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
pub mod overhead;
pub mod report;
pub mod run;
pub mod scenario;
pub mod service;
pub mod traffic;
pub mod usage;

/// Resolves when the process is asked to stop: Ctrl-C (SIGINT), or SIGTERM, which is how
/// `docker stop` and `docker compose down` ask (a container's first process has no default
/// action for it, so without a handler the stop waits out its grace period and kills).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
