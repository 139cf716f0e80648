//! [`JobStats`] once for both backends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Arg, Columns, SqlBackend, Stmt};
use crate::store::stats::{JobStats, MinuteStats, WAIT_BUCKETS};
use crate::Result;

const ADD: Stmt<'static> = Stmt::write(
    "INSERT INTO job_stats (tenant_id, queue, minute, succeeded, failed, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
     ON CONFLICT (tenant_id, minute, queue) DO UPDATE SET \
         succeeded = job_stats.succeeded + excluded.succeeded, \
         failed = job_stats.failed + excluded.failed, w0 = job_stats.w0 + excluded.w0, w1 = job_stats.w1 + excluded.w1, w2 = job_stats.w2 + excluded.w2, w3 = job_stats.w3 + excluded.w3, w4 = job_stats.w4 + excluded.w4, w5 = job_stats.w5 + excluded.w5, w6 = job_stats.w6 + excluded.w6, w7 = job_stats.w7 + excluded.w7, w8 = job_stats.w8 + excluded.w8, w9 = job_stats.w9 + excluded.w9, w10 = job_stats.w10 + excluded.w10, w11 = job_stats.w11 + excluded.w11, w12 = job_stats.w12 + excluded.w12, w13 = job_stats.w13 + excluded.w13, w14 = job_stats.w14 + excluded.w14, w15 = job_stats.w15 + excluded.w15",
);
const SINCE: Stmt<'static> = Stmt::read(
    "SELECT * FROM job_stats WHERE tenant_id = $1 AND minute >= $2 ORDER BY minute, queue",
);
const PRUNE: Stmt<'static> = Stmt::write("DELETE FROM job_stats WHERE minute < $1");

fn stats_from_row<R: Columns>(row: &R) -> Result<MinuteStats> {
    let mut wait = [0; WAIT_BUCKETS];
    for (i, slot) in wait.iter_mut().enumerate() {
        *slot = row.big(format!("w{i}").as_str())?;
    }
    Ok(MinuteStats {
        tenant_id: row.text("tenant_id")?,
        queue: row.text("queue")?,
        minute: row.time("minute")?,
        succeeded: row.big("succeeded")?,
        failed: row.big("failed")?,
        wait,
    })
}

#[async_trait]
impl<S: SqlBackend> JobStats for S {
    async fn add_stats(&self, stats: &[MinuteStats]) -> Result<()> {
        // Every process upserts its rows in the key's order, so that two flushes touching the
        // same minutes wait for each other instead of deadlocking.
        let mut ordered: Vec<&MinuteStats> = stats.iter().collect();
        ordered.sort_by(|a, b| {
            (&a.tenant_id, a.minute, &a.queue).cmp(&(&b.tenant_id, b.minute, &b.queue))
        });
        let args: Vec<Vec<Arg<'_>>> = ordered
            .into_iter()
            .map(|s| {
                let mut args: Vec<Arg<'_>> = vec![
                    s.tenant_id.as_str().into(),
                    s.queue.as_str().into(),
                    s.minute.into(),
                    s.succeeded.into(),
                    s.failed.into(),
                ];
                args.extend(s.wait.iter().map(|&n| Arg::from(n)));
                args
            })
            .collect();
        let steps: Vec<(Stmt<'_>, &[Arg<'_>])> = args.iter().map(|a| (ADD, a.as_slice())).collect();
        // All rows or none, so that a failed flush can be retried whole.
        self.execute_all(&steps).await?;
        Ok(())
    }

    async fn stats_since(&self, tenant_id: &str, since: DateTime<Utc>) -> Result<Vec<MinuteStats>> {
        let rows = self
            .fetch_all(SINCE, &[tenant_id.into(), since.into()])
            .await?;
        rows.iter().map(stats_from_row).collect()
    }

    async fn prune_stats(&self, before: DateTime<Utc>) -> Result<u64> {
        self.execute(PRUNE, &[before.into()]).await
    }
}
