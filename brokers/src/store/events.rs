//! The event outbox (`docs/events.md`): facts recorded in the transaction of the change they
//! describe, read in commit order by named consumers (the Kafka relay, the embedded audit and
//! analytics consumers), each with its own cursor, and pruned once every consumer is past them
//! and they are older than the retention window.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::events::Fact;

use crate::Result;

/// A place in the outbox: `(txid, seq)`, ordered as a pair. SQLite's `txid` is always 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboxPosition {
    /// The recording transaction (PostgreSQL), 0 on SQLite.
    pub txid: i64,
    /// The row's sequence number.
    pub seq: i64,
}

/// A fact and where it is in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// Its place.
    pub position: OutboxPosition,
    /// What it records.
    pub fact: Fact,
}

/// What a consumer has yet to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxBacklog {
    /// Facts behind its cursor.
    pub pending: i64,
    /// When the oldest of them was recorded.
    pub oldest: Option<DateTime<Utc>>,
}

/// The event outbox.
#[async_trait]
pub trait EventOutbox: Send + Sync {
    /// Whether job transitions are recorded (`[events] enabled`). Shared by every process of the
    /// store; set at start-up by whoever applies the configuration.
    async fn set_events_enabled(&self, enabled: bool) -> Result<()>;

    /// Up to `limit` facts after `consumer`'s cursor (the start, for a consumer not seen before),
    /// in commit order; never a fact behind one a still-running transaction may yet commit.
    async fn outbox_read(&self, consumer: &str, limit: usize) -> Result<Vec<OutboxEntry>>;

    /// Moves `consumer`'s cursor forward to `through` (never back: a stale call is a no-op).
    async fn outbox_commit(&self, consumer: &str, through: OutboxPosition) -> Result<()>;

    /// Sets `consumer`'s cursor to just before the first fact recorded at or after `from`, so
    /// that it reads again from there (replay).
    async fn outbox_rewind(&self, consumer: &str, from: DateTime<Utc>) -> Result<()>;

    /// What `consumer` has yet to read.
    async fn outbox_backlog(&self, consumer: &str) -> Result<OutboxBacklog>;

    /// Records a fact of its own (nothing while events are off), for a change made outside
    /// this store — a profile written to DynamoDB — once that change is made. The two share no
    /// transaction: a crash between them loses this fact. Changes this store makes record
    /// theirs in their own transaction instead.
    async fn record_fact(
        &self,
        tenant_id: &str,
        event_type: &str,
        subject: &str,
        data: &serde_json::Value,
    ) -> Result<()>;

    /// Deletes up to `limit` facts recorded before `before` that every consumer has read.
    async fn outbox_prune(&self, before: DateTime<Utc>, limit: usize) -> Result<u64>;
}
