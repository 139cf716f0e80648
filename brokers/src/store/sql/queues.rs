//! [`QueuePauses`] once for both backends.

use async_trait::async_trait;

use pysaas_jobs::events::{QueueAction, QUEUE_PAUSED, QUEUE_RESUMED};

use super::{args, Arg, Columns, SqlBackend, SqlTx, Stmt};
use crate::store::queues::{PausedQueue, QueuePauses};
use crate::Result;

const PAUSE: Stmt<'static> = Stmt::write(
    "INSERT INTO queue_pauses (queue, paused_at, paused_by) VALUES ($1, $2, $3) \
     ON CONFLICT (queue) DO NOTHING",
);
const RESUME: Stmt<'static> = Stmt::write("DELETE FROM queue_pauses WHERE queue = $1");
const LIST: Stmt<'static> = Stmt::read("SELECT * FROM queue_pauses ORDER BY queue");

/// Pauses and resumes are the operator's, whose tenant is `default`.
const OPERATOR_TENANT: &str = "default";

/// Runs `stmt` and, when it changed something, records `event_type` about `queue` in the same
/// transaction.
async fn with_fact<S: SqlBackend>(
    store: &S,
    stmt: Stmt<'_>,
    args: &[Arg<'_>],
    event_type: &str,
    action: &QueueAction,
) -> Result<bool> {
    let mut tx = store.begin_tx().await?;
    let changed = tx.execute(stmt, args).await? > 0;
    if changed {
        let subject = format!("queues/{}", action.queue);
        super::events::record_event(&mut tx, OPERATOR_TENANT, event_type, &subject, action).await?;
    }
    tx.commit_tx().await?;
    Ok(changed)
}

#[async_trait]
impl<S: SqlBackend> QueuePauses for S {
    async fn pause_queue(&self, queue: &str, by: &str) -> Result<bool> {
        let action = QueueAction {
            queue: queue.to_owned(),
            by: Some(by.to_owned()),
        };
        with_fact(
            self,
            PAUSE,
            &[queue.into(), Arg::Now, by.into()],
            QUEUE_PAUSED,
            &action,
        )
        .await
    }

    async fn resume_queue(&self, queue: &str) -> Result<bool> {
        let action = QueueAction {
            queue: queue.to_owned(),
            by: None,
        };
        with_fact(self, RESUME, &args![queue], QUEUE_RESUMED, &action).await
    }

    async fn paused_queues(&self) -> Result<Vec<PausedQueue>> {
        let rows = self.fetch_all(LIST, &[]).await?;
        rows.iter()
            .map(|row| {
                Ok(PausedQueue {
                    queue: row.text("queue")?,
                    paused_at: row.time("paused_at")?,
                    paused_by: row.text("paused_by")?,
                })
            })
            .collect()
    }
}
