//! Injected faults: a share of requests answers 500, a share 429 with `Retry-After`, a share never
//! answers within the client's timeout. One uniform draw per request picks the outcome, so the
//! shares are exact in expectation and reproducible under a seed.

use std::time::Duration;

use rand::{Rng, RngExt};

/// Fault rates of one mock service. The three rates are shares of all requests and add up to at
/// most 1.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Faults {
    /// Share answered `500 Internal Server Error`.
    pub error_rate: f64,
    /// Share answered `429 Too Many Requests`.
    pub rate_limit_rate: f64,
    /// `Retry-After` seconds sent with a 429.
    pub retry_after_s: u32,
    /// Share that hangs for [`Faults::hang`] (meant to exceed the client's timeout).
    pub timeout_rate: f64,
    /// How long a "timeout" request hangs before the server gives up on it.
    pub hang: Duration,
    /// The first this-many requests answer 500 before the rates apply: a deterministic outage
    /// at start, e.g. to fail exactly the first attempt of a task.
    pub fail_first: u32,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            rate_limit_rate: 0.0,
            retry_after_s: 1,
            timeout_rate: 0.0,
            hang: Duration::from_secs(30),
            fail_first: 0,
        }
    }
}

/// What one request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A normal answer after the drawn latency.
    Ok,
    /// 500.
    Error,
    /// 429 with `Retry-After`.
    RateLimited,
    /// No answer within the client's timeout.
    Hang,
}

/// Why a [`Faults`] is invalid.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FaultsError {
    /// A rate outside 0–1.
    #[error("{0} must be between 0 and 1, got {1}")]
    Rate(&'static str, f64),
    /// The rates add up to more than 1.
    #[error("error_rate + rate_limit_rate + timeout_rate must be at most 1, got {0}")]
    Sum(f64),
}

impl Faults {
    /// Checks the rates.
    ///
    /// # Errors
    ///
    /// Fails when a rate is outside 0–1 or the three add up to more than 1.
    pub fn validate(&self) -> Result<(), FaultsError> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("rate_limit_rate", self.rate_limit_rate),
            ("timeout_rate", self.timeout_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(FaultsError::Rate(name, rate));
            }
        }
        let sum = self.error_rate + self.rate_limit_rate + self.timeout_rate;
        if sum > 1.0 + 1e-9 {
            return Err(FaultsError::Sum(sum));
        }
        Ok(())
    }

    /// Draws the outcome of one request.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> Outcome {
        let u: f64 = rng.random();
        if u < self.error_rate {
            Outcome::Error
        } else if u < self.error_rate + self.rate_limit_rate {
            Outcome::RateLimited
        } else if u < self.error_rate + self.rate_limit_rate + self.timeout_rate {
            Outcome::Hang
        } else {
            Outcome::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn outcomes_follow_the_rates() {
        let faults = Faults {
            error_rate: 0.1,
            rate_limit_rate: 0.2,
            timeout_rate: 0.05,
            ..Faults::default()
        };
        let mut rng = StdRng::seed_from_u64(9);
        let n = 100_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[faults.draw(&mut rng) as usize] += 1;
        }
        let share = |i: usize| counts[i] as f64 / n as f64;
        assert!((share(Outcome::Error as usize) - 0.1).abs() < 0.005);
        assert!((share(Outcome::RateLimited as usize) - 0.2).abs() < 0.005);
        assert!((share(Outcome::Hang as usize) - 0.05).abs() < 0.005);
    }

    #[test]
    fn invalid_rates_are_rejected() {
        let f = Faults {
            error_rate: 1.5,
            ..Faults::default()
        };
        assert_eq!(f.validate(), Err(FaultsError::Rate("error_rate", 1.5)));
        let f = Faults {
            error_rate: 0.6,
            timeout_rate: 0.6,
            ..Faults::default()
        };
        assert!(matches!(f.validate(), Err(FaultsError::Sum(_))));
        assert_eq!(Faults::default().validate(), Ok(()));
    }
}
