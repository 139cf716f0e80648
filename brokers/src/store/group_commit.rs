//! Group commit: concurrent single-job inserts share one multi-row statement and one commit.
//! Each caller is answered only once the transaction holding its row has committed, so an
//! answer still means "durable"; what changes is that many callers pay for one round trip and
//! one WAL flush (PostgreSQL) or fsync (SQLite) between them.
//!
//! Batches form by themselves: while up to `concurrency` transactions are in flight, new
//! requests queue, and the next transaction takes all of them (up to `max_batch`). Under light
//! load a batch is one job and nothing waits; under heavy load batches grow with it.

use std::sync::Arc;

use pysaas_jobs::NewJob;
use tokio::sync::{mpsc, oneshot, Semaphore};

use pysaas_jobs::JobState;

use super::{Inserted, JobStore};
use crate::{Dispatcher, Result, StoreError};

/// Most jobs one group-commit transaction takes.
pub const GROUP_COMMIT_MAX_BATCH: usize = 1000;
/// Group-commit transactions in flight at once.
pub const GROUP_COMMIT_CONCURRENCY: usize = 4;

type Pending = (NewJob, oneshot::Sender<Result<Inserted>>);

/// A handle on the group-commit task (cheap to clone); the task ends with the last handle.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the task over `store` with the default batch size and concurrency. After each
    /// commit (and after answering), the batch's queued jobs are announced through
    /// `dispatcher` in one call; a failure there is logged and left to the relay.
    pub fn new(store: Arc<dyn JobStore>, dispatcher: Arc<dyn Dispatcher>) -> Self {
        Self::with(
            store,
            dispatcher,
            GROUP_COMMIT_MAX_BATCH,
            GROUP_COMMIT_CONCURRENCY,
        )
    }

    /// Starts the task with explicit limits.
    pub fn with(
        store: Arc<dyn JobStore>,
        dispatcher: Arc<dyn Dispatcher>,
        max_batch: usize,
        concurrency: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel(max_batch.max(1) * concurrency.max(1) * 2);
        tokio::spawn(run(
            store,
            dispatcher,
            rx,
            max_batch.max(1),
            concurrency.max(1),
        ));
        GroupCommit { tx }
    }

    /// Inserts `job` as [`JobStore::insert`] does, answered once its transaction committed.
    pub async fn insert(&self, job: NewJob) -> Result<Inserted> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((job, reply))
            .await
            .map_err(|_| StoreError::Config("the group-commit task has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Config("the group-commit task dropped a request".into()))?
    }
}

async fn run(
    store: Arc<dyn JobStore>,
    dispatcher: Arc<dyn Dispatcher>,
    mut rx: mpsc::Receiver<Pending>,
    max_batch: usize,
    concurrency: usize,
) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut pending: Vec<Pending> = Vec::with_capacity(max_batch);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut pending, max_batch).await == 0 {
            return;
        }
        let batch = std::mem::replace(&mut pending, Vec::with_capacity(max_batch));
        let (store, dispatcher) = (store.clone(), dispatcher.clone());
        tokio::spawn(async move {
            let (jobs, replies): (Vec<NewJob>, Vec<_>) = batch.into_iter().unzip();
            match store.insert(jobs).await {
                Ok(inserted) => {
                    let ready: Vec<_> = inserted
                        .iter()
                        .filter(|i| i.created && i.job.state == JobState::Queued)
                        .map(|i| i.job.clone())
                        .collect();
                    for (reply, row) in replies.into_iter().zip(inserted) {
                        let _ = reply.send(Ok(row));
                    }
                    if !ready.is_empty() {
                        if let Err(err) = dispatcher.dispatch(&ready).await {
                            // The rows are committed; the relay announces what the broker missed.
                            tracing::warn!(error = %err, jobs = ready.len(), "dispatch after commit failed");
                        }
                    }
                }
                Err(err) => {
                    let err = Arc::new(err);
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::Shared(err.clone())));
                    }
                }
            }
            drop(slot);
        });
    }
}
