//! The harness's engine: everything between a validated scenario ([`tb_scenario::Scenario`])
//! and its result ([`tb_report::RunResult`], [`tb_report::overhead::OverheadResult`]).
//!
//! | module        | what                                                                   |
//! |---------------|------------------------------------------------------------------------|
//! | [`infra`]     | where RabbitMQ, Kafka and the trace backend come from (testcontainers where Docker answers) |
//! | [`children`]  | `--services process`: every service as a child, reaped on any exit, and the command line each gets |
//! | [`run`]       | one run as named steps: start → probe → drive → drain → verify → judge; the capacity search |
//! | [`overhead`]  | `tracebench overhead`: the ladder of arms, rounds of repeats, the sums  |
//! | [`machine`]   | what a run runs on, with the thread wake-up round trip measured        |
//! | [`usage`]     | CPU time and peak memory of a process, from `/proc`                    |
//!
//! The pieces it builds on are crates of their own: `tb-pipeline` (the system under test),
//! `tb-load` (the generator), `tb-traces` (spans, sink, query client), `tb-verify` (judging and
//! attribution) and `tb-faults` (the fault proxy).

pub mod children;
pub mod infra;
pub mod machine;
pub mod overhead;
pub mod run;
pub mod usage;
