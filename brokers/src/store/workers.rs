//! Worker processes, kept by their heartbeats: what runs where, how busy, last heard from.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;

/// A worker process as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Worker id (host, pid and a random suffix).
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i64,
    /// PySaaS version.
    pub version: String,
    /// Queues it consumes.
    pub queues: Vec<String>,
    /// Jobs it runs at once, over all its queues.
    pub concurrency: i32,
    /// Jobs it was running at its last report.
    pub busy: i32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last report (set by the store when reported).
    pub last_seen: DateTime<Utc>,
}

/// The registry of worker processes.
#[async_trait]
pub trait WorkerRegistry: Send + Sync {
    /// Records a worker's report (creating or replacing its row), seen now.
    async fn report_worker(&self, worker: &WorkerInfo) -> Result<()>;

    /// Every worker that reported, most recently seen first.
    async fn workers(&self) -> Result<Vec<WorkerInfo>>;

    /// Removes a worker (its clean shutdown).
    async fn remove_worker(&self, id: &str) -> Result<()>;

    /// Removes workers silent since before `silent_since`; returns how many.
    async fn forget_workers(&self, silent_since: DateTime<Utc>) -> Result<u64>;
}
