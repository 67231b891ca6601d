//! Propagation faults for testing the verifier: drop the trace headers of an exact share of
//! the messages crossing one hop, as a misconfigured proxy or client library would.
//!
//! The share is exact, not random: message n is stripped when ⌊(n+1)·ratio⌋ > ⌊n·ratio⌋, so
//! after N messages ⌊N·ratio⌋ were stripped and a verifier can be held to a tight tolerance.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A share in 0–1 that may be changed while other threads read it (a switch of the demo):
/// clamped on the way in, NaN taken as 0.
#[derive(Debug, Default)]
pub struct Share(AtomicU64);

impl Share {
    /// A share of `value`.
    pub fn new(value: f64) -> Self {
        let share = Self::default();
        share.set(value);
        share
    }

    /// The share now.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    /// `value` from now on (clamped to 0–1; NaN is 0).
    pub fn set(&self, value: f64) {
        let value = if value.is_nan() {
            0.0
        } else {
            value.clamp(0.0, 1.0)
        };
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

/// Decides, message by message, whether to strip the trace headers. The share can be changed
/// while messages flow ([`Strip::set`]: the demo's switches), so a hop holds it by `Arc`.
#[derive(Debug, Default)]
pub struct Strip {
    ratio: Share,
    seen: AtomicU64,
}

impl Strip {
    /// Strips `ratio` (clamped to 0–1) of the messages.
    pub fn new(ratio: f64) -> Self {
        Self {
            ratio: Share::new(ratio),
            seen: AtomicU64::new(0),
        }
    }

    /// Strips `ratio` (clamped to 0–1; NaN is 0) of the messages from now on.
    pub fn set(&self, ratio: f64) {
        self.ratio.set(ratio);
    }

    /// The share stripped.
    pub fn ratio(&self) -> f64 {
        self.ratio.get()
    }

    /// Whether the next message goes without trace headers.
    pub fn next(&self) -> bool {
        strip_next(self.ratio(), &self.seen)
    }
}

/// As its share alone (a child process is handed a fresh one, counting from its first message).
impl serde::Serialize for Strip {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.ratio())
    }
}

impl<'de> serde::Deserialize<'de> for Strip {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        f64::deserialize(deserializer).map(Self::new)
    }
}

/// Message number `seen` (counted up) is stripped when ⌊(n+1)·ratio⌋ > ⌊n·ratio⌋.
fn strip_next(ratio: f64, seen: &AtomicU64) -> bool {
    if ratio <= 0.0 {
        return false;
    }
    let n = seen.fetch_add(1, Ordering::Relaxed) as f64;
    ((n + 1.0) * ratio).floor() > (n * ratio).floor()
}

/// One hop of several under one [`Strip`]'s share, counted on its own. The worker's Vision and
/// LLM calls alternate, so one count over both would line its period up with one of them
/// (every tenth call is always an LLM call); a lane each loses exactly the share.
#[derive(Debug)]
pub struct Lane {
    strip: Arc<Strip>,
    seen: AtomicU64,
}

impl Lane {
    /// A lane of `strip`: its share, its own count.
    pub fn new(strip: Arc<Strip>) -> Self {
        Self {
            strip,
            seen: AtomicU64::new(0),
        }
    }

    /// Whether the next message on this lane goes without trace headers.
    pub fn next(&self) -> bool {
        strip_next(self.strip.ratio(), &self.seen)
    }
}

/// Whether to propagate on a hop with an optional fault: `true` unless the fault strips this one.
pub fn propagate(strip: Option<&Strip>) -> bool {
    strip.is_none_or(|s| !s.next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_share_is_stripped() {
        for ratio in [0.0, 0.1, 0.25, 1.0] {
            let strip = Strip::new(ratio);
            let stripped = (0..1000).filter(|_| strip.next()).count();
            assert_eq!(stripped, (1000.0 * ratio) as usize, "{ratio}");
        }
        assert!(propagate(None));
    }

    #[test]
    fn lanes_of_one_strip_each_lose_exactly_its_share() {
        let strip = Arc::new(Strip::new(0.1));
        let (vision, llm) = (Lane::new(strip.clone()), Lane::new(strip.clone()));
        // Calls alternate, as the worker's do.
        let (mut v, mut l) = (0, 0);
        for _ in 0..100 {
            v += usize::from(vision.next());
            l += usize::from(llm.next());
        }
        assert_eq!((v, l), (10, 10));
        strip.set(0.0);
        assert!(
            !vision.next() && !llm.next(),
            "the share is the strip's, turned live"
        );
    }

    #[test]
    fn a_share_changed_midway_applies_from_the_next_message() {
        let strip = Strip::new(0.0);
        assert_eq!((0..100).filter(|_| strip.next()).count(), 0);
        strip.set(1.0);
        assert_eq!((0..100).filter(|_| strip.next()).count(), 100);
        strip.set(0.5);
        let stripped = (0..100).filter(|_| strip.next()).count();
        assert!((49..=51).contains(&stripped), "{stripped}");
        strip.set(f64::NAN);
        assert_eq!(strip.ratio(), 0.0);
        strip.set(7.0);
        assert_eq!(strip.ratio(), 1.0);
    }
}
