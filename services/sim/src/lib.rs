//! Simulated time: [`wait`] lasts what it is asked to, to within a few microseconds, where
//! `tokio::time::sleep` never waits less than about a millisecond (its wheel ticks once per
//! millisecond and rounds up). A scaled 50 µs latency therefore costs 50 µs, not 1 ms, and a
//! zero latency (`time_scale: 0`) costs nothing at all.
//!
//! Every wait is a deadline in one heap served by one thread. The thread blocks on a condition
//! variable until the earliest deadline with its timer slack set to 1 ns (the kernel's default
//! of 50 µs would make every wake-up up to 50 µs late), then wakes the waiting task. Two
//! wake-ups in a row (the timer thread's, then the runtime worker's) cost 20–30 µs here, so
//! the thread wakes a task [`LEAD`] early and the task spins out the rest: a wait costs at most
//! that much CPU, and none when it is zero. The error is measured in `benches/sim.rs`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroU64;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How much earlier than its deadline a waiting task is woken, to be spun out by the task:
/// the measured latency of the two wake-ups on a 2-vCPU VM (see the crate docs).
pub const LEAD: Duration = Duration::from_micros(30);

/// One pending wait: its deadline, an order for equal deadlines, and whom to wake.
struct Entry {
    at: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Pending {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

/// The deadlines and the thread that serves them.
struct Timer {
    pending: Mutex<Pending>,
    changed: Condvar,
}

/// The timer, or `None` when its thread could not be spawned.
fn timer() -> Option<&'static Timer> {
    static TIMER: OnceLock<Option<&'static Timer>> = OnceLock::new();
    *TIMER.get_or_init(|| {
        let timer: &'static Timer = Box::leak(Box::new(Timer {
            pending: Mutex::new(Pending::default()),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("tb-sim-timer".to_owned())
            .spawn(move || timer.serve())
            .ok()
            .map(|_| timer)
    })
}

impl Timer {
    fn serve(&self) {
        // 1 ns: expire exactly when asked (see the crate docs). Without it waits are merely
        // up to 50 µs late, so a failure here is not fatal.
        let _ = rustix::thread::set_current_timer_slack(NonZeroU64::new(1));
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            while pending.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
                if let Some(Reverse(e)) = pending.heap.pop() {
                    // A waiter that gave up (its task was dropped) is simply gone.
                    let _ = e.wake.send(());
                }
            }
            pending = match pending.heap.peek() {
                Some(Reverse(next)) => {
                    let left = next.at.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(pending, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// Registers a wait until `at`; the receiver completes then.
    fn add(&self, at: Instant) -> oneshot::Receiver<()> {
        let (wake, woken) = oneshot::channel();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let earliest = pending.heap.peek().is_none_or(|Reverse(e)| at < e.at);
        pending.seq += 1;
        let seq = pending.seq;
        pending.heap.push(Reverse(Entry { at, seq, wake }));
        drop(pending);
        if earliest {
            self.changed.notify_one();
        }
        woken
    }
}

/// Waits `duration` of simulated time: returns at once for zero, otherwise after `duration`
/// to within the wake-up latency of the kernel and the runtime (microseconds, not the async
/// timer's millisecond).
pub async fn wait(duration: Duration) {
    if duration.is_zero() {
        return;
    }
    let at = Instant::now() + duration;
    if duration > LEAD {
        match timer() {
            Some(timer) => {
                // Woken `LEAD` early; the spin below takes it to the deadline.
                let _ = timer.add(at - LEAD).await;
            }
            // No timer thread: the runtime's timer waits at least as long, if not as exactly.
            None => tokio::time::sleep_until(at.into()).await,
        }
    }
    while Instant::now() < at {
        std::hint::spin_loop();
    }
}

/// Spends `work` of CPU time on the calling thread, as simulated CPU-bound work does (the
/// seed's rule engine): nothing at all for zero.
pub fn spin(work: Duration) {
    if work.is_zero() {
        return;
    }
    let start = Instant::now();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while start.elapsed() < work {
        for _ in 0..256 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
    }
    std::hint::black_box(x);
}
