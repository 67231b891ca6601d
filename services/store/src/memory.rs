//! State in process memory: maps behind mutexes.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::{
    EventStore, HistoryStore, Reward, RewardStore, ScanRecord, ScanResult, ScanState, StoreError,
    StoreFuture,
};

/// The in-process store: maps behind mutexes, with a simulated write latency (the seed's
/// `save_to_event_store` takes 20 ms) applied to writes made on the worker's critical path.
#[derive(Debug, Default)]
pub struct MemoryStore {
    scans: Mutex<HashMap<String, ScanRecord>>,
    rewards: Mutex<HashMap<String, Reward>>,
    history: Mutex<Histories>,
    write_latency: Duration,
}

/// Every user's task ids in order, and every task id recorded.
#[derive(Debug, Default)]
struct Histories {
    by_user: HashMap<String, Vec<String>>,
    seen: HashSet<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStore {
    /// A store whose result writes take `write_latency`.
    pub fn new(write_latency: Duration) -> Self {
        Self {
            write_latency,
            ..Self::default()
        }
    }

    fn update(&self, task_id: &str, f: impl FnOnce(&mut ScanRecord)) -> Result<(), StoreError> {
        match lock(&self.scans).get_mut(task_id) {
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
        lock(&self.scans)
            .entry(record.task_id.clone())
            .or_insert(record);
        Box::pin(async { Ok(()) })
    }

    fn get(&self, task_id: &str) -> StoreFuture<'_, Option<ScanRecord>> {
        let found = lock(&self.scans).get(task_id).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn start_attempt(&self, record: ScanRecord) -> StoreFuture<'_, ScanRecord> {
        let mut scans = lock(&self.scans);
        let entry = scans.entry(record.task_id.clone()).or_insert(record);
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
        let found = lock(&self.rewards).contains_key(task_id);
        Box::pin(async move { Ok(found) })
    }

    fn record_reward(&self, reward: Reward) -> StoreFuture<'_, bool> {
        let mut rewards = lock(&self.rewards);
        let new = !rewards.contains_key(&reward.task_id);
        if new {
            rewards.insert(reward.task_id.clone(), reward);
        }
        Box::pin(async move { Ok(new) })
    }

    fn reward(&self, task_id: &str) -> StoreFuture<'_, Option<Reward>> {
        let found = lock(&self.rewards).get(task_id).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn reward_count(&self) -> StoreFuture<'_, u64> {
        let n = lock(&self.rewards).len() as u64;
        Box::pin(async move { Ok(n) })
    }
}

impl HistoryStore for MemoryStore {
    fn record_scan(&self, user_id: &str, task_id: &str) -> StoreFuture<'_, bool> {
        let mut h = lock(&self.history);
        let new = h.seen.insert(task_id.to_owned());
        if new {
            h.by_user
                .entry(user_id.to_owned())
                .or_default()
                .push(task_id.to_owned());
        }
        Box::pin(async move { Ok(new) })
    }

    fn history(&self, user_id: &str) -> StoreFuture<'_, Vec<String>> {
        let found = lock(&self.history)
            .by_user
            .get(user_id)
            .cloned()
            .unwrap_or_default();
        Box::pin(async move { Ok(found) })
    }
}
