//! Records "announced to the broker" marks in batches, off the publishing path. A mark that is
//! lost (the process dies first) only means the relay announces that job once more, which the
//! conditional claim makes harmless.

use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::JobStore;

/// Most marks written in one statement.
const MARK_BATCH: usize = 5000;
/// Marks waiting to be written before publishers wait for the writer.
const MARK_BACKLOG: usize = 100_000;

/// Batches `mark_dispatched` calls for a broker dispatcher.
#[derive(Debug, Clone)]
pub(crate) struct DispatchMarker {
    store: Arc<dyn JobStore>,
    tx: Arc<OnceLock<mpsc::Sender<Uuid>>>,
}

impl DispatchMarker {
    pub(crate) fn new(store: Arc<dyn JobStore>) -> Self {
        DispatchMarker {
            store,
            tx: Arc::new(OnceLock::new()),
        }
    }

    /// Queues marks for `ids` (the writer task starts on first use).
    pub(crate) async fn mark(&self, ids: Vec<Uuid>) {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(MARK_BACKLOG);
            tokio::spawn(write(self.store.clone(), rx));
            tx
        });
        for id in ids {
            if tx.send(id).await.is_err() {
                return;
            }
        }
    }
}

async fn write(store: Arc<dyn JobStore>, mut rx: mpsc::Receiver<Uuid>) {
    let mut ids = Vec::with_capacity(MARK_BATCH);
    while rx.recv_many(&mut ids, MARK_BATCH).await > 0 {
        if let Err(err) = store.mark_dispatched(&ids).await {
            // Harmless: the relay will announce these jobs again.
            tracing::warn!(error = %err, jobs = ids.len(), "recording dispatch marks failed");
        }
        ids.clear();
    }
}
