//! The JSON events on Kafka: what the worker announces and what the character consumer grants.

use serde::{Deserialize, Serialize};

/// `scan.completed`: the worker finished a scan. Keyed by `user_id`, so one user's scans stay in
/// order on one partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanCompleted {
    /// The scan's task id.
    pub task_id: String,
    /// Who scanned.
    pub user_id: String,
    /// What was scanned.
    pub image_url: String,
    /// The Vision API's category.
    pub category: String,
    /// The Vision API's confidence.
    pub confidence: f64,
    /// The rule that matched the category.
    pub rule: String,
    /// The LLM's answer.
    pub answer: String,
}

/// `character.granted`: a character reward for a scan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharacterGranted {
    /// The scan that earned it.
    pub task_id: String,
    /// Who receives it.
    pub user_id: String,
    /// The character granted.
    pub character: String,
}
