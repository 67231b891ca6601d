//! Measuring what a run runs on: [`Machine`] (the type, in `tb-report`) with the thread
//! wake-up round trip measured here, before the services start.
//!
//! The pipeline hands every scan between threads about thirty times (tokio's workers, lapin's
//! I/O thread, librdkafka's threads, RabbitMQ's schedulers), so its CPU per scan and its
//! capacity follow what one thread waking another costs more than they follow clock speed: on
//! the same 2-vCPU kind, the build that saturated at 3250 scans/s on an earlier session's VM
//! saturated at 500 on one whose wake-up round trip took 21–25 µs. [`calibrated`] measures that
//! round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tb_report::Machine;

/// This machine as `/proc` describes it ([`Machine::read`]), with the measured wake-up round
/// trip (about 0.1 s on a slow machine; it blocks, so call it from a blocking thread or before
/// the runtime is busy).
pub fn calibrated() -> Machine {
    Machine {
        wake_round_trip_us: wake_round_trip(ROUNDS, TRIPS_PER_ROUND).map(|d| d.as_secs_f64() * 1e6),
        ..Machine::read()
    }
}

/// [`calibrated`] on a blocking thread, so the async runtime keeps serving meanwhile.
pub async fn measure() -> Machine {
    tokio::task::spawn_blocking(calibrated)
        .await
        .unwrap_or_else(|_| Machine::read())
}

const ROUNDS: usize = 5;
const TRIPS_PER_ROUND: u64 = 1000;

/// The median over `rounds` of the time one round trip takes when two threads take turns:
/// each unparks the other, then parks until it is unparked in turn (a futex wake and wait on
/// Linux, as tokio's, lapin's and librdkafka's threads do when work crosses between them).
/// `None` when the second thread cannot be started.
pub fn wake_round_trip(rounds: usize, trips: u64) -> Option<Duration> {
    let mut samples: Vec<Duration> = (0..rounds.max(1))
        .map(|_| ping_pong(trips.max(1)))
        .collect::<Option<_>>()?;
    samples.sort();
    Some(samples[samples.len() / 2])
}

/// `trips` round trips between this thread and a second one; the mean time of one.
fn ping_pong(trips: u64) -> Option<Duration> {
    // The turn counter: odd while the echo thread holds the turn, even while this one does.
    let turn = Arc::new(AtomicU64::new(0));
    let quit = Arc::new(AtomicBool::new(false));
    let main = std::thread::current();
    let echo = {
        let (turn, quit) = (turn.clone(), quit.clone());
        std::thread::Builder::new()
            .name("wake-calibration".to_owned())
            .spawn(move || {
                let mut seen = 0;
                while !quit.load(Ordering::Acquire) {
                    let now = turn.load(Ordering::Acquire);
                    if now % 2 == 1 && now != seen {
                        seen = now;
                        turn.store(now + 1, Ordering::Release);
                        main.unpark();
                    } else {
                        std::thread::park();
                    }
                }
            })
            .ok()?
    };
    let started = Instant::now();
    for trip in 0..trips {
        turn.store(2 * trip + 1, Ordering::Release);
        echo.thread().unpark();
        while turn.load(Ordering::Acquire) != 2 * trip + 2 {
            std::thread::park();
        }
    }
    let elapsed = started.elapsed();
    quit.store(true, Ordering::Release);
    echo.thread().unpark();
    let _ = echo.join();
    Some(elapsed / u32::try_from(trips).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_is_measured_and_takes_more_than_nothing_and_less_than_a_second() {
        let rtt = wake_round_trip(3, 200).expect("a second thread starts");
        // Two futex hand-offs: never free, and far below a second even on a loaded CI machine.
        assert!(rtt > Duration::from_nanos(50), "{rtt:?}");
        assert!(rtt < Duration::from_secs(1), "{rtt:?}");
    }
}
