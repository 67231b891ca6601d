//! Driving a target: the open-loop send loop, paced by absolute deadlines, and the drain that
//! waits for answers and end-to-end completions.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::schedule::{Load, Schedule};
use crate::stats::{Latencies, Pair};
use crate::tracker::{Followed, Pending, Tracker};

/// A send that starts this much after its intended time counts as late.
pub const LATE: Duration = Duration::from_millis(5);

/// What the generator drives: one request per arrival.
pub trait Target: Send + Sync + 'static {
    /// Why one request failed; its text goes into the report's sample errors.
    type Error: std::error::Error + Send + 'static;

    /// Sends request number `seq`. `Ok(Some(id))` is a success to follow end to end (a scan's
    /// task id); `Ok(None)` a success with nothing to follow.
    ///
    /// # Errors
    ///
    /// A failed request: refused, answered with an error, or unreadable.
    fn send(&self, seq: u64) -> impl Future<Output = Result<Option<String>, Self::Error>> + Send;

    /// How a failed request failed, for the counts ([`Requests::refused`],
    /// [`Requests::timed_out`]); every failure is [`Failure::Other`] unless the target says.
    fn classify(_error: &Self::Error) -> Failure {
        Failure::Other
    }
}

/// How one request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The server said "not now" (503, 429): a refusal to retry later, not a fault.
    Refused,
    /// No answer within the client's timeout.
    TimedOut,
    /// Anything else.
    Other,
}

/// Why an [`HttpGet`] request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpGetError {
    /// The request or its body failed in transport.
    #[error("GET: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server answered with a status other than 2xx.
    #[error("GET: {0}")]
    Status(reqwest::StatusCode),
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
    type Error = HttpGetError;

    async fn send(&self, _seq: u64) -> Result<Option<String>, HttpGetError> {
        let response = self.client.get(&self.url).send().await?;
        if !response.status().is_success() {
            return Err(HttpGetError::Status(response.status()));
        }
        response.bytes().await?;
        Ok(None)
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
    /// Of the failed, refusals (503, 429: the server is there but will not take it now).
    #[serde(default)]
    pub refused: u64,
    /// Of the failed, requests without an answer within the client's timeout.
    #[serde(default)]
    pub timed_out: u64,
    /// Sent more than [`LATE`] after their intended time.
    pub late: u64,
    /// Not sent because `max_in_flight` requests were pending.
    pub skipped: u64,
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

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    timed_out: AtomicU64,
    late: AtomicU64,
    skipped: AtomicU64,
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

/// What every request task shares with the send loop and the drain.
struct Shared {
    counters: Counters,
    http: Mutex<Pair>,
    errors: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    connections: Semaphore,
    tracker: Arc<Tracker>,
}

/// One arrival: its number, when it was due, and whether it falls in the measured window.
#[derive(Clone, Copy)]
struct Due {
    seq: u64,
    intended: Instant,
    measured: bool,
}

/// Calls `progress` about once a second.
struct Ticker<P> {
    progress: P,
    last: Instant,
}

impl<P: Fn(&Requests, usize)> Ticker<P> {
    fn tick(&mut self, shared: &Shared) {
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            (self.progress)(
                &snapshot(&shared.counters),
                shared.in_flight.load(Ordering::Relaxed),
            );
        }
    }
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
    let shared = Arc::new(Shared {
        counters: Counters::default(),
        http: Mutex::new(Pair::new()),
        errors: Mutex::new(Vec::new()),
        in_flight: AtomicUsize::new(0),
        connections: Semaphore::new(plan.load.connections),
        tracker,
    });
    let mut ticker = Ticker {
        progress,
        last: Instant::now(),
    };
    offer(&target, &plan, &shared, &mut ticker).await;
    drain(&shared, plan.drain, &mut ticker).await;
    report(&plan, &shared)
}

/// The open loop: fires every arrival of the schedule at its intended time (skipping it when
/// `max_in_flight` requests are pending), then waits for the schedule's end.
async fn offer<T: Target, P: Fn(&Requests, usize)>(
    target: &Arc<T>,
    plan: &Plan,
    shared: &Arc<Shared>,
    ticker: &mut Ticker<P>,
) {
    let schedule = Schedule::new(plan.load.arrival, plan.warmup, plan.duration, plan.seed);
    // A short lead so the first deadlines are not already past when the loop starts.
    let start = Instant::now() + Duration::from_millis(5);
    let measured_from = start + plan.warmup;
    for (seq, offset) in (0u64..).zip(schedule) {
        let intended = start + offset;
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        let arrival = Due {
            seq,
            intended,
            measured: intended >= measured_from,
        };
        ticker.tick(shared);
        if shared.in_flight.load(Ordering::Relaxed) >= plan.load.max_in_flight {
            if arrival.measured {
                shared.counters.skipped.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(send_one(target.clone(), shared.clone(), arrival));
    }
    let schedule_end = start + plan.warmup + plan.duration;
    if schedule_end > Instant::now() {
        tokio::time::sleep_until(schedule_end.into()).await;
    }
}

/// Sends one request once a connection is free, counts and times it, and hands an id to
/// follow to the tracker.
async fn send_one<T: Target>(target: Arc<T>, shared: Arc<Shared>, arrival: Due) {
    let permit = shared.connections.acquire().await;
    let sent = Instant::now();
    let result = target.send(arrival.seq).await;
    let done = Instant::now();
    drop(permit);
    if arrival.measured {
        let c = &shared.counters;
        c.sent.fetch_add(1, Ordering::Relaxed);
        if sent - arrival.intended > LATE {
            c.late.fetch_add(1, Ordering::Relaxed);
        }
        match &result {
            Ok(_) => {
                c.ok.fetch_add(1, Ordering::Relaxed);
                shared
                    .http
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record(done - arrival.intended, done - sent);
            }
            Err(e) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                match T::classify(e) {
                    Failure::Refused => c.refused.fetch_add(1, Ordering::Relaxed),
                    Failure::TimedOut => c.timed_out.fetch_add(1, Ordering::Relaxed),
                    Failure::Other => 0,
                };
                let mut errors = shared.errors.lock().unwrap_or_else(PoisonError::into_inner);
                if errors.len() < 5 {
                    errors.push(e.to_string());
                }
            }
        }
    }
    if let Ok(Some(id)) = result {
        shared.tracker.accept(
            id,
            Pending {
                intended: arrival.intended,
                sent,
                measured: arrival.measured,
            },
        );
    }
    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
}

/// Waits up to `limit` for answers first, then end-to-end completions.
async fn drain<P: Fn(&Requests, usize)>(shared: &Shared, limit: Duration, ticker: &mut Ticker<P>) {
    let deadline = Instant::now() + limit;
    while (shared.in_flight.load(Ordering::Relaxed) > 0 || shared.tracker.outstanding() > 0)
        && Instant::now() < deadline
    {
        ticker.tick(shared);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the measured window came to.
fn report(plan: &Plan, shared: &Shared) -> LoadReport {
    let target_count = Schedule::new(plan.load.arrival, plan.warmup, plan.duration, plan.seed)
        .filter(|t| *t >= plan.warmup)
        .count();
    let measured_secs = plan.duration.as_secs_f64();
    let requests = snapshot(&shared.counters);
    let (followed, end_to_end, histogram) = shared.tracker.results();
    let http = shared
        .http
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .latencies();
    let sample_errors = shared
        .errors
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
        refused: c.refused.load(Ordering::Relaxed),
        timed_out: c.timed_out.load(Ordering::Relaxed),
        late: c.late.load(Ordering::Relaxed),
        skipped: c.skipped.load(Ordering::Relaxed),
    }
}
