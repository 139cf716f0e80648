//! Queue pauses: while a queue is paused, workers claim nothing from it (on every transport);
//! jobs still enqueue and wait. The flag lives in the store, so it outlives every process.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;

/// A paused queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedQueue {
    /// Queue name.
    pub queue: String,
    /// When it was paused.
    pub paused_at: DateTime<Utc>,
    /// Who paused it (a principal's description: user id or API key prefix).
    pub paused_by: String,
}

/// Pausing and resuming queues.
#[async_trait]
pub trait QueuePauses: Send + Sync {
    /// Pauses `queue`; `false` when it was paused already (the first pause is kept).
    async fn pause_queue(&self, queue: &str, by: &str) -> Result<bool>;

    /// Resumes `queue`; `false` when it was not paused.
    async fn resume_queue(&self, queue: &str) -> Result<bool>;

    /// Every paused queue, by name.
    async fn paused_queues(&self) -> Result<Vec<PausedQueue>>;
}
