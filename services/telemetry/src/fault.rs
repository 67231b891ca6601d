//! Propagation faults for testing the verifier: drop the trace headers of an exact share of
//! the messages crossing one hop, as a misconfigured proxy or client library would.
//!
//! The share is exact, not random: message n is stripped when ⌊(n+1)·ratio⌋ > ⌊n·ratio⌋, so
//! after N messages ⌊N·ratio⌋ were stripped and a verifier can be held to a tight tolerance.

use std::sync::atomic::{AtomicU64, Ordering};

/// Decides, message by message, whether to strip the trace headers.
#[derive(Debug)]
pub struct Strip {
    ratio: f64,
    seen: AtomicU64,
}

impl Strip {
    /// Strips `ratio` (clamped to 0–1) of the messages.
    pub fn new(ratio: f64) -> Self {
        Self {
            ratio: ratio.clamp(0.0, 1.0),
            seen: AtomicU64::new(0),
        }
    }

    /// Whether the next message goes without trace headers.
    pub fn next(&self) -> bool {
        if self.ratio <= 0.0 {
            return false;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.ratio).floor() > (n * self.ratio).floor()
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
}
