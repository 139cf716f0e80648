//! [`QueuePauses`] once for both backends.

use async_trait::async_trait;

use super::{args, Arg, Columns, SqlBackend, Stmt};
use crate::store::queues::{PausedQueue, QueuePauses};
use crate::Result;

const PAUSE: Stmt<'static> = Stmt::write(
    "INSERT INTO queue_pauses (queue, paused_at, paused_by) VALUES ($1, $2, $3) \
     ON CONFLICT (queue) DO NOTHING",
);
const RESUME: Stmt<'static> = Stmt::write("DELETE FROM queue_pauses WHERE queue = $1");
const LIST: Stmt<'static> = Stmt::read("SELECT * FROM queue_pauses ORDER BY queue");

#[async_trait]
impl<S: SqlBackend> QueuePauses for S {
    async fn pause_queue(&self, queue: &str, by: &str) -> Result<bool> {
        Ok(self
            .execute(PAUSE, &[queue.into(), Arg::Now, by.into()])
            .await?
            > 0)
    }

    async fn resume_queue(&self, queue: &str) -> Result<bool> {
        Ok(self.execute(RESUME, &args![queue]).await? > 0)
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
