//! The event publisher (leader only): moves the outbox's facts to the event sink (Kafka) in
//! outbox order — read a batch after the cursor, publish every event it stands for, wait for the
//! acknowledgements, move the cursor past the batch — so an event is published once it is
//! committed, in commit order, and the cursor only passes what the sink has acknowledged.
//!
//! While the sink is unreachable the cursor stands and the outbox grows
//! (`pysaas_outbox_pending`, `pysaas_outbox_oldest_seconds`); the batch is retried with backoff
//! and the backlog drains in order afterwards. The producer retries a message itself for
//! `message.timeout.ms`, without duplicates; only a batch that failed as a whole (or a leader
//! that stopped between the acknowledgement and the cursor's move) is published again, and the
//! consumers drop ids they have already seen.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pysaas_brokers::stream::EventSink;
use pysaas_brokers::JobStore;
use pysaas_jobs::events::into_events;
use tokio_util::sync::CancellationToken;

/// The outbox cursor the publisher reads with.
pub const CURSOR: &str = "kafka";
/// Most facts per batch.
pub const BATCH: usize = 2000;
/// How long an idle publisher waits before looking again.
pub const DEFAULT_PUBLISH_INTERVAL: Duration = Duration::from_millis(50);
/// The longest wait between retries while the sink is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the backlog gauges are refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(1);

/// Registers the publisher's metrics' help texts.
pub fn describe_metrics() {
    metrics::describe_gauge!(
        "pysaas_outbox_pending",
        "Outbox facts the event publisher has yet to publish"
    );
    metrics::describe_gauge!(
        "pysaas_outbox_oldest_seconds",
        "Age of the oldest outbox fact the event publisher has yet to publish"
    );
    metrics::describe_counter!(
        "pysaas_events_published_total",
        "Events published to the event stream"
    );
}

/// One pass: publishes up to one batch and returns how many facts it moved past.
pub async fn publish_once(
    store: &dyn JobStore,
    sink: &dyn EventSink,
) -> pysaas_brokers::Result<u64> {
    let entries = store.outbox_read(CURSOR, BATCH).await?;
    let Some(last) = entries.last().map(|e| e.position) else {
        return Ok(0);
    };
    let facts = entries.len() as u64;
    let mut events = Vec::with_capacity(entries.len() * 3);
    for entry in entries {
        let id = entry.fact.id;
        match into_events(entry.fact) {
            Ok(of) => events.extend(of),
            // A fact that cannot become an event would block the stream for good: skip it, loudly.
            Err(err) => {
                tracing::error!(event_id = %id, error = %err, "outbox fact skipped: it does not form an event")
            }
        }
    }
    sink.publish(&events).await?;
    store.outbox_commit(CURSOR, last).await?;
    metrics::counter!("pysaas_events_published_total").increment(events.len() as u64);
    Ok(facts)
}

async fn refresh_gauges(store: &dyn JobStore) {
    match store.outbox_backlog(CURSOR).await {
        Ok(backlog) => {
            metrics::gauge!("pysaas_outbox_pending").set(backlog.pending as f64);
            let age = backlog
                .oldest
                .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics::gauge!("pysaas_outbox_oldest_seconds").set(age);
        }
        Err(err) => tracing::warn!(error = %err, "reading the outbox backlog failed"),
    }
}

/// Runs the publisher until `shutdown`: creates the topics if it can, then publishes batch
/// after batch.
pub async fn run(
    store: Arc<dyn JobStore>,
    sink: Arc<dyn EventSink>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut backoff = interval;
    // Topics made by hand (a cluster that refuses the admin call) serve as well: a failure is
    // reported and publishing goes on; a missing topic then fails the publish, which retries.
    if let Err(err) = sink.ensure_topics().await {
        tracing::warn!(sink = sink.name(), error = %err, "could not create the event topics; publishing to them as they are");
    }
    let mut gauged = tokio::time::Instant::now();
    refresh_gauges(store.as_ref()).await;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        // A publish waits for acknowledgements, which an outage can hold back for the
        // producer's message timeout: stopping drops it (the next leader publishes the batch).
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => break,
            outcome = publish_once(store.as_ref(), sink.as_ref()) => outcome,
        };
        let pause = match outcome {
            Ok(n) if n as usize >= BATCH => {
                backoff = interval;
                Duration::ZERO
            }
            Ok(_) => {
                backoff = interval;
                interval
            }
            Err(err) => {
                tracing::warn!(sink = sink.name(), error = %err, "publishing events failed; the batch is retried");
                // A topic missing because the cluster was down at start is made now.
                let _ = sink.ensure_topics().await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                backoff
            }
        };
        if gauged.elapsed() >= GAUGE_EVERY {
            refresh_gauges(store.as_ref()).await;
            gauged = tokio::time::Instant::now();
        }
        if !pause.is_zero() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
    metrics::gauge!("pysaas_outbox_pending").set(0.0);
    metrics::gauge!("pysaas_outbox_oldest_seconds").set(0.0);
}
