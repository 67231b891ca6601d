//! The statistics of the overhead ladder: medians and interquartile ranges of an arm's repeats,
//! and a percentile-bootstrap 95 % confidence interval for the difference of two arms' medians.
//!
//! Why the bootstrap: repeats are few (5 by default) and CPU time per scan is not normal (a
//! repeat that lands on a noisy neighbour is an outlier on one side), so a t-interval on means
//! would be both fragile and wrong-shaped. Medians resist the outlier; resampling each arm's
//! repeats with replacement and taking the 2.5th and 97.5th percentiles of the resampled
//! difference makes no assumption about the shape. With five repeats the interval is coarse
//! (it can only take values the repeats allow) and errs wide, which is the safe side for
//! "within noise". The resampling is seeded, so a result file is reproducible from its data.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// Resamples drawn for a confidence interval.
pub const RESAMPLES: usize = 10_000;

/// The name of the interval method, as written into the results.
pub const METHOD: &str = "percentile bootstrap of the difference of medians, 10000 resamples";

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

/// The 95 % interval of `median(a) - median(b)`, from [`RESAMPLES`] resamples of each
/// seeded by `seed`.
pub fn diff_ci95(a: &[f64], b: &[f64], seed: u64) -> (f64, f64) {
    if a.is_empty() || b.is_empty() {
        return (0.0, 0.0);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut resample = |values: &[f64], into: &mut Vec<f64>| {
        into.clear();
        into.extend((0..values.len()).map(|_| values[rng.random_range(0..values.len())]));
        median(into)
    };
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    let diffs: Vec<f64> = (0..RESAMPLES)
        .map(|_| resample(a, &mut ra) - resample(b, &mut rb))
        .collect();
    (quantile(&diffs, 0.025), quantile(&diffs, 0.975))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (lo, hi) = diff_ci95(&a, &b, 7);
        assert!(lo <= 0.0 && 0.0 <= hi, "[{lo}, {hi}]");
    }

    #[test]
    fn a_real_shift_is_outside_noise_and_inside_its_interval() {
        let b = [100.0, 101.0, 99.5, 100.5, 100.2];
        let a: Vec<f64> = b.iter().map(|v| v + 10.0).collect();
        let (lo, hi) = diff_ci95(&a, &b, 7);
        assert!(lo > 0.0, "[{lo}, {hi}]");
        assert!(lo <= 10.0 && 10.0 <= hi, "[{lo}, {hi}]");
        assert_eq!(
            diff_ci95(&a, &b, 7),
            (lo, hi),
            "seeded: the same every time"
        );
    }
}
