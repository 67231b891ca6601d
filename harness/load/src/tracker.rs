//! End-to-end tracking: matches completions reported from elsewhere (a consumer's event) to the
//! requests that started them, early or late.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::stats::{Latencies, Pair, buckets};

/// End-to-end completion of followed requests (scans).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Followed {
    /// Successful requests with an id to follow.
    pub accepted: u64,
    /// Of those, completed end to end.
    pub completed: u64,
    /// Of those, not completed when the drain ended: lost or too slow.
    pub lost: u64,
}

/// A followed request that has its answer but not yet its end-to-end completion.
pub(crate) struct Pending {
    pub(crate) intended: Instant,
    pub(crate) sent: Instant,
    pub(crate) measured: bool,
}

/// Matches end-to-end completions to the requests that started them.
#[derive(Default)]
pub struct Tracker {
    inner: Mutex<TrackerState>,
}

#[derive(Default)]
struct TrackerState {
    pending: HashMap<String, Pending>,
    /// Completions that arrived before the request's answer did.
    early: HashMap<String, Instant>,
    e2e: Option<Pair>,
    accepted: u64,
    completed: u64,
}

impl Tracker {
    fn state(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows `id` end to end without measuring it: a probe that warms the pipeline up.
    pub fn follow_unmeasured(&self, id: String) {
        let now = Instant::now();
        self.accept(
            id,
            Pending {
                intended: now,
                sent: now,
                measured: false,
            },
        );
    }

    pub(crate) fn accept(&self, id: String, pending: Pending) {
        let mut s = self.state();
        if pending.measured {
            s.accepted += 1;
        }
        match s.early.remove(&id) {
            Some(at) => s.finish(&pending, at),
            None => {
                s.pending.insert(id, pending);
            }
        }
    }

    /// Marks `id` complete end to end at `at`.
    pub fn complete(&self, id: &str, at: Instant) {
        let mut s = self.state();
        match s.pending.remove(id) {
            Some(p) => s.finish(&p, at),
            None => {
                s.early.insert(id.to_owned(), at);
            }
        }
    }

    /// Followed requests not yet complete.
    pub fn outstanding(&self) -> usize {
        self.state().pending.len()
    }

    /// The measured followed requests so far: counts, end-to-end latencies and the corrected
    /// latency's histogram buckets.
    pub(crate) fn results(&self) -> (Followed, Latencies, Vec<(f64, u64)>) {
        let s = self.state();
        let followed = Followed {
            accepted: s.accepted,
            completed: s.completed,
            lost: s.accepted - s.completed,
        };
        let latencies = s.e2e.as_ref().map(Pair::latencies).unwrap_or_default();
        let histogram = s
            .e2e
            .as_ref()
            .map(|p| buckets(&p.corrected))
            .unwrap_or_default();
        (followed, latencies, histogram)
    }
}

impl TrackerState {
    fn finish(&mut self, p: &Pending, at: Instant) {
        if p.measured {
            self.completed += 1;
            self.e2e
                .get_or_insert_with(Pair::new)
                .record(at - p.intended, at - p.sent);
        }
    }
}
