//! When requests arrive: the arrival processes and the seeded schedule of one run.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};

/// How requests arrive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arrival {
    /// Evenly spaced.
    Constant {
        /// Requests/s.
        rate: f64,
    },
    /// Poisson process.
    Poisson {
        /// Requests/s.
        rate: f64,
    },
    /// Periodic bursts, evenly spaced at the current rate.
    Burst {
        /// Requests/s outside bursts.
        base: f64,
        /// Requests/s inside bursts.
        peak: f64,
        /// Period.
        period: Duration,
        /// Share of the period at `peak`.
        duty: f64,
    },
    /// Linear ramp over the measured duration, evenly spaced at the current rate.
    Ramp {
        /// Starting requests/s.
        from: f64,
        /// Final requests/s.
        to: f64,
    },
}

/// The offered load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Arrival process.
    pub arrival: Arrival,
    /// Pending requests beyond which arrivals are skipped.
    pub max_in_flight: usize,
    /// Concurrent requests (connections).
    pub connections: usize,
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
