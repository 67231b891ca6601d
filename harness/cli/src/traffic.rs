//! `tracebench load`: gentle, open-loop traffic into a scan-api that is already running (the
//! compose demo's `load` service, a pipeline started with `tracebench service all`).
//!
//! It is the run's generator ([`tb_load::drive`]) pointed at a URL, in rounds of `--every`, with
//! a line of counts after each: nothing is followed end to end and no scan is remembered, so it
//! can run for days in constant memory. Within a round arrivals are open-loop; between rounds
//! it waits for the round's last answers (at most the request timeout), so a scan-api that
//! stops answering sees a pause, not a pile of requests. It joins no consumer group, so it never takes records
//! from the pipeline it feeds. Measuring and verifying is `tracebench run`'s job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tb_load::{Arrival, Load, LoadReport, Plan, Requests, Tracker};

use tb_runner::run::target::{REQUEST_TIMEOUT, ScanTarget};

/// The arguments of `tracebench load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// scan-api's `POST /scan` URL.
    #[arg(long, default_value = "http://127.0.0.1:8000/scan")]
    pub url: String,
    /// Scans per second offered.
    #[arg(long, default_value_t = 2.0, value_parser = rate)]
    pub rate: f64,
    /// How arrivals are spaced.
    #[arg(long, value_enum, default_value = "poisson")]
    pub arrival: ArrivalArg,
    /// Stop after this long (`90s`, `10m`); until interrupted when absent.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// A line of counts this often.
    #[arg(long, default_value = "10s", value_parser = every)]
    pub every: Duration,
    /// Seed of the arrival process (each round draws from the next one).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Requests pending at most; an arrival beyond it is skipped, and counted.
    #[arg(long, default_value_t = 64)]
    pub max_in_flight: usize,
}

/// `--arrival`'s values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ArrivalArg {
    /// Exponential gaps: independent users.
    Poisson,
    /// Evenly spaced.
    Constant,
}

/// `--rate`: a finite number of scans per second above zero.
fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("`{text}` is not a rate above 0 (scans per second)")),
    }
}

/// `--every`: a duration of at least a second (a line per arrival helps nobody).
fn every(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d >= Duration::from_secs(1) => Ok(d),
        Ok(_) => Err(format!("`{text}` is shorter than 1s")),
        Err(e) => Err(e.to_string()),
    }
}

impl LoadArgs {
    fn plan(&self, round: u64, window: Duration) -> Plan {
        let arrival = match self.arrival {
            ArrivalArg::Poisson => Arrival::Poisson { rate: self.rate },
            ArrivalArg::Constant => Arrival::Constant { rate: self.rate },
        };
        let in_flight = self.max_in_flight.max(1);
        Plan {
            load: Load {
                arrival,
                max_in_flight: in_flight,
                connections: in_flight,
            },
            warmup: Duration::ZERO,
            duration: window,
            seed: self.seed.wrapping_add(round),
            // Every answer of the round is counted in it: nothing is followed, so the drain
            // ends as soon as the last answer is in (or timed out).
            drain: REQUEST_TIMEOUT,
        }
    }
}

/// Runs `tracebench load` until `--duration` has passed or the process is told to stop
/// (Ctrl-C, SIGTERM), printing a line per round and the totals at the end.
///
/// # Errors
///
/// None today: a refused or failed request is counted, never fatal, so that the feed outlives a
/// restart of what it feeds.
pub async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let stop = crate::shutdown_signal();
    println!(
        "tracebench load: {} scans/s ({:?}) into {}, a line every {}",
        args.rate,
        args.arrival,
        args.url,
        humantime::format_duration(args.every)
    );
    feed(&args, stop, |line| println!("{line}")).await;
    Ok(())
}

/// Drives rounds until `args.duration` has passed or `stop` resolves; hands `say` a line per
/// round and one with the totals of the rounds that finished, which it returns.
async fn feed(
    args: &LoadArgs,
    stop: impl Future<Output = ()>,
    mut say: impl FnMut(&str),
) -> Requests {
    let target = Arc::new(ScanTarget::at(
        args.url.clone(),
        args.max_in_flight.max(1),
        false,
    ));
    let tracker = Arc::new(Tracker::default());
    let started = Instant::now();
    let mut totals = Requests::default();
    // The rounds that finished: a round cut short by `stop` is not counted.
    let mut counted = Duration::ZERO;
    tokio::pin!(stop);
    for round in 0u64.. {
        // Rounds tile the planned time exactly; the drain between them is not offered load.
        let window = match args.duration {
            Some(total) => match total.saturating_sub(args.every * round as u32) {
                left if left.is_zero() => break,
                left => left.min(args.every),
            },
            None => args.every,
        };
        let plan = args.plan(round, window);
        let report = tokio::select! {
            report = tb_load::drive(target.clone(), plan, tracker.clone(), |_, _| {}) => report,
            () = &mut stop => break,
        };
        add(&mut totals, &report.requests);
        counted += window;
        say(&round_line(started.elapsed(), &report));
    }
    say(&totals_line(counted, &totals));
    totals
}

fn add(totals: &mut Requests, r: &Requests) {
    totals.sent += r.sent;
    totals.ok += r.ok;
    totals.failed += r.failed;
    totals.refused += r.refused;
    totals.timed_out += r.timed_out;
    totals.late += r.late;
    totals.skipped += r.skipped;
}

/// `at 10s: 21 sent, 21 accepted, 0 refused, 0 timed out, 0 failed, 0 skipped; POST /scan p50
/// 3.1 ms, p99 8.4 ms`, and the first error of the round when there was one.
fn round_line(at: Duration, report: &LoadReport) -> String {
    let r = &report.requests;
    let http = &report.http.corrected;
    let mut line = format!(
        "at {}: {}; POST /scan p50 {:.1} ms, p99 {:.1} ms",
        humantime::format_duration(Duration::from_secs(at.as_secs())),
        counts(r),
        http.p50,
        http.p99,
    );
    if let Some(e) = report.sample_errors.first() {
        line.push_str("; e.g. ");
        line.push_str(e);
    }
    line
}

fn totals_line(rounds: Duration, r: &Requests) -> String {
    format!(
        "total over {} of rounds: {}",
        humantime::format_duration(rounds),
        counts(r)
    )
}

fn counts(r: &Requests) -> String {
    format!(
        "{} sent, {} accepted, {} refused, {} timed out, {} failed, {} skipped",
        r.sent,
        r.ok,
        r.refused,
        r.timed_out,
        r.failed.saturating_sub(r.refused + r.timed_out),
        r.skipped
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<LoadArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["tracebench", "load"], args].concat())?;
        match cli.command {
            Command::Load(args) => Ok(args),
            _ => unreachable!("`load` parses as Command::Load"),
        }
    }

    #[test]
    fn the_defaults_are_a_gentle_poisson_feed_into_the_local_scan_api() {
        let args = parse(&[]).expect("parses");
        assert_eq!(args.url, "http://127.0.0.1:8000/scan");
        assert_eq!(args.rate, 2.0);
        assert_eq!(args.arrival, ArrivalArg::Poisson);
        assert_eq!(args.duration, None);
        assert_eq!(args.every, Duration::from_secs(10));
    }

    #[test]
    fn a_rate_of_zero_or_a_sub_second_interval_is_refused_by_name() {
        for bad in [
            &["--rate", "0"][..],
            &["--rate=-1"],
            &["--rate", "NaN"],
            &["--every", "10ms"],
        ] {
            let e = parse(bad).expect_err("refused").to_string();
            let flag = bad[0].split('=').next().unwrap_or_default();
            assert!(e.contains(flag), "{bad:?}: {e}");
        }
    }

    #[test]
    fn each_round_draws_from_its_own_seed_and_counts_every_answer() {
        let args = parse(&["--rate", "5", "--arrival", "constant", "--seed", "7"]).expect("parses");
        let plan = args.plan(3, Duration::from_secs(10));
        assert_eq!(plan.seed, 10);
        assert_eq!(plan.load.arrival, Arrival::Constant { rate: 5.0 });
        assert_eq!(plan.warmup, Duration::ZERO);
        assert_eq!(plan.drain, REQUEST_TIMEOUT);
    }

    #[test]
    fn failures_are_split_into_refused_timed_out_and_the_rest() {
        let r = Requests {
            sent: 10,
            ok: 6,
            failed: 4,
            refused: 2,
            timed_out: 1,
            late: 0,
            skipped: 3,
        };
        assert_eq!(
            counts(&r),
            "10 sent, 6 accepted, 2 refused, 1 timed out, 1 failed, 3 skipped"
        );
    }

    /// A scan-api stand-in: 202 with a task id for every odd request, 503 for every even one.
    async fn scan_api() -> (String, Arc<std::sync::atomic::AtomicU64>) {
        use std::sync::atomic::{AtomicU64, Ordering};
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        let app = axum::Router::new().route(
            "/scan",
            axum::routing::post(move || {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                async move {
                    if n.is_multiple_of(2) {
                        (
                            axum::http::StatusCode::ACCEPTED,
                            r#"{"task_id":"t","trace_id":"x"}"#,
                        )
                    } else {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            r#"{"error":"busy"}"#,
                        )
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = format!("http://{}/scan", listener.local_addr().expect("bound"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    #[tokio::test]
    async fn a_feed_offers_its_rate_for_its_duration_and_counts_refusals() {
        let (url, seen) = scan_api().await;
        let args = parse(&[
            "--url",
            &url,
            "--rate",
            "20",
            "--arrival",
            "constant",
            "--duration",
            "2s",
            "--every",
            "1s",
        ])
        .expect("parses");
        let mut lines = Vec::new();
        let totals = feed(&args, std::future::pending(), |l| lines.push(l.to_owned())).await;
        let served = seen.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(totals.sent, 40, "{lines:?}");
        assert_eq!(served, 40);
        assert_eq!((totals.ok, totals.refused, totals.failed), (20, 20, 20));
        assert_eq!(lines.len(), 3, "two rounds and the totals: {lines:?}");
        assert!(
            lines[2].starts_with("total over 2s of rounds: 40 sent, 20 accepted, 20 refused"),
            "{lines:?}"
        );
    }

    #[tokio::test]
    async fn a_feed_stops_when_told_and_still_prints_its_totals() {
        let (url, _) = scan_api().await;
        let args = parse(&["--url", &url, "--rate", "50"]).expect("parses");
        let stop = tokio::time::sleep(Duration::from_millis(300));
        let mut lines = Vec::new();
        let started = Instant::now();
        let totals = feed(&args, stop, |l| lines.push(l.to_owned())).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no duration, stopped by the signal"
        );
        assert_eq!(totals, Requests::default(), "the cut round is not counted");
        assert_eq!(
            lines,
            [
                "total over 0s of rounds: 0 sent, 0 accepted, 0 refused, 0 timed out, 0 failed, 0 skipped"
            ]
        );
    }
}
