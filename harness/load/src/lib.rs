//! The open-loop load generator. Arrivals are scheduled from the scenario's process (seeded),
//! and each request's latency is measured twice: from its *intended* send time (corrected for
//! coordinated omission) and from when it was actually sent (uncorrected). A request that has
//! to wait for a free connection is sent late, and only the corrected figure shows that wait.
//!
//! Pacing uses absolute deadlines: tokio's timer is ~1 ms coarse, so after each wake-up every
//! arrival already due is fired at once. The achieved rate therefore follows the schedule
//! exactly on average, at any rate the machine can sustain, instead of drifting by the timer's
//! rounding on every gap.
//!
//! | module       | what                                                                     |
//! |--------------|--------------------------------------------------------------------------|
//! | [`schedule`] | [`Arrival`] processes and the seeded [`Schedule`] of one run             |
//! | [`drive`]    | [`Target`], [`drive`](drive::drive) and its [`Plan`]; counters and report |
//! | [`tracker`]  | [`Tracker`]: end-to-end completions matched to the requests behind them  |
//! | [`stats`]    | HDR histograms, [`Percentiles`] and [`Latencies`]                        |
//!
//! The generator knows nothing of scans: a [`Target`] sends one request and may hand back an id
//! to follow; whoever sees the far end report it to the [`Tracker`].

pub mod drive;
pub mod schedule;
pub mod stats;
pub mod tracker;

pub use drive::{Failure, HttpGet, LATE, LoadReport, Plan, Requests, Target, drive};
pub use schedule::{Arrival, Load, Schedule};
pub use stats::{Latencies, Percentiles};
pub use tracker::{Followed, Tracker};
