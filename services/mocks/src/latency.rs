//! Latency distributions for simulated work, in milliseconds, drawn from a seeded RNG.
//!
//! A [`Latency`] says what the scenario asked for; [`Latency::sampler`] checks it and builds the
//! `rand_distr` distribution once. Samples below zero (a normal's left tail) are clamped to zero.

use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal, Normal, Pareto, Uniform};

/// The z-score of the 99th percentile of a standard normal distribution.
const Z_P99: f64 = 2.326_347_874_040_841;

/// A latency distribution, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Latency {
    /// Always `ms`.
    Constant {
        /// Milliseconds.
        ms: f64,
    },
    /// Uniform between `min_ms` and `max_ms`.
    Uniform {
        /// Lower bound, ms.
        min_ms: f64,
        /// Upper bound, ms.
        max_ms: f64,
    },
    /// Normal around `mean_ms`.
    Normal {
        /// Mean, ms.
        mean_ms: f64,
        /// Standard deviation, ms.
        stddev_ms: f64,
    },
    /// Log-normal given by its median and its 99th percentile, the way latency is usually quoted.
    LogNormalP99 {
        /// Median, ms.
        median_ms: f64,
        /// 99th percentile, ms; must exceed the median.
        p99_ms: f64,
    },
    /// Log-normal given by its median and the σ of the underlying normal.
    LogNormalSigma {
        /// Median, ms.
        median_ms: f64,
        /// σ of ln(latency).
        sigma: f64,
    },
    /// Exponential with mean `mean_ms`.
    Exponential {
        /// Mean, ms.
        mean_ms: f64,
    },
    /// Pareto with minimum `scale_ms` and tail index `shape` (heavier tail when smaller).
    Pareto {
        /// Minimum, ms.
        scale_ms: f64,
        /// Tail index.
        shape: f64,
    },
}

/// Why a [`Latency`] cannot be sampled.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LatencyError {
    /// A parameter is negative, zero where it must be positive, or not finite.
    #[error("{name} must be {expected}, got {value}")]
    Parameter {
        /// Parameter name as the scenario spells it.
        name: &'static str,
        /// What was expected.
        expected: &'static str,
        /// What was given.
        value: f64,
    },
    /// The 99th percentile is not above the median.
    #[error("p99_ms ({p99}) must be greater than median_ms ({median})")]
    P99BelowMedian {
        /// Median, ms.
        median: f64,
        /// 99th percentile, ms.
        p99: f64,
    },
    /// `max_ms` is below `min_ms`.
    #[error("max_ms ({max}) must not be below min_ms ({min})")]
    EmptyRange {
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
}

fn non_negative(name: &'static str, value: f64) -> Result<f64, LatencyError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(LatencyError::Parameter {
            name,
            expected: "a finite number >= 0",
            value,
        })
    }
}

fn positive(name: &'static str, value: f64) -> Result<f64, LatencyError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(LatencyError::Parameter {
            name,
            expected: "a finite number > 0",
            value,
        })
    }
}

/// A checked distribution, ready to draw from.
#[derive(Clone, Copy, Debug)]
pub enum LatencySampler {
    /// Always this many ms.
    Constant(f64),
    /// Uniform.
    Uniform(Uniform<f64>),
    /// Normal.
    Normal(Normal<f64>),
    /// Log-normal.
    LogNormal(LogNormal<f64>),
    /// Exponential (rate = 1 / mean).
    Exponential(Exp<f64>),
    /// Pareto.
    Pareto(Pareto<f64>),
}

impl Latency {
    /// Checks the parameters and builds the distribution.
    ///
    /// # Errors
    ///
    /// Fails on a negative, zero-where-positive or non-finite parameter, a p99 not above the
    /// median, or an empty uniform range.
    pub fn sampler(&self) -> Result<LatencySampler, LatencyError> {
        let bad = |name, value| LatencyError::Parameter {
            name,
            expected: "a valid distribution parameter",
            value,
        };
        Ok(match *self {
            Self::Constant { ms } => LatencySampler::Constant(non_negative("ms", ms)?),
            Self::Uniform { min_ms, max_ms } => {
                let (min, max) = (
                    non_negative("min_ms", min_ms)?,
                    non_negative("max_ms", max_ms)?,
                );
                if max < min {
                    return Err(LatencyError::EmptyRange { min, max });
                }
                LatencySampler::Uniform(
                    Uniform::new_inclusive(min, max).map_err(|_| bad("max_ms", max))?,
                )
            }
            Self::Normal { mean_ms, stddev_ms } => LatencySampler::Normal(
                Normal::new(
                    non_negative("mean_ms", mean_ms)?,
                    non_negative("stddev_ms", stddev_ms)?,
                )
                .map_err(|_| bad("stddev_ms", stddev_ms))?,
            ),
            Self::LogNormalP99 { median_ms, p99_ms } => {
                let median = positive("median_ms", median_ms)?;
                let p99 = positive("p99_ms", p99_ms)?;
                if p99 <= median {
                    return Err(LatencyError::P99BelowMedian { median, p99 });
                }
                let sigma = (p99.ln() - median.ln()) / Z_P99;
                LatencySampler::LogNormal(
                    LogNormal::new(median.ln(), sigma).map_err(|_| bad("p99_ms", p99))?,
                )
            }
            Self::LogNormalSigma { median_ms, sigma } => LatencySampler::LogNormal(
                LogNormal::new(
                    positive("median_ms", median_ms)?.ln(),
                    non_negative("sigma", sigma)?,
                )
                .map_err(|_| bad("sigma", sigma))?,
            ),
            Self::Exponential { mean_ms } => LatencySampler::Exponential(
                Exp::new(1.0 / positive("mean_ms", mean_ms)?)
                    .map_err(|_| bad("mean_ms", mean_ms))?,
            ),
            Self::Pareto { scale_ms, shape } => LatencySampler::Pareto(
                Pareto::new(positive("scale_ms", scale_ms)?, positive("shape", shape)?)
                    .map_err(|_| bad("shape", shape))?,
            ),
        })
    }
}

impl LatencySampler {
    /// Draws one latency in milliseconds (never negative).
    pub fn sample_ms<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let ms = match self {
            Self::Constant(ms) => *ms,
            Self::Uniform(d) => d.sample(rng),
            Self::Normal(d) => d.sample(rng),
            Self::LogNormal(d) => d.sample(rng),
            Self::Exponential(d) => d.sample(rng),
            Self::Pareto(d) => d.sample(rng),
        };
        ms.max(0.0)
    }

    /// Draws one latency scaled by `time_scale` (1.0 = as given; 0.01 runs the seed's seconds in
    /// tens of milliseconds).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R, time_scale: f64) -> Duration {
        Duration::from_secs_f64(self.sample_ms(rng) * time_scale / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn quantiles(latency: Latency, n: usize) -> (f64, f64) {
        let sampler = latency.sampler().expect("valid");
        let mut rng = StdRng::seed_from_u64(7);
        let mut v: Vec<f64> = (0..n).map(|_| sampler.sample_ms(&mut rng)).collect();
        v.sort_by(f64::total_cmp);
        (v[n / 2], v[n * 99 / 100])
    }

    #[test]
    fn lognormal_by_p99_hits_its_median_and_p99() {
        let (p50, p99) = quantiles(
            Latency::LogNormalP99 {
                median_ms: 2000.0,
                p99_ms: 4000.0,
            },
            200_000,
        );
        assert!((p50 / 2000.0 - 1.0).abs() < 0.02, "median {p50}");
        assert!((p99 / 4000.0 - 1.0).abs() < 0.03, "p99 {p99}");
    }

    #[test]
    fn exponential_has_its_mean() {
        let sampler = Latency::Exponential { mean_ms: 50.0 }
            .sampler()
            .expect("valid");
        let mut rng = StdRng::seed_from_u64(1);
        let mean = (0..100_000)
            .map(|_| sampler.sample_ms(&mut rng))
            .sum::<f64>()
            / 100_000.0;
        assert!((mean / 50.0 - 1.0).abs() < 0.02, "mean {mean}");
    }

    #[test]
    fn same_seed_same_draws() {
        let sampler = Latency::Pareto {
            scale_ms: 10.0,
            shape: 1.5,
        }
        .sampler()
        .expect("valid");
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..5)
                .map(|_| sampler.sample_ms(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }

    #[test]
    fn normal_never_goes_negative_and_time_scale_applies() {
        let sampler = Latency::Normal {
            mean_ms: 1.0,
            stddev_ms: 5.0,
        }
        .sampler()
        .expect("valid");
        let mut rng = StdRng::seed_from_u64(3);
        assert!((0..10_000).all(|_| sampler.sample_ms(&mut rng) >= 0.0));
        let constant = Latency::Constant { ms: 2000.0 }.sampler().expect("valid");
        assert_eq!(constant.sample(&mut rng, 0.01), Duration::from_millis(20));
    }

    #[test]
    fn impossible_parameters_are_rejected_with_their_name() {
        assert_eq!(
            Latency::LogNormalP99 {
                median_ms: 100.0,
                p99_ms: 50.0
            }
            .sampler()
            .map(|_| ()),
            Err(LatencyError::P99BelowMedian {
                median: 100.0,
                p99: 50.0
            })
        );
        let err = Latency::Constant { ms: -1.0 }
            .sampler()
            .expect_err("negative");
        assert!(err.to_string().starts_with("ms must be"), "{err}");
        let err = Latency::Exponential { mean_ms: 0.0 }
            .sampler()
            .expect_err("zero mean");
        assert!(err.to_string().starts_with("mean_ms"), "{err}");
        assert!(
            Latency::Uniform {
                min_ms: 5.0,
                max_ms: 1.0
            }
            .sampler()
            .is_err()
        );
        assert!(
            Latency::Normal {
                mean_ms: f64::NAN,
                stddev_ms: 1.0
            }
            .sampler()
            .is_err()
        );
    }
}
