//! Dispatchers hand claimable jobs to workers. The store stays the source of truth; a dispatcher
//! only decides how workers learn about work. `store` (here) claims straight from the store;
//! message-broker dispatchers deliver ids that the worker then claims with
//! [`JobStore::claim_ids`], so a duplicate delivery is harmless.

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "redis")]
pub mod redis;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pysaas_jobs::Job;
use tokio::sync::watch;

use crate::{JobStore, Result};

/// How often an idle store consumer looks for work even without a wake-up: covers jobs made
/// claimable by another process that cannot wake this one (SQLite shared between processes).
pub const STORE_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What a consumer is for.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// The queue to consume.
    pub queue: String,
    /// The claiming worker's id (recorded on claimed jobs).
    pub worker_id: String,
    /// Lease taken on each claimed job.
    pub lease: Duration,
    /// Most jobs the worker holds at once from this consumer (running plus claimed ahead): a
    /// broker may deliver this many and more ahead of acknowledgements.
    pub capacity: usize,
}

/// Confirms a delivery to its transport once the job's outcome is recorded.
#[async_trait]
pub trait Ack: Send + Sync + fmt::Debug {
    /// Acknowledge; the transport forgets the message.
    async fn ack(self: Box<Self>) -> Result<()>;
}

/// A claimed job and, for broker transports, the handle that acknowledges its message.
#[derive(Debug)]
pub struct Delivery {
    /// The job, claimed (state `running`, a new attempt).
    pub job: Job,
    /// Acknowledge after the outcome is recorded (`None` for the store dispatcher).
    pub ack: Option<Box<dyn Ack>>,
}

/// A source of claimed jobs for one queue.
///
/// Claiming and waiting are split so that a worker can stop at any time: [`Self::wait`] is
/// cancel-safe (dropping it loses nothing), while [`Self::poll`] claims and must be awaited to
/// the end, or claimed jobs would sit `running` until their lease expires.
#[async_trait]
pub trait JobConsumer: Send + fmt::Debug {
    /// Claims up to `max` jobs that are available now; may return none.
    async fn poll(&mut self, max: usize) -> Result<Vec<Delivery>>;

    /// Resolves when a `poll` may find work (or after a poll interval). Cancel-safe.
    async fn wait(&mut self);

    /// The queue was paused: give back what the transport holds for this consumer and has not
    /// been claimed (a broker's prefetched messages), so that it waits in the broker, not here.
    /// The next `poll` resumes. Nothing to do for transports that hold nothing ahead.
    async fn pause(&mut self) {}
}

/// A job transport.
#[async_trait]
pub trait Dispatcher: Send + Sync + fmt::Debug + 'static {
    /// Transport name (`store`, `amqp`, `redis`).
    fn name(&self) -> &'static str;

    /// Announces jobs whose rows were just committed `queued`.
    async fn dispatch(&self, jobs: &[Job]) -> Result<()>;

    /// Opens a consumer.
    async fn consumer(&self, spec: ConsumerSpec) -> Result<Box<dyn JobConsumer>>;

    /// How many messages for `queue` the broker holds that no consumer has taken yet (`None`:
    /// not a broker, or it cannot tell). The relay announces queued jobs again only when this is
    /// 0: then any job still queued in the store was never announced, or its message was lost.
    async fn backlog(&self, _queue: &str) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Closes connections at shutdown (after the last ack).
    async fn close(&self) {}
}

/// Dispatch straight from the store: `SKIP LOCKED` batch claims woken by `LISTEN/NOTIFY`
/// (PostgreSQL) or in-process signals (SQLite).
#[derive(Debug, Clone)]
pub struct StoreDispatcher {
    store: Arc<dyn JobStore>,
    poll_interval: Duration,
}

impl StoreDispatcher {
    /// A dispatcher over `store`.
    pub fn new(store: Arc<dyn JobStore>) -> Self {
        StoreDispatcher {
            store,
            poll_interval: STORE_POLL_INTERVAL,
        }
    }

    /// Overrides [`STORE_POLL_INTERVAL`].
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
}

#[async_trait]
impl Dispatcher for StoreDispatcher {
    fn name(&self) -> &'static str {
        "store"
    }

    async fn dispatch(&self, _jobs: &[Job]) -> Result<()> {
        // The insert itself woke the consumers (NOTIFY in the same transaction, or in-process).
        Ok(())
    }

    async fn consumer(&self, spec: ConsumerSpec) -> Result<Box<dyn JobConsumer>> {
        Ok(Box::new(StoreConsumer {
            wake: self.store.wakeups(),
            store: self.store.clone(),
            spec,
            poll_interval: self.poll_interval,
        }))
    }
}

#[derive(Debug)]
struct StoreConsumer {
    store: Arc<dyn JobStore>,
    spec: ConsumerSpec,
    wake: watch::Receiver<u64>,
    poll_interval: Duration,
}

#[async_trait]
impl JobConsumer for StoreConsumer {
    async fn poll(&mut self, max: usize) -> Result<Vec<Delivery>> {
        // Mark the current wake-up as seen *before* claiming, so one that arrives while the
        // claim runs is not missed by the next `wait`.
        self.wake.borrow_and_update();
        let jobs = self
            .store
            .claim(&self.spec.queue, max, &self.spec.worker_id, self.spec.lease)
            .await?;
        Ok(jobs
            .into_iter()
            .map(|job| Delivery { job, ack: None })
            .collect())
    }

    async fn wait(&mut self) {
        match tokio::time::timeout(self.poll_interval, self.wake.changed()).await {
            Ok(Ok(())) | Err(_) => {}
            // The store is gone: degrade to plain polling.
            Ok(Err(_closed)) => tokio::time::sleep(self.poll_interval).await,
        }
    }
}
