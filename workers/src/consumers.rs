//! The event consumers (`docs/events.md`): the audit log writer and the analytics rollups, each
//! reading its stream from an [`EventSource`] — a Kafka consumer group, or the outbox itself in
//! the embedded default — and committing only after the store has what it made of a batch. Both
//! writes are idempotent by event id, so a batch seen again (a restart before the commit, a
//! republished batch) changes nothing.

use std::sync::Arc;
use std::time::Duration;

use pysaas_brokers::stream::{EventSource, Received};
use pysaas_brokers::JobStore;
use pysaas_jobs::events::{CloudEvent, Stream};
use tokio_util::sync::CancellationToken;

/// Most events per batch.
const BATCH: usize = 1000;
/// How long a read waits for the first event of a batch.
const WAIT: Duration = Duration::from_secs(1);
/// The longest pause between retries while the source or the store fails.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Which consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// Writes the audit stream to the audit log.
    Audit,
    /// Counts the analytics stream into the rollups.
    Analytics,
}

impl Consumer {
    /// Both.
    pub const ALL: [Consumer; 2] = [Consumer::Audit, Consumer::Analytics];

    /// Its name: the outbox cursor and, prefixed, the Kafka consumer group.
    pub fn name(self) -> &'static str {
        match self {
            Consumer::Audit => "audit",
            Consumer::Analytics => "analytics",
        }
    }

    /// The stream it reads.
    pub fn stream(self) -> Stream {
        match self {
            Consumer::Audit => Stream::Audit,
            Consumer::Analytics => Stream::Analytics,
        }
    }

    async fn record(
        self,
        store: &dyn JobStore,
        events: &[CloudEvent],
    ) -> pysaas_brokers::Result<u64> {
        match self {
            Consumer::Audit => store.record_audit(events).await,
            Consumer::Analytics => store.record_analytics(events).await,
        }
    }
}

/// Runs `consumer` over `source` until `shutdown`.
pub async fn run(
    consumer: Consumer,
    mut source: Box<dyn EventSource>,
    store: Arc<dyn JobStore>,
    shutdown: CancellationToken,
) {
    let name = consumer.name();
    let mut backoff = Duration::from_millis(100);
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return,
            batch = source.next_batch(BATCH, WAIT) => batch,
        };
        let events: Vec<CloudEvent> = match batch {
            Ok(batch) => batch
                .into_iter()
                .filter(|r: &Received| r.stream == consumer.stream())
                .map(|r| r.event)
                .collect(),
            Err(err) => {
                tracing::warn!(consumer = name, error = %err, "reading events failed; retrying");
                if pause(&shutdown, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        // The same batch until the store takes it: the source has moved past it.
        loop {
            match consumer.record(store.as_ref(), &events).await {
                Ok(new) => {
                    metrics::counter!("pysaas_events_consumed_total", "consumer" => name)
                        .increment(new);
                    break;
                }
                Err(err) => {
                    tracing::warn!(consumer = name, events = events.len(), error = %err, "storing events failed; retrying");
                    if pause(&shutdown, &mut backoff).await {
                        return;
                    }
                }
            }
        }
        match source.commit().await {
            Ok(()) => backoff = Duration::from_millis(100),
            // Not fatal: the batch comes again after a restart and counts nothing twice.
            Err(err) => {
                tracing::warn!(consumer = name, error = %err, "committing the read position failed")
            }
        }
    }
}

/// Waits `backoff` (then doubles it); `true` when shutting down.
async fn pause(shutdown: &CancellationToken, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(wait) => false,
    }
}
