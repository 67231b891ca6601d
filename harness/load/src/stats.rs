//! Latency statistics: HDR histograms recorded both ways (from the intended and from the actual
//! send time) and summarised as percentiles and log-spaced buckets.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

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
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
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
pub(crate) struct Pair {
    pub(crate) corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
}

impl Pair {
    pub(crate) fn new() -> Self {
        // Auto-resizing, 3 significant digits: 0.1 % resolution at any magnitude.
        let h = || Histogram::new(3).unwrap_or_else(|_| unreachable!("3 sigfigs is valid"));
        Self {
            corrected: h(),
            uncorrected: h(),
        }
    }

    pub(crate) fn record(&mut self, corrected: Duration, uncorrected: Duration) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        // `record` grows an auto-resizing histogram; `saturating_record` would clamp to its
        // current (initially tiny) range instead. It fails only past u64 range limits.
        let _ = self.corrected.record(us(corrected));
        let _ = self.uncorrected.record(us(uncorrected));
    }

    pub(crate) fn latencies(&self) -> Latencies {
        Latencies {
            corrected: Percentiles::of(&self.corrected),
            uncorrected: Percentiles::of(&self.uncorrected),
        }
    }
}

/// Up to 40 log-spaced buckets covering `h`, as `(upper bound ms, count)`.
pub(crate) fn buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
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
