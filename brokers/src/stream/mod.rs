//! Event streams (`docs/events.md`): where the outbox's events go ([`EventSink`]) and where the
//! consumers read them from ([`EventSource`]).
//!
//! Two implementations of each: Kafka ([`kafka`], production: the relay publishes, consumer
//! groups read) and the outbox itself ([`OutboxSource`], the embedded default: with no Kafka the
//! consumers read the outbox directly, each with a cursor of its own).

#[cfg(feature = "kafka")]
pub mod kafka;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pysaas_jobs::events::{into_events, CloudEvent, Stream};

use crate::store::{EventOutbox, OutboxPosition};
use crate::Result;

/// How events are laid out in a message (the CloudEvents Kafka protocol binding's two modes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentMode {
    /// Attributes as `ce_*` headers, the data alone as the value.
    #[default]
    Binary,
    /// The whole event as one JSON value (`content-type: application/cloudevents+json`).
    Structured,
}

/// Where the relay publishes events.
#[async_trait]
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// For logs and metrics (`kafka`).
    fn name(&self) -> &'static str;

    /// Creates the streams' topics if they do not exist.
    async fn ensure_topics(&self) -> Result<()>;

    /// Publishes `events` in order (per tenant) and returns once every one is acknowledged; an
    /// error means some may not have been, and the caller publishes them all again (consumers
    /// drop ids they have seen).
    async fn publish(&self, events: &[(Stream, CloudEvent)]) -> Result<()>;
}

/// One event a consumer received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The stream it came on.
    pub stream: Stream,
    /// The event.
    pub event: CloudEvent,
}

/// Where a consumer reads events from: a batch at a time, committed after the consumer has
/// stored what it made of them.
#[async_trait]
pub trait EventSource: Send {
    /// The next events (at most `max`), waiting up to `wait` for the first; empty when none came.
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Received>>;

    /// Marks everything [`EventSource::next_batch`] returned so far as done: a restarted
    /// consumer resumes after it.
    async fn commit(&mut self) -> Result<()>;
}

/// The embedded default's source: the outbox itself, read through cursor `consumer`, the facts
/// turned into the events of `streams`. Its reads start at the committed cursor, so a consumer
/// commits after each batch (one it does not commit comes again only after a restart).
pub struct OutboxSource {
    outbox: Arc<dyn EventOutbox>,
    consumer: String,
    streams: Vec<Stream>,
    read_through: Option<OutboxPosition>,
    handed_out: bool,
}

impl std::fmt::Debug for OutboxSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxSource")
            .field("consumer", &self.consumer)
            .field("streams", &self.streams)
            .field("read_through", &self.read_through)
            .finish_non_exhaustive()
    }
}

impl OutboxSource {
    /// Reads `streams` from `outbox` with the cursor `consumer`.
    pub fn new(
        outbox: Arc<dyn EventOutbox>,
        consumer: impl Into<String>,
        streams: &[Stream],
    ) -> Self {
        OutboxSource {
            outbox,
            consumer: consumer.into(),
            streams: streams.to_vec(),
            read_through: None,
            handed_out: false,
        }
    }
}

/// How often an idle [`OutboxSource`] looks again.
const OUTBOX_POLL: Duration = Duration::from_millis(200);

#[async_trait]
impl EventSource for OutboxSource {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Received>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let entries = self.outbox.outbox_read(&self.consumer, max).await?;
            // Reads start after the committed cursor: a batch not yet committed is read again,
            // so skip what this source has already handed out.
            let fresh: Vec<_> = entries
                .into_iter()
                .filter(|e| self.read_through.is_none_or(|p| e.position > p))
                .collect();
            if let Some(last) = fresh.last() {
                self.read_through = Some(last.position);
                let mut out = Vec::new();
                for entry in fresh {
                    let id = entry.fact.id;
                    let events = match into_events(entry.fact) {
                        Ok(events) => events,
                        // As the publisher does: one bad fact is skipped, loudly, not the batch.
                        Err(err) => {
                            tracing::error!(event_id = %id, error = %err, "outbox fact skipped: it does not form an event");
                            continue;
                        }
                    };
                    out.extend(
                        events
                            .into_iter()
                            .filter(|(s, _)| self.streams.contains(s))
                            .map(|(stream, event)| Received { stream, event }),
                    );
                }
                if !out.is_empty() {
                    self.handed_out = true;
                    return Ok(out);
                }
                if !self.handed_out {
                    // Nothing of these streams and nothing uncommitted before: move on at once.
                    self.commit().await?;
                }
                continue;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            tokio::time::sleep(OUTBOX_POLL.min(deadline - now)).await;
        }
    }

    async fn commit(&mut self) -> Result<()> {
        if let Some(through) = self.read_through {
            self.outbox.outbox_commit(&self.consumer, through).await?;
        }
        self.handed_out = false;
        Ok(())
    }
}
