//! Simulated waits last what they say: never less, and far less than the async timer's
//! millisecond more. The precise error is measured in `benches/sim.rs`; this test holds the
//! bound that makes sub-millisecond latencies meaningful at all.

use std::time::{Duration, Instant};

/// The elapsed times of `n` waits of `d`, one after another, sorted.
async fn elapsed(d: Duration, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        tb_sim::wait(d).await;
        out.push(start.elapsed());
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_millisecond_waits_are_never_early_and_far_from_the_timers_millisecond() {
    let d = Duration::from_micros(50);
    let times = elapsed(d, 400).await;
    let median = times[times.len() / 2];
    let p90 = times[times.len() * 9 / 10];
    eprintln!(
        "wait(50 µs): min {:?}, median {median:?}, p90 {p90:?}",
        times[0]
    );
    assert!(times[0] >= d, "a wait ended early: {:?}", times[0]);
    // tokio::time::sleep(50 µs) takes ≥ 1 ms; a median error above 200 µs would mean the
    // waits are not precise at all.
    assert!(
        median < d + Duration::from_micros(200),
        "median {median:?} for a 50 µs wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_wait_returns_at_once() {
    let times = elapsed(Duration::ZERO, 1000).await;
    let median = times[times.len() / 2];
    assert!(median < Duration::from_micros(5), "median {median:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_waits_each_end_after_their_own_duration() {
    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            tokio::spawn(async move {
                let d = Duration::from_micros(20 + (i * 37) % 900);
                let start = Instant::now();
                tb_sim::wait(d).await;
                (d, start.elapsed())
            })
        })
        .collect();
    for t in tasks {
        let (d, took) = t.await.expect("joins");
        assert!(took >= d, "{took:?} < {d:?}");
        assert!(took < d + Duration::from_millis(50), "{took:?} for {d:?}");
    }
}
