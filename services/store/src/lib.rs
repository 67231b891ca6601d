//! The scan event store: where scan-api records a task, the worker its attempts and result, and
//! where `GET /scan/{task_id}` reads them. A small async trait, so a real database can replace
//! the in-process [`MemoryStore`] later without touching the services.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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

/// The in-process store: a map behind a mutex, with a simulated write latency (the seed's
/// `save_to_event_store` takes 20 ms) applied to writes made on the worker's critical path.
#[derive(Debug, Default)]
pub struct MemoryStore {
    scans: Mutex<HashMap<String, ScanRecord>>,
    write_latency: Duration,
}

impl MemoryStore {
    /// A store whose result writes take `write_latency`.
    pub fn new(write_latency: Duration) -> Self {
        Self {
            scans: Mutex::default(),
            write_latency,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, ScanRecord>) -> T) -> T {
        f(&mut self.scans.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn update(&self, task_id: &str, f: impl FnOnce(&mut ScanRecord)) -> Result<(), StoreError> {
        self.with(|scans| match scans.get_mut(task_id) {
            Some(record) => {
                f(record);
                Ok(())
            }
            None => Err(StoreError::Unknown(task_id.to_owned())),
        })
    }

    async fn write_delay(&self) {
        tb_sim::wait(self.write_latency).await;
    }
}

impl EventStore for MemoryStore {
    fn create(&self, record: ScanRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.with(|scans| {
                scans.entry(record.task_id.clone()).or_insert(record);
            });
            Ok(())
        })
    }

    fn get(&self, task_id: &str) -> StoreFuture<'_, Option<ScanRecord>> {
        let found = self.with(|scans| scans.get(task_id).cloned());
        Box::pin(async move { Ok(found) })
    }

    fn start_attempt(&self, record: ScanRecord) -> StoreFuture<'_, ScanRecord> {
        Box::pin(async move {
            Ok(self.with(|scans| {
                let entry = scans.entry(record.task_id.clone()).or_insert(record);
                entry.attempts += 1;
                entry.clone()
            }))
        })
    }

    fn complete(&self, task_id: &str, result: ScanResult) -> StoreFuture<'_, ()> {
        let task_id = task_id.to_owned();
        Box::pin(async move {
            self.write_delay().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> ScanResult {
        ScanResult {
            category: "plastic".to_owned(),
            confidence: 0.9,
            rule: "recycle".to_owned(),
            answer: "rinse it".to_owned(),
        }
    }

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
}
