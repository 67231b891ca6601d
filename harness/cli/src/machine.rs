//! What a run ran on, recorded beside its figures so that figures from different machines can
//! be told apart.
//!
//! The pipeline hands every scan between threads about thirty times (tokio's workers, lapin's
//! I/O thread, librdkafka's threads, RabbitMQ's schedulers), so its CPU per scan and its
//! capacity follow what one thread waking another costs more than they follow clock speed: on
//! the same 2-vCPU kind, the build that saturated at 3250 scans/s on an earlier session's VM
//! saturated at 500 on one whose wake-up round trip took 21–25 µs. [`Machine::calibrated`]
//! measures that round trip before the services start.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What the run ran on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPUs this process may use.
    pub cpus: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// The kernel (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// tracebench's version.
    pub tracebench: String,
    /// One thread waking a parked thread and being woken back, µs: the median of several
    /// rounds of ping-pong between two threads, measured before the services started
    /// (see [`wake_round_trip`]). Absent in results written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_round_trip_us: Option<f64>,
}

impl Machine {
    /// This machine as `/proc` describes it, without measuring anything.
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
                .unwrap_or_default(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            tracebench: env!("CARGO_PKG_VERSION").to_owned(),
            wake_round_trip_us: None,
        }
    }

    /// [`Machine::read`] plus the measured wake-up round trip (about 0.1 s on a slow machine;
    /// it blocks, so call it from a blocking thread or before the runtime is busy).
    pub fn calibrated() -> Self {
        Self {
            wake_round_trip_us: wake_round_trip(ROUNDS, TRIPS_PER_ROUND)
                .map(|d| d.as_secs_f64() * 1e6),
            ..Self::read()
        }
    }

    /// One line for a terminal: `2 × AMD EPYC, wake-up round trip 21.3 µs`.
    pub fn summary(&self) -> String {
        let model = if self.cpu_model.is_empty() {
            "unknown CPU"
        } else {
            &self.cpu_model
        };
        match self.wake_round_trip_us {
            Some(us) => format!("{} × {model}, wake-up round trip {us:.1} µs", self.cpus),
            None => format!("{} × {model}", self.cpus),
        }
    }
}

/// [`Machine::calibrated`] on a blocking thread, so the async runtime keeps serving meanwhile.
pub async fn measure() -> Machine {
    tokio::task::spawn_blocking(Machine::calibrated)
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

    #[test]
    fn the_summary_names_cpus_model_and_round_trip() {
        let machine = Machine {
            cpus: 2,
            cpu_model: "AMD EPYC".to_owned(),
            wake_round_trip_us: Some(21.34),
            ..Machine::default()
        };
        assert_eq!(
            machine.summary(),
            "2 × AMD EPYC, wake-up round trip 21.3 µs"
        );
        let unmeasured = Machine {
            wake_round_trip_us: None,
            ..machine
        };
        assert_eq!(unmeasured.summary(), "2 × AMD EPYC");
    }

    #[test]
    fn results_written_before_the_round_trip_was_recorded_still_read() {
        let old = r#"{"cpus":2,"cpu_model":"x","kernel":"6.1","tracebench":"0.1.0"}"#;
        let machine: Machine = serde_json::from_str(old).expect("reads");
        assert_eq!(machine.wake_round_trip_us, None);
    }
}
