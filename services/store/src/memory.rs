//! State in process memory: maps behind mutexes, each holding at most [`MemoryStore::capacity`]
//! entries (the oldest go first), so a pipeline that runs for hours stays within its memory.
//! Redeliveries and duplicate events arrive within seconds, long before an entry ages out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::{
    EventStore, HistoryStore, Reward, RewardStore, ScanRecord, ScanResult, ScanState, StoreError,
    StoreFuture,
};

/// Entries each map of a [`MemoryStore`] keeps by default: about 50 MB of scans.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The in-process store: maps behind mutexes, with a simulated write latency (the seed's
/// `save_to_event_store` takes 20 ms) applied to writes made on the worker's critical path.
#[derive(Debug)]
pub struct MemoryStore {
    scans: Mutex<Bounded<ScanRecord>>,
    rewards: Mutex<Bounded<Reward>>,
    /// Each recorded task's user, oldest first, and every user's task ids in order.
    history: Mutex<(Bounded<String>, ByUser)>,
    write_latency: Duration,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_capacity(Duration::ZERO, DEFAULT_CAPACITY)
    }
}

/// Every user's task ids, oldest first.
type ByUser = HashMap<String, VecDeque<String>>;

/// What [`Bounded::entry`] did: `None` when the key was there already, else `Some` of the
/// entry evicted to make room, if any.
type Inserted<V> = Option<Option<(String, V)>>;

/// A map from task id that forgets its oldest entry once it holds `capacity`.
///
/// Once full, it makes room for twice `capacity` at once. A full map only swaps its oldest
/// entry for a new one, but each removal leaves a tombstone in the hash table, and when
/// tombstones and entries fill it the table rehashes: in place when the entries are under half
/// of its room, else into a table twice the size. At exactly `capacity` entries the table is
/// more than half full, so it used to double about 48,000 inserts after filling (80 s into a
/// steady 600 scans/s), a late step of a quarter of a service's memory that a soak read as
/// growth. Doubling when it fills puts that step at the end of the fill, and rehashing in place
/// keeps it flat from then on.
#[derive(Debug)]
struct Bounded<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
    capacity: usize,
    /// Whether the room for twice `capacity` was made.
    grown: bool,
}

impl<V> Bounded<V> {
    fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            grown: false,
        }
    }

    /// The entry of `key`, inserted with `value` when missing: the entry, and what inserting it
    /// did (`None` when `key` was there already; else the oldest entry, evicted to make room
    /// when full).
    fn entry(&mut self, key: &str, value: impl FnOnce() -> V) -> (&mut V, Inserted<V>) {
        let mut inserted = None;
        if !self.map.contains_key(key) {
            let mut evicted = None;
            if self.map.len() >= self.capacity
                && let Some(oldest) = self.order.pop_front()
            {
                evicted = self.map.remove(&oldest).map(|v| (oldest, v));
            }
            self.order.push_back(key.to_owned());
            if !self.grown && self.map.len() + 1 >= self.capacity {
                self.map.reserve(self.capacity + 1);
                self.grown = true;
            }
            inserted = Some(evicted);
        }
        (
            self.map.entry(key.to_owned()).or_insert_with(value),
            inserted,
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStore {
    /// A store whose result writes take `write_latency`, keeping [`DEFAULT_CAPACITY`] entries.
    pub fn new(write_latency: Duration) -> Self {
        Self::with_capacity(write_latency, DEFAULT_CAPACITY)
    }

    /// A store keeping at most `capacity` scans, rewards and history entries, each.
    pub fn with_capacity(write_latency: Duration, capacity: usize) -> Self {
        Self {
            scans: Mutex::new(Bounded::new(capacity)),
            rewards: Mutex::new(Bounded::new(capacity)),
            history: Mutex::new((Bounded::new(capacity), HashMap::new())),
            write_latency,
        }
    }

    fn update(&self, task_id: &str, f: impl FnOnce(&mut ScanRecord)) -> Result<(), StoreError> {
        match lock(&self.scans).map.get_mut(task_id) {
            Some(record) => {
                f(record);
                Ok(())
            }
            None => Err(StoreError::Unknown(task_id.to_owned())),
        }
    }
}

impl EventStore for MemoryStore {
    fn create(&self, record: ScanRecord) -> StoreFuture<'_, ()> {
        let key = record.task_id.clone();
        lock(&self.scans).entry(&key, || record);
        Box::pin(async { Ok(()) })
    }

    fn get(&self, task_id: &str) -> StoreFuture<'_, Option<ScanRecord>> {
        let found = lock(&self.scans).map.get(task_id).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn start_attempt(&self, record: ScanRecord) -> StoreFuture<'_, ScanRecord> {
        let key = record.task_id.clone();
        let mut scans = lock(&self.scans);
        let (entry, _) = scans.entry(&key, || record);
        entry.attempts += 1;
        let updated = entry.clone();
        Box::pin(async move { Ok(updated) })
    }

    fn complete(&self, task_id: &str, result: ScanResult) -> StoreFuture<'_, ()> {
        let task_id = task_id.to_owned();
        Box::pin(async move {
            tb_sim::wait(self.write_latency).await;
            self.update(&task_id, |r| {
                r.state = ScanState::Completed;
                r.result = Some(result);
                r.error = None;
            })
        })
    }

    fn mark_announced(&self, task_id: &str) -> StoreFuture<'_, ()> {
        let r = self.update(task_id, |r| r.announced = true);
        Box::pin(async move { r })
    }

    fn fail(&self, task_id: &str, error: &str) -> StoreFuture<'_, ()> {
        let r = self.update(task_id, |r| {
            r.state = ScanState::Failed;
            r.error = Some(error.to_owned());
        });
        Box::pin(async move { r })
    }
}

impl RewardStore for MemoryStore {
    fn has_reward(&self, task_id: &str) -> StoreFuture<'_, bool> {
        let found = lock(&self.rewards).map.contains_key(task_id);
        Box::pin(async move { Ok(found) })
    }

    fn record_reward(&self, reward: Reward) -> StoreFuture<'_, bool> {
        let key = reward.task_id.clone();
        let (_, inserted) = lock(&self.rewards).entry(&key, || reward);
        let new = inserted.is_some();
        Box::pin(async move { Ok(new) })
    }

    fn reward(&self, task_id: &str) -> StoreFuture<'_, Option<Reward>> {
        let found = lock(&self.rewards).map.get(task_id).cloned();
        Box::pin(async move { Ok(found) })
    }

    /// Rewards held: every one granted, until the store is full and the oldest go.
    fn reward_count(&self) -> StoreFuture<'_, u64> {
        let n = lock(&self.rewards).map.len() as u64;
        Box::pin(async move { Ok(n) })
    }
}

impl HistoryStore for MemoryStore {
    fn record_scan(&self, user_id: &str, task_id: &str) -> StoreFuture<'_, bool> {
        let mut guard = lock(&self.history);
        let (seen, by_user) = &mut *guard;
        let (_, inserted) = seen.entry(task_id, || user_id.to_owned());
        let new = inserted.is_some();
        if let Some(evicted) = inserted {
            // The oldest entry of all is the oldest of its user's.
            if let Some((_, user)) = evicted
                && let Some(tasks) = by_user.get_mut(&user)
            {
                tasks.pop_front();
                if tasks.is_empty() {
                    by_user.remove(&user);
                }
            }
            by_user
                .entry(user_id.to_owned())
                .or_default()
                .push_back(task_id.to_owned());
        }
        Box::pin(async move { Ok(new) })
    }

    fn history(&self, user_id: &str) -> StoreFuture<'_, Vec<String>> {
        let found = lock(&self.history)
            .1
            .get(user_id)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        Box::pin(async move { Ok(found) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_keeps_its_table_size_however_long_it_churns() {
        let capacity = 10_000;
        let mut map = Bounded::new(capacity);
        let mut at_fill = 0;
        for n in 0..capacity * 6 {
            map.entry(&format!("{n:032x}"), || n);
            if n + 1 == capacity {
                at_fill = map.map.capacity();
            }
        }
        assert_eq!(map.map.len(), capacity);
        // Without the room made at fill the table doubled about half a capacity later.
        assert!(at_fill >= 2 * capacity, "{at_fill}");
        assert!(
            map.map.capacity() <= at_fill,
            "{} > {at_fill}",
            map.map.capacity()
        );
    }

    #[tokio::test]
    async fn a_full_store_forgets_its_oldest_entries_and_nothing_else() {
        let store = MemoryStore::with_capacity(Duration::ZERO, 3);
        for t in ["t1", "t2", "t3", "t4"] {
            store.create(ScanRecord::new(t, "u1", "a")).await.ok();
            store
                .record_reward(Reward {
                    task_id: t.to_owned(),
                    user_id: "u1".to_owned(),
                    character: "c".to_owned(),
                })
                .await
                .ok();
            store
                .record_scan(if t == "t2" { "u2" } else { "u1" }, t)
                .await
                .ok();
        }
        assert_eq!(store.get("t1").await, Ok(None));
        assert!(store.get("t4").await.is_ok_and(|r| r.is_some()));
        // Updating a kept scan does not evict anything.
        store
            .start_attempt(ScanRecord::new("t2", "u1", "a"))
            .await
            .ok();
        assert!(store.get("t2").await.is_ok_and(|r| r.is_some()));
        assert_eq!(store.has_reward("t1").await, Ok(false));
        assert_eq!(store.reward_count().await, Ok(3));
        assert_eq!(
            store.history("u1").await,
            Ok(vec!["t3".to_owned(), "t4".to_owned()])
        );
        assert_eq!(store.history("u2").await, Ok(vec!["t2".to_owned()]));
        // A task forgotten from the history counts as new again.
        assert_eq!(store.record_scan("u1", "t1").await, Ok(true));
        assert_eq!(store.history("u2").await, Ok(vec![]));
    }
}
