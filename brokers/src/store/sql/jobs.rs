//! The job reads both backends run alike (listings, stats, consumers); the job store's writes,
//! whose SQL and locking differ, stay in the backend modules.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::{Job, JobState};
use uuid::Uuid;

use super::rows::{job_from_row, jobs_from_rows, stats_from_rows};
use super::{args, Arg, Columns, SqlBackend, Stmt};
use crate::store::{list_sources, JobFilter, JobReads, QueueStats, Transition};
use crate::Result;

/// One job of a tenant, hot or finished.
pub(crate) const GET: Stmt<'static> = Stmt::read(concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE id = $2 AND tenant_id = $1 UNION ALL SELECT ",
    job_columns!(),
    " FROM job_history WHERE id = $2 AND tenant_id = $1 LIMIT 1"
));

/// Unfinished jobs counted in the hot table; finished ones summed from the counters the
/// history's triggers keep (migration 0013).
const QUEUE_STATS: Stmt<'static> = Stmt::read(
    "SELECT queue, state, n, oldest FROM ( \
         SELECT queue, state, count(*) AS n, min(run_at) AS oldest FROM jobs \
         WHERE ($1 IS NULL OR tenant_id = $1) GROUP BY queue, state \
         UNION ALL \
         SELECT queue, state, CAST(sum(n) AS bigint), NULL FROM history_counts \
         WHERE ($1 IS NULL OR tenant_id = $1) GROUP BY queue, state HAVING sum(n) <> 0) AS s \
     ORDER BY queue",
);

const LIVE_QUEUE_STATS: Stmt<'static> = Stmt::read(
    "SELECT queue, state, count(*) AS n, min(run_at) AS oldest FROM jobs \
     GROUP BY queue, state ORDER BY queue",
);

const CONSUMED: Stmt<'static> = Stmt::read("SELECT queue, last_seen FROM queue_consumers");

/// A loose index scan of the claim index: one probe per queue, however long the queues.
const QUEUED_QUEUES: Stmt<'static> = Stmt::read(
    "WITH RECURSIVE q(queue) AS ( \
         SELECT (SELECT queue FROM jobs WHERE state = 'queued' ORDER BY queue LIMIT 1) \
         UNION ALL \
         SELECT (SELECT j.queue FROM jobs j WHERE j.state = 'queued' AND j.queue > q.queue \
                 ORDER BY j.queue LIMIT 1) FROM q WHERE q.queue IS NOT NULL) \
     SELECT queue FROM q WHERE queue IS NOT NULL",
);

const STALE_QUEUED: Stmt<'static> = Stmt::read(concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE state = 'queued' AND queue = $1 AND run_at < $2 \
      ORDER BY priority DESC, run_at, id LIMIT $3"
));

#[async_trait]
impl<S: SqlBackend> JobReads for S {
    async fn ping(&self) -> Result<()> {
        self.fetch_optional(Stmt::read("SELECT 1"), &[]).await?;
        Ok(())
    }

    async fn get(&self, tenant_id: &str, id: Uuid) -> Result<Option<Job>> {
        let row = self.fetch_optional(GET, &args![tenant_id, id]).await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        // One index-backed part per table the state lives in, merged. An empty payload search
        // (`{}`) matches every job: no condition.
        let wanted = filter.payload.as_ref().filter(|p| !p.is_empty());
        let payload = wanted
            .map(|_| format!(" AND {}", S::payload_contains("$7")))
            .unwrap_or_default();
        let parts: Vec<String> = list_sources(filter.state)
            .iter()
            .map(|source| {
                format!(
                    "SELECT * FROM (SELECT {} FROM {source} AND tenant_id = $1 \
                       AND ($2 IS NULL OR state = $2) AND ($3 IS NULL OR kind = $3) \
                       AND ($4 IS NULL OR queue = $4) AND ($5 IS NULL OR id < $5){payload} \
                     ORDER BY id DESC LIMIT $6) AS part",
                    job_columns!()
                )
            })
            .collect();
        let sql = format!(
            "SELECT * FROM ({}) AS page ORDER BY id DESC LIMIT $6",
            parts.join(" UNION ALL ")
        );
        let wanted = wanted.cloned().map(serde_json::Value::Object);
        let mut args = args![
            &filter.tenant_id,
            filter.state.map(JobState::as_str),
            filter.kind.as_deref(),
            filter.queue.as_deref(),
            filter.before,
            filter.limit,
        ]
        .to_vec();
        if let Some(wanted) = &wanted {
            args.push(Arg::Json(wanted));
        }
        jobs_from_rows(&self.fetch_all(Stmt::read(&sql), &args).await?)
    }

    async fn queue_stats(&self, tenant_id: Option<&str>) -> Result<Vec<QueueStats>> {
        stats_from_rows(&self.fetch_all(QUEUE_STATS, &args![tenant_id]).await?)
    }

    async fn live_queue_stats(&self) -> Result<Vec<QueueStats>> {
        stats_from_rows(&self.fetch_all(LIVE_QUEUE_STATS, &[]).await?)
    }

    async fn queued_queues(&self) -> Result<Vec<String>> {
        let rows = self.fetch_all(QUEUED_QUEUES, &[]).await?;
        rows.iter().map(|row| row.text(0)).collect()
    }

    async fn consumed_queues(&self) -> Result<BTreeMap<String, DateTime<Utc>>> {
        let rows = self.fetch_all(CONSUMED, &[]).await?;
        rows.iter()
            .map(|row| Ok((row.text("queue")?, row.time("last_seen")?)))
            .collect()
    }

    async fn stale_queued(&self, queue: &str, age: Duration, limit: usize) -> Result<Vec<Job>> {
        let age = chrono::TimeDelta::from_std(age).unwrap_or(chrono::TimeDelta::MAX);
        let before = Utc::now()
            .checked_sub_signed(age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        jobs_from_rows(
            &self
                .fetch_all(STALE_QUEUED, &args![queue, before, limit])
                .await?,
        )
    }
}

/// What a cancel or retry did: the job it moved, or why it moved none (no such job, or one in
/// a state the move does not apply to).
pub(crate) async fn transition<S: JobReads>(
    store: &S,
    moved: Option<Job>,
    tenant_id: &str,
    id: Uuid,
) -> Result<Transition> {
    if let Some(job) = moved {
        return Ok(Transition::Done(Box::new(job)));
    }
    Ok(match store.get(tenant_id, id).await? {
        None => Transition::NotFound,
        Some(job) => Transition::Conflict(job.state),
    })
}
