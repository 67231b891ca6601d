//! The statistics of the overhead ladder: medians and interquartile ranges of an arm's repeats,
//! and the difference between two arms as the median of their paired differences, with a
//! percentile-bootstrap 95 % confidence interval.
//!
//! Why pairs: the repeats run in rounds, every arm once a round in a shuffled order, and the
//! machine drifts over a ladder. On this project's 2-vCPU VMs the `off` arm's CPU per scan rose
//! by 29 % from its first repeat to its last within three minutes
//! (`scenarios/overhead-self-test.yaml`, 2026-12-07). Compared as two medians, an arm whose
//! repeats happened to run late carried that drift as overhead: the self-test once recovered
//! 1,180 µs of a 1,000 µs cost. Differences taken inside a round, between repeats a few seconds
//! apart, leave the drift out; their median resists the round that lands on a noisy neighbour.
//!
//! Why the bootstrap: repeats are few (5 by default) and CPU time per scan is not normal, so a
//! t-interval on means would be both fragile and wrong-shaped. Resampling the rounds with
//! replacement and taking the 2.5th and 97.5th percentiles of the resampled median makes no
//! assumption about the shape. With five rounds the interval is coarse (it can only take values
//! the rounds allow) and errs wide, which is the safe side for "within noise". The resampling is
//! seeded, so a result file is reproducible from its data.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// Resamples drawn for a confidence interval.
pub const RESAMPLES: usize = 10_000;

/// The name of the interval method, as written into the results.
pub const METHOD: &str =
    "percentile bootstrap of the median of differences paired by round, 10000 resamples";

/// A sample's median and spread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Interquartile range (third quartile minus first).
    pub iqr: f64,
}

impl Spread {
    /// The median and IQR of `values` (zeros when empty).
    pub fn of(values: &[f64]) -> Self {
        Self {
            median: quantile(values, 0.5),
            iqr: quantile(values, 0.75) - quantile(values, 0.25),
        }
    }
}

/// The `q` quantile of `values` by linear interpolation between order statistics (R's type
/// 7, numpy's default); 0 when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return 0.0;
    }
    sorted.sort_by(f64::total_cmp);
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64)
}

/// The median of `values`.
pub fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

/// The 95 % interval of the median of `differences` (one arm less another, one value per
/// round), from [`RESAMPLES`] resamples of the rounds, seeded by `seed`.
pub fn median_ci95(differences: &[f64], seed: u64) -> (f64, f64) {
    if differences.is_empty() {
        return (0.0, 0.0);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut resampled = Vec::with_capacity(differences.len());
    let medians: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            resampled.clear();
            resampled.extend(
                (0..differences.len()).map(|_| differences[rng.random_range(0..differences.len())]),
            );
            median(&resampled)
        })
        .collect();
    (quantile(&medians, 0.025), quantile(&medians, 0.975))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a[i] - b[i]`: two arms' differences round by round.
    fn paired(a: &[f64], b: &[f64]) -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| x - y).collect()
    }

    #[test]
    fn quantiles_interpolate_between_order_statistics() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(median(&v), 2.5);
        assert_eq!(quantile(&v, 0.25), 1.75);
        assert_eq!(Spread::of(&v).iqr, 1.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn an_interval_between_samples_of_one_population_holds_zero() {
        let a = [100.0, 101.0, 99.5, 100.5, 100.2];
        let b = [100.3, 99.8, 100.9, 99.6, 100.1];
        let (lo, hi) = median_ci95(&paired(&a, &b), 7);
        assert!(lo <= 0.0 && 0.0 <= hi, "[{lo}, {hi}]");
    }

    #[test]
    fn a_real_shift_is_outside_noise_and_inside_its_interval() {
        let b = [100.0, 101.0, 99.5, 100.5, 100.2];
        let a: Vec<f64> = b.iter().map(|v| v + 10.0).collect();
        let (lo, hi) = median_ci95(&paired(&a, &b), 7);
        assert!(lo > 0.0, "[{lo}, {hi}]");
        assert!(lo <= 10.0 && 10.0 <= hi, "[{lo}, {hi}]");
        assert_eq!(
            median_ci95(&paired(&a, &b), 7),
            (lo, hi),
            "seeded: the same every time"
        );
    }

    #[test]
    fn a_drift_shared_by_both_arms_of_a_round_cancels() {
        // Both arms climb by 30 % over the rounds and `a` costs 10 more in each. Compared
        // unpaired, `a`'s late repeats against `b`'s early ones carry the drift as cost.
        let b: Vec<f64> = (0..5)
            .map(|r| 100.0 * (1.0 + 0.075 * f64::from(r)))
            .collect();
        let a: Vec<f64> = b.iter().map(|v| v + 10.0).collect();
        let late: Vec<f64> = a[2..].to_vec();
        let early: Vec<f64> = b[..3].to_vec();
        assert!(
            median(&late) - median(&early) > 20.0,
            "unpaired, the drift shows"
        );
        assert_eq!(median(&paired(&a, &b)), 10.0);
    }
}
