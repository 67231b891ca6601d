//! The open-loop load generator. Arrivals are scheduled from the scenario's process (seeded),
//! and each request's latency is measured twice: from its *intended* send time (corrected for
//! coordinated omission) and from when it was actually sent (uncorrected). A request that has
//! to wait for a free connection is sent late, and only the corrected figure shows that wait.
//!
//! Pacing uses absolute deadlines: tokio's timer is ~1 ms coarse, so after each wake-up every
//! arrival already due is fired at once. The achieved rate therefore follows the schedule
//! exactly on average, at any rate the machine can sustain, instead of drifting by the timer's
//! rounding on every gap.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::scenario::{Arrival, Load};

/// A send that starts this much after its intended time counts as late.
pub const LATE: Duration = Duration::from_millis(5);

/// What the generator drives: one request per arrival.
pub trait Target: Send + Sync + 'static {
    /// Sends request number `seq`. `Ok(Some(id))` is a success to follow end to end (a scan's
    /// task id); `Ok(None)` a success with nothing to follow; `Err` a failure, described.
    fn send(&self, seq: u64) -> impl Future<Output = Result<Option<String>, String>> + Send;
}

/// `GET url` with a shared client: the plainest target, for the generator's own bench and
/// self-tests. Success is any 2xx with its body read (so the connection is reused).
#[derive(Debug)]
pub struct HttpGet {
    client: reqwest::Client,
    url: String,
}

impl HttpGet {
    /// A target GETting `url` over at most `connections` pooled connections.
    pub fn new(url: impl Into<String>, connections: usize) -> Self {
        Self {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(connections)
                .build()
                .unwrap_or_default(),
            url: url.into(),
        }
    }
}

impl Target for HttpGet {
    async fn send(&self, _seq: u64) -> Result<Option<String>, String> {
        match self.client.get(&self.url).send().await {
            Ok(r) if r.status().is_success() => {
                r.bytes().await.map_err(|e| e.to_string())?;
                Ok(None)
            }
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Arrival offsets from the start of the run, for `warmup + duration`.
///
/// Constant arrivals are at `n / rate` exactly (no accumulated rounding); Poisson arrivals have
/// exponential gaps; bursts and ramps are deterministic, the k-th arrival falling where the
/// integral of the rate curve reaches k (stepped in 1 ms slices, within which the rate is
/// taken as constant).
pub struct Schedule {
    arrival: Arrival,
    rng: StdRng,
    warmup: f64,
    duration: f64,
    end: f64,
    t: f64,
    n: u64,
}

/// Width of the slices a rate curve is integrated in.
const SLICE: f64 = 0.001;

impl Schedule {
    /// The schedule of `arrival` over `warmup + duration`, drawn from `seed`.
    pub fn new(arrival: Arrival, warmup: Duration, duration: Duration, seed: u64) -> Self {
        Self {
            arrival,
            rng: StdRng::seed_from_u64(seed),
            warmup: warmup.as_secs_f64(),
            duration: duration.as_secs_f64(),
            end: (warmup + duration).as_secs_f64(),
            t: 0.0,
            n: 0,
        }
    }

    /// The instantaneous rate at `t` seconds into the run.
    fn rate_at(&self, t: f64) -> f64 {
        match self.arrival {
            Arrival::Constant { rate } | Arrival::Poisson { rate } => rate,
            Arrival::Burst {
                base,
                peak,
                period,
                duty,
            } => {
                let period = period.as_secs_f64();
                if (t % period) < duty * period {
                    peak
                } else {
                    base
                }
            }
            Arrival::Ramp { from, to } => {
                let progress = ((t - self.warmup) / self.duration).clamp(0.0, 1.0);
                from + (to - from) * progress
            }
        }
    }

    /// The time after `t` at which the rate curve's integral has grown by `need`.
    fn advance(&self, mut t: f64, mut need: f64) -> Option<f64> {
        while t < self.end {
            let r = self.rate_at(t);
            if r > 0.0 && r * SLICE >= need {
                return Some(t + need / r);
            }
            need -= r * SLICE;
            t += SLICE;
        }
        None
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let at = match self.arrival {
            Arrival::Constant { rate } => {
                let at = self.n as f64 / rate;
                self.n += 1;
                at
            }
            Arrival::Poisson { rate } => {
                let at = self.t;
                self.t += Exp::new(rate).map_or(1.0 / rate, |exp| exp.sample(&mut self.rng));
                at
            }
            Arrival::Burst { .. } | Arrival::Ramp { .. } => {
                self.t = self.advance(self.t, 1.0)?;
                self.t
            }
        };
        (at < self.end).then(|| Duration::from_secs_f64(at))
    }
}

/// Percentiles of one latency histogram, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// Latency measured both ways.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    /// From the intended send time (coordinated-omission corrected).
    pub corrected: Percentiles,
    /// From the actual send time.
    pub uncorrected: Percentiles,
}

/// Two histograms in microseconds.
struct Pair {
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
}

impl Pair {
    fn new() -> Self {
        // Auto-resizing, 3 significant digits: 0.1 % resolution at any magnitude.
        let h = || Histogram::new(3).unwrap_or_else(|_| unreachable!("3 sigfigs is valid"));
        Self {
            corrected: h(),
            uncorrected: h(),
        }
    }

    fn record(&mut self, corrected: Duration, uncorrected: Duration) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        // `record` grows an auto-resizing histogram; `saturating_record` would clamp to its
        // current (initially tiny) range instead. It fails only past u64 range limits.
        let _ = self.corrected.record(us(corrected));
        let _ = self.uncorrected.record(us(uncorrected));
    }

    fn latencies(&self) -> Latencies {
        Latencies {
            corrected: Percentiles::of(&self.corrected),
            uncorrected: Percentiles::of(&self.uncorrected),
        }
    }
}

/// Request counters of the measured window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requests {
    /// Requests sent.
    pub sent: u64,
    /// Successful answers.
    pub ok: u64,
    /// Failed answers or transport errors.
    pub failed: u64,
    /// Sent more than [`LATE`] after their intended time.
    pub late: u64,
    /// Not sent because `max_in_flight` requests were pending.
    pub skipped: u64,
}

/// End-to-end completion of followed requests (scans).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Followed {
    /// Successful requests with an id to follow.
    pub accepted: u64,
    /// Of those, completed end to end.
    pub completed: u64,
    /// Of those, not completed when the drain ended: lost or too slow.
    pub lost: u64,
}

/// What a load run measured (the measured window only; warmup excluded).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LoadReport {
    /// Rate the schedule asked for over the measured window (requests/s).
    pub target_rps: f64,
    /// Rate served: successful answers to measured arrivals per measured second.
    pub throughput_rps: f64,
    /// Counters.
    pub requests: Requests,
    /// Followed requests.
    pub followed: Followed,
    /// Until the answer.
    pub http: Latencies,
    /// Until the end-to-end completion (followed requests only).
    pub end_to_end: Latencies,
    /// First failure messages, up to 5, for the report.
    pub sample_errors: Vec<String>,
    /// End-to-end corrected latency as `(upper bound ms, count)` buckets, log-spaced.
    pub histogram: Vec<(f64, u64)>,
}

/// Up to 40 log-spaced buckets covering `h`, as `(upper bound ms, count)`.
fn buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let (lo, hi) = (h.min().max(1) as f64, h.max().max(2) as f64);
    let n = 40;
    let step = (hi / lo).powf(1.0 / f64::from(n));
    let mut out = Vec::new();
    let mut from = 0u64;
    for i in 1..=n {
        let high = if i == n {
            h.max()
        } else {
            (lo * step.powi(i)) as u64
        };
        if high < from {
            continue;
        }
        out.push((high as f64 / 1000.0, h.count_between(from, high)));
        from = h.next_non_equivalent(high);
    }
    out
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    late: AtomicU64,
    skipped: AtomicU64,
}

pub(crate) struct Pending {
    pub(crate) intended: Instant,
    pub(crate) sent: Instant,
    pub(crate) measured: bool,
}

/// Matches end-to-end completions to the requests that started them.
#[derive(Default)]
pub struct Tracker {
    inner: Mutex<TrackerState>,
}

#[derive(Default)]
struct TrackerState {
    pending: HashMap<String, Pending>,
    /// Completions that arrived before the request's answer did.
    early: HashMap<String, Instant>,
    e2e: Option<Pair>,
    accepted: u64,
    completed: u64,
}

impl Tracker {
    fn state(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn accept(&self, id: String, pending: Pending) {
        let mut s = self.state();
        if pending.measured {
            s.accepted += 1;
        }
        match s.early.remove(&id) {
            Some(at) => s.finish(&pending, at),
            None => {
                s.pending.insert(id, pending);
            }
        }
    }

    /// Marks `id` complete end to end at `at`.
    pub fn complete(&self, id: &str, at: Instant) {
        let mut s = self.state();
        match s.pending.remove(id) {
            Some(p) => s.finish(&p, at),
            None => {
                s.early.insert(id.to_owned(), at);
            }
        }
    }

    /// Followed requests not yet complete.
    pub fn outstanding(&self) -> usize {
        self.state().pending.len()
    }
}

impl TrackerState {
    fn finish(&mut self, p: &Pending, at: Instant) {
        if p.measured {
            self.completed += 1;
            self.e2e
                .get_or_insert_with(Pair::new)
                .record(at - p.intended, at - p.sent);
        }
    }
}

/// What to drive and for how long.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    /// The offered load.
    pub load: Load,
    /// Load before measuring.
    pub warmup: Duration,
    /// Measured load.
    pub duration: Duration,
    /// Seed of the arrival process.
    pub seed: u64,
    /// Longest wait after the last arrival for answers and end-to-end completions.
    pub drain: Duration,
}

/// Drives `target` as `plan` says, then waits up to `plan.drain` for answers and end-to-end
/// completions (reported to `tracker` by the caller) to come in. `progress` is called about
/// once a second with the counters and the requests in flight.
pub async fn drive<T: Target>(
    target: Arc<T>,
    plan: Plan,
    tracker: Arc<Tracker>,
    progress: impl Fn(&Requests, usize) + Send,
) -> LoadReport {
    let Plan {
        load,
        warmup,
        duration,
        seed,
        drain,
    } = plan;
    let counters = Arc::new(Counters::default());
    let http = Arc::new(Mutex::new(Pair::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(Semaphore::new(load.connections));
    let schedule = Schedule::new(load.arrival, warmup, duration, seed);
    let target_count = Schedule::new(load.arrival, warmup, duration, seed)
        .filter(|t| *t >= warmup)
        .count();

    // A short lead so the first deadlines are not already past when the loop starts.
    let start = Instant::now() + Duration::from_millis(5);
    let measured_from = start + warmup;
    let mut last_progress = Instant::now();
    for (seq, offset) in (0u64..).zip(schedule) {
        let intended = start + offset;
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        let measured = intended >= measured_from;
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(&snapshot(&counters), in_flight.load(Ordering::Relaxed));
        }
        if in_flight.load(Ordering::Relaxed) >= load.max_in_flight {
            if measured {
                counters.skipped.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (target, counters, http, errors, in_flight, connections, tracker) = (
            target.clone(),
            counters.clone(),
            http.clone(),
            errors.clone(),
            in_flight.clone(),
            connections.clone(),
            tracker.clone(),
        );
        tokio::spawn(async move {
            let permit = connections.acquire_owned().await;
            let sent = Instant::now();
            let result = target.send(seq).await;
            let done = Instant::now();
            drop(permit);
            if measured {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                if sent - intended > LATE {
                    counters.late.fetch_add(1, Ordering::Relaxed);
                }
                match &result {
                    Ok(_) => {
                        counters.ok.fetch_add(1, Ordering::Relaxed);
                        http.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .record(done - intended, done - sent);
                    }
                    Err(e) => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        let mut errors = errors.lock().unwrap_or_else(PoisonError::into_inner);
                        if errors.len() < 5 {
                            errors.push(e.clone());
                        }
                    }
                }
            }
            if let Ok(Some(id)) = result {
                tracker.accept(
                    id,
                    Pending {
                        intended,
                        sent,
                        measured,
                    },
                );
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    let schedule_end = start + warmup + duration;
    if schedule_end > Instant::now() {
        tokio::time::sleep_until(schedule_end.into()).await;
    }
    let measured_secs = duration.as_secs_f64();

    // Drain: answers first, then end-to-end completions.
    let deadline = Instant::now() + drain;
    while (in_flight.load(Ordering::Relaxed) > 0 || tracker.outstanding() > 0)
        && Instant::now() < deadline
    {
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(&snapshot(&counters), in_flight.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let requests = snapshot(&counters);
    let state = tracker.state();
    let followed = Followed {
        accepted: state.accepted,
        completed: state.completed,
        lost: state.accepted - state.completed,
    };
    let end_to_end = state.e2e.as_ref().map(Pair::latencies).unwrap_or_default();
    let histogram = state
        .e2e
        .as_ref()
        .map(|p| buckets(&p.corrected))
        .unwrap_or_default();
    drop(state);
    let http = http
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .latencies();
    let sample_errors = errors
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    LoadReport {
        target_rps: target_count as f64 / measured_secs,
        throughput_rps: requests.ok as f64 / measured_secs,
        requests,
        followed,
        http,
        end_to_end,
        sample_errors,
        histogram,
    }
}

fn snapshot(c: &Counters) -> Requests {
    Requests {
        sent: c.sent.load(Ordering::Relaxed),
        ok: c.ok.load(Ordering::Relaxed),
        failed: c.failed.load(Ordering::Relaxed),
        late: c.late.load(Ordering::Relaxed),
        skipped: c.skipped.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(arrival: Arrival, secs: u64) -> usize {
        Schedule::new(arrival, Duration::ZERO, Duration::from_secs(secs), 7).count()
    }

    #[test]
    fn constant_and_poisson_schedules_offer_the_asked_rate() {
        assert_eq!(count(Arrival::Constant { rate: 100.0 }, 10), 1000);
        let poisson = count(Arrival::Poisson { rate: 1000.0 }, 10);
        // 10 000 expected; the Poisson count's σ is 100, so ±3 % is > 3σ.
        assert!((9_700..=10_300).contains(&poisson), "{poisson}");
    }

    #[test]
    fn burst_and_ramp_follow_their_rate_curves() {
        let burst = Arrival::Burst {
            base: 10.0,
            peak: 100.0,
            period: Duration::from_secs(1),
            duty: 0.5,
        };
        // Each second: 0.5 s at 100/s + 0.5 s at 10/s = 55.
        let n = count(burst, 10);
        assert!((545..=555).contains(&n), "{n}");
        // Average of a 0 → 100 ramp is 50/s.
        let n = count(
            Arrival::Ramp {
                from: 0.0,
                to: 100.0,
            },
            10,
        );
        assert!((490..=510).contains(&n), "{n}");
    }

    #[test]
    fn schedules_are_reproducible_under_a_seed() {
        let a: Vec<_> = Schedule::new(
            Arrival::Poisson { rate: 50.0 },
            Duration::ZERO,
            Duration::from_secs(2),
            3,
        )
        .collect();
        let b: Vec<_> = Schedule::new(
            Arrival::Poisson { rate: 50.0 },
            Duration::ZERO,
            Duration::from_secs(2),
            3,
        )
        .collect();
        let c: Vec<_> = Schedule::new(
            Arrival::Poisson { rate: 50.0 },
            Duration::ZERO,
            Duration::from_secs(2),
            4,
        )
        .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
