//! [`WorkerRegistry`] once for both backends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{args, Arg, Columns, SqlBackend, Stmt};
use crate::store::workers::{WorkerInfo, WorkerRegistry};
use crate::Result;

/// A worker's report; `{now}` is the time it is seen (the server's clock where there is one, so
/// that it compares with `JobStore::now`).
const REPORT: &str =
    "INSERT INTO workers (id, host, pid, version, queues, concurrency, busy, started_at, last_seen) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {now}) \
     ON CONFLICT (id) DO UPDATE SET queues = excluded.queues, concurrency = excluded.concurrency, \
         busy = excluded.busy, last_seen = excluded.last_seen";
const LIST: Stmt<'static> = Stmt::read("SELECT * FROM workers ORDER BY last_seen DESC, id");
const REMOVE: Stmt<'static> = Stmt::write("DELETE FROM workers WHERE id = $1");
const FORGET: Stmt<'static> = Stmt::write("DELETE FROM workers WHERE last_seen < $1");

fn worker_from_row<R: Columns>(row: &R) -> Result<WorkerInfo> {
    Ok(WorkerInfo {
        id: row.text("id")?,
        host: row.text("host")?,
        pid: row.big("pid")?,
        version: row.text("version")?,
        queues: crate::store::split_scopes(&row.text("queues")?),
        concurrency: row.int("concurrency")?,
        busy: row.int("busy")?,
        started_at: row.time("started_at")?,
        last_seen: row.time("last_seen")?,
    })
}

#[async_trait]
impl<S: SqlBackend> WorkerRegistry for S {
    async fn report_worker(&self, w: &WorkerInfo) -> Result<()> {
        let queues = w.queues.join(" ");
        let mut args = args![
            &w.id,
            &w.host,
            w.pid,
            &w.version,
            &queues,
            w.concurrency,
            w.busy,
            w.started_at
        ]
        .to_vec();
        let now = S::server_now().unwrap_or_else(|| {
            args.push(Arg::Now);
            "$9"
        });
        let sql = REPORT.replace("{now}", now);
        self.execute(Stmt::write(&sql), &args).await?;
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let rows = self.fetch_all(LIST, &[]).await?;
        rows.iter().map(worker_from_row).collect()
    }

    async fn remove_worker(&self, id: &str) -> Result<()> {
        self.execute(REMOVE, &args![id]).await?;
        Ok(())
    }

    async fn forget_workers(&self, silent_since: DateTime<Utc>) -> Result<u64> {
        self.execute(FORGET, &args![silent_since]).await
    }
}
