//! Resident memory over a run: every service process's RSS sampled while the load runs, so a
//! soak tells a plateau from a leak. The first fifth of the samples is left to warm up (pools,
//! caches and batch queues grow to their working size); the trend compares the median of the
//! second fifth with the median of the last.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::children::ChildControl;

/// Fewer samples than this make no trend.
const MIN_SAMPLES: usize = 10;

/// Every service process's resident memory now, KiB: the children's, or this process's when
/// the services run here (`children` is `None`).
fn rss_kb(children: Option<&ChildControl>) -> Vec<(&'static str, u64)> {
    match children {
        None => crate::usage::rss_kb("self")
            .map(|kb| vec![("tracebench", kb)])
            .unwrap_or_default(),
        Some(children) => children.rss_kb(),
    }
}

/// One process's memory over the run.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Trend {
    pub(super) process: &'static str,
    /// Median RSS of the second fifth of the samples, KiB.
    pub(super) settled_kb: u64,
    /// Median RSS of the last fifth, KiB.
    pub(super) end_kb: u64,
    /// Every sample, KiB, in order.
    pub(super) samples_kb: Vec<u64>,
}

impl Trend {
    /// `end / settled - 1`: 0.1 is 10 % more memory at the end than once warmed up.
    pub(super) fn growth(&self) -> f64 {
        self.end_kb as f64 / self.settled_kb.max(1) as f64 - 1.0
    }
}

/// Sampling, under way.
pub(super) struct Sampling {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<Vec<(&'static str, u64)>>>,
}

/// Samples the children (this process when `None`) every `every` until [`Sampling::stop`].
pub(super) fn sample(children: Option<ChildControl>, every: Duration) -> Sampling {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => samples.push(rss_kb(children.as_ref())),
                _ = stopped.wait_for(|s| *s) => return samples,
            }
        }
    });
    Sampling { stop, task }
}

/// The sampling interval for a load of `length`: about 60 samples, 1 to 10 s apart.
pub(super) fn interval(length: Duration) -> Duration {
    (length / 60).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

impl Sampling {
    /// Stops sampling; each process's trend, when there were enough samples for one.
    pub(super) async fn stop(self) -> Vec<Trend> {
        self.stop.send_replace(true);
        let samples = self.task.await.unwrap_or_default();
        let mut names: Vec<&'static str> = samples.iter().flatten().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .filter_map(|name| {
                let series: Vec<u64> = samples
                    .iter()
                    .filter_map(|s| s.iter().find(|(n, _)| *n == name).map(|(_, kb)| *kb))
                    .collect();
                trend(name, &series)
            })
            .collect()
    }
}

fn median(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    v[v.len() / 2]
}

fn trend(process: &'static str, series: &[u64]) -> Option<Trend> {
    if series.len() < MIN_SAMPLES {
        return None;
    }
    let fifth = series.len() / 5;
    Some(Trend {
        process,
        settled_kb: median(&series[fifth..2 * fifth]),
        end_kb: median(&series[series.len() - fifth..]),
        samples_kb: series.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plateau_after_warm_up_is_flat_and_a_leak_is_not() {
        // Warm-up growth in the first fifth is left out.
        let plateau: Vec<u64> = (0..50)
            .map(|i| if i < 10 { 50 + i * 10 } else { 200 })
            .collect();
        let t = trend("worker", &plateau).expect("enough samples");
        assert_eq!((t.settled_kb, t.end_kb), (200, 200));
        assert!(t.growth().abs() < 1e-9);
        let leak: Vec<u64> = (0..50).map(|i| 200 + i * 4).collect();
        let t = trend("worker", &leak).expect("enough samples");
        assert!(t.growth() > 0.4, "{t:?}");
        assert_eq!(trend("worker", &[1, 2, 3]), None);
    }

    #[test]
    fn a_load_is_sampled_about_sixty_times_one_to_ten_seconds_apart() {
        assert_eq!(interval(Duration::from_secs(600)), Duration::from_secs(10));
        assert_eq!(interval(Duration::from_secs(120)), Duration::from_secs(2));
        assert_eq!(interval(Duration::from_secs(10)), Duration::from_secs(1));
    }
}
