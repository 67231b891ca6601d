//! The pipeline's state, behind three small async traits:
//!
//! - [`EventStore`]: where scan-api records a task, the worker its attempts and result, and
//!   where `GET /scan/{task_id}` reads them;
//! - [`RewardStore`]: the character consumer's rewards, one per task;
//! - [`HistoryStore`]: my consumer's per-user scan histories, each scan once.
//!
//! [`MemoryStore`] keeps them in process memory (the default: each process has its own, and a
//! restart forgets). [`PgStore`] keeps them in PostgreSQL, shared by every process of a run and
//! kept across restarts, so a restarted consumer never grants twice. [`Stores::open`] picks one.

mod memory;
mod postgres;
#[cfg(feature = "testing")]
pub mod testing;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use memory::{DEFAULT_CAPACITY as MEMORY_CAPACITY, MemoryStore};
pub use postgres::{DEFAULT_SCHEMA, DEFAULT_URL, PgConfig, PgStore, URL_ENV, valid_schema};

/// A boxed future, so the trait stays object-safe (`Arc<dyn EventStore>`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where a scan is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanState {
    /// Accepted, not finished.
    Processing,
    /// Finished with a result.
    Completed,
    /// Gave up after the last retry.
    Failed,
}

/// What a finished scan produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanResult {
    /// The Vision API's category.
    pub category: String,
    /// The Vision API's confidence.
    pub confidence: f64,
    /// The rule that matched.
    pub rule: String,
    /// The LLM's answer.
    pub answer: String,
}

/// One scan as the store knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanRecord {
    /// Task id.
    pub task_id: String,
    /// Who scanned.
    pub user_id: String,
    /// What was scanned.
    pub image_url: String,
    /// Where the scan is.
    pub state: ScanState,
    /// Attempts started so far (1 on the first).
    pub attempts: u32,
    /// The result, once completed.
    pub result: Option<ScanResult>,
    /// The last error, once failed.
    pub error: Option<String>,
    /// Whether `scan.completed` was confirmed by Kafka: a redelivered task that was saved but
    /// not yet announced must still announce, one that was announced must not again.
    pub announced: bool,
}

impl ScanRecord {
    /// A freshly accepted scan.
    pub fn new(task_id: &str, user_id: &str, image_url: &str) -> Self {
        Self {
            task_id: task_id.to_owned(),
            user_id: user_id.to_owned(),
            image_url: image_url.to_owned(),
            state: ScanState::Processing,
            attempts: 0,
            result: None,
            error: None,
            announced: false,
        }
    }
}

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No scan with that task id.
    #[error("unknown task {0}")]
    Unknown(String),
    /// The database could not be reached or refused the statement; the caller retries later.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// The store's configuration is invalid (an unusable URL or schema name).
    #[error("event store configuration: {0}")]
    Config(String),
}

/// The operations the pipeline needs. Each is idempotent where a redelivery can repeat it.
pub trait EventStore: Send + Sync + 'static {
    /// Records a scan; an existing record with the same task id is kept as it is, so a task
    /// published twice is still one scan.
    fn create(&self, record: ScanRecord) -> StoreFuture<'_, ()>;
    /// The scan, if known.
    fn get(&self, task_id: &str) -> StoreFuture<'_, Option<ScanRecord>>;
    /// Counts an attempt starting; creates the record when the task came from elsewhere (a
    /// Python client) and scan-api never saw it. Returns the record after the update.
    fn start_attempt(&self, record: ScanRecord) -> StoreFuture<'_, ScanRecord>;
    /// Saves the result and marks the scan completed.
    fn complete(&self, task_id: &str, result: ScanResult) -> StoreFuture<'_, ()>;
    /// Marks `scan.completed` as confirmed by Kafka.
    fn mark_announced(&self, task_id: &str) -> StoreFuture<'_, ()>;
    /// Marks the scan failed with `error`.
    fn fail(&self, task_id: &str, error: &str) -> StoreFuture<'_, ()>;
}

/// A reward: the character a scan earned its user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    /// The scan's task id: one reward per task.
    pub task_id: String,
    /// Who earned it.
    pub user_id: String,
    /// The character granted.
    pub character: String,
}

/// The character consumer's rewards, one per task, so a redelivered event never grants twice.
pub trait RewardStore: Send + Sync + 'static {
    /// Whether `task_id` has a reward.
    fn has_reward(&self, task_id: &str) -> StoreFuture<'_, bool>;
    /// Records `reward`; false (and nothing changes) when its task had one already.
    fn record_reward(&self, reward: Reward) -> StoreFuture<'_, bool>;
    /// The reward of `task_id`, if granted.
    fn reward(&self, task_id: &str) -> StoreFuture<'_, Option<Reward>>;
    /// How many rewards were granted.
    fn reward_count(&self) -> StoreFuture<'_, u64>;
}

/// My consumer's scan histories: every user's task ids, each recorded once.
pub trait HistoryStore: Send + Sync + 'static {
    /// Appends `task_id` to `user_id`'s history; false when the task was recorded already.
    fn record_scan(&self, user_id: &str, task_id: &str) -> StoreFuture<'_, bool>;
    /// `user_id`'s task ids in the order recorded.
    fn history(&self, user_id: &str) -> StoreFuture<'_, Vec<String>>;
}

/// Where the pipeline keeps its state.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StoreChoice {
    /// In process memory: each process its own, gone at exit.
    #[default]
    Memory,
    /// In PostgreSQL: shared by the run's processes and kept across restarts.
    Postgres(PgConfig),
}

/// The three stores of one pipeline, as one backend provides them.
#[derive(Clone)]
pub struct Stores {
    /// Scans: tasks, attempts, results.
    pub events: Arc<dyn EventStore>,
    /// The character consumer's rewards.
    pub rewards: Arc<dyn RewardStore>,
    /// My consumer's histories.
    pub history: Arc<dyn HistoryStore>,
}

impl Stores {
    /// Process memory, with `write_latency` simulated on the worker's result writes.
    pub fn memory(write_latency: Duration) -> Self {
        Self::of(Arc::new(MemoryStore::new(write_latency)))
    }

    /// The stores `choice` names. PostgreSQL pays its real write time, so `write_latency`
    /// applies to the memory store only.
    ///
    /// # Errors
    ///
    /// Fails when PostgreSQL cannot be reached or its tables cannot be created.
    pub async fn open(choice: &StoreChoice, write_latency: Duration) -> Result<Self, StoreError> {
        match choice {
            StoreChoice::Memory => Ok(Self::memory(write_latency)),
            StoreChoice::Postgres(config) => Ok(Self::of(Arc::new(PgStore::open(config).await?))),
        }
    }

    fn of<S: EventStore + RewardStore + HistoryStore>(store: Arc<S>) -> Self {
        Self {
            events: store.clone(),
            rewards: store.clone(),
            history: store,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::sample_result as result;

    #[tokio::test]
    async fn a_scan_moves_from_processing_to_completed_and_announced() {
        let store = MemoryStore::default();
        store
            .create(ScanRecord::new("t1", "u1", "http://x/a.jpg"))
            .await
            .ok();
        let r = store
            .start_attempt(ScanRecord::new("t1", "ignored", "ignored"))
            .await;
        assert_eq!(
            r.as_ref().map(|r| (r.attempts, r.user_id.as_str())),
            Ok((1, "u1"))
        );
        store.complete("t1", result()).await.ok();
        store.mark_announced("t1").await.ok();
        let got = store.get("t1").await.ok().flatten();
        assert_eq!(got.as_ref().map(|r| r.state), Some(ScanState::Completed));
        assert_eq!(got.as_ref().map(|r| r.announced), Some(true));
        assert_eq!(got.and_then(|r| r.result), Some(result()));
    }

    #[tokio::test]
    async fn creating_twice_keeps_the_first_record_and_unknown_tasks_are_errors() {
        let store = MemoryStore::default();
        store.create(ScanRecord::new("t1", "u1", "a")).await.ok();
        store
            .start_attempt(ScanRecord::new("t1", "u1", "a"))
            .await
            .ok();
        store.create(ScanRecord::new("t1", "u2", "b")).await.ok();
        let got = store.get("t1").await.ok().flatten();
        assert_eq!(
            got.map(|r| (r.user_id, r.attempts)),
            Some(("u1".to_owned(), 1))
        );
        assert_eq!(
            store.complete("nope", result()).await,
            Err(StoreError::Unknown("nope".to_owned()))
        );
        assert_eq!(store.get("nope").await, Ok(None));
    }

    #[tokio::test]
    async fn memory_rewards_and_histories_count_each_task_once() {
        let store = MemoryStore::default();
        let reward = |task: &str| Reward {
            task_id: task.to_owned(),
            user_id: "u1".to_owned(),
            character: "glass-guardian".to_owned(),
        };
        assert_eq!(store.record_reward(reward("t1")).await, Ok(true));
        assert_eq!(store.record_reward(reward("t1")).await, Ok(false));
        assert_eq!(store.has_reward("t1").await, Ok(true));
        assert_eq!(store.has_reward("t2").await, Ok(false));
        assert_eq!(store.reward_count().await, Ok(1));
        assert_eq!(store.reward("t1").await, Ok(Some(reward("t1"))));
        assert_eq!(store.record_scan("u1", "t1").await, Ok(true));
        assert_eq!(store.record_scan("u1", "t2").await, Ok(true));
        assert_eq!(store.record_scan("u1", "t1").await, Ok(false));
        assert_eq!(
            store.history("u1").await,
            Ok(vec!["t1".to_owned(), "t2".to_owned()])
        );
        assert_eq!(store.history("u2").await, Ok(vec![]));
    }
}
