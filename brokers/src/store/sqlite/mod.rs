//! SQLite job store: the embedded default. One writer connection (SQLite has a single writer
//! anyway) plus a small pool of readers in WAL mode; claims are conditional `UPDATE … RETURNING`
//! statements, and wake-ups are in-process.

mod auth;
mod jobs;
mod schedules;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::{Job, JobState, NewJob, Schedule, ScheduleSpec};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Row, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::watch;
use uuid::Uuid;

use super::{
    fold_queue_stats, outcome_columns, parse_state, sort_claimed, Completion, FireResult, Inserted,
    JobFilter, JobStore, Lease, QueueStats, ScheduleFire, SchedulerStore, StoreConfig, Transition,
    RELEASED_ERROR, RESCUED_ERROR,
};
use crate::{Result, StoreError};

/// How long a writer waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many due rows one promotion pass moves at most.
const MAINTENANCE_BATCH: i64 = 10_000;
/// Reader connections (the API's queries) beside the one writer.
const READERS: u32 = 4;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    wake: Arc<watch::Sender<u64>>,
}

pub(super) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(super) fn from_micros(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {v} out of range")))
}

pub(super) fn opt_time(row: &SqliteRow, col: &str) -> Result<Option<DateTime<Utc>>> {
    row.try_get::<Option<i64>, _>(col)?
        .map(from_micros)
        .transpose()
}

fn json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("invalid JSON column: {e}")))
}

fn job_from_row(row: &SqliteRow) -> Result<Job> {
    let id: &str = row.try_get("id")?;
    Ok(Job {
        id: Uuid::parse_str(id).map_err(|e| StoreError::Corrupt(format!("job id `{id}`: {e}")))?,
        tenant_id: row.try_get("tenant_id")?,
        kind: row.try_get("kind")?,
        queue: row.try_get("queue")?,
        state: parse_state(row.try_get("state")?)?,
        priority: row.try_get("priority")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        payload: json(row.try_get("payload")?)?,
        result: row
            .try_get::<Option<&str>, _>("result")?
            .map(json)
            .transpose()?,
        last_error: row.try_get("last_error")?,
        timeout_ms: row.try_get("timeout_ms")?,
        idempotency_key: row.try_get("idempotency_key")?,
        trace_context: row.try_get("trace_context")?,
        request_id: row.try_get("request_id")?,
        worker_id: row.try_get("worker_id")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        run_at: from_micros(row.try_get("run_at")?)?,
        started_at: opt_time(row, "started_at")?,
        finished_at: opt_time(row, "finished_at")?,
        lease_expires_at: opt_time(row, "lease_expires_at")?,
    })
}

fn stats_from_rows(rows: &[SqliteRow]) -> Result<Vec<QueueStats>> {
    let rows = rows
        .iter()
        .map(|row| {
            Ok((
                row.try_get("queue")?,
                parse_state(row.try_get("state")?)?,
                row.try_get("n")?,
                opt_time(row, "oldest")?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(fold_queue_stats(rows))
}

fn jobs_from_rows(rows: &[SqliteRow]) -> Result<Vec<Job>> {
    rows.iter().map(job_from_row).collect()
}

fn lease_until(now: i64, lease: Duration) -> i64 {
    now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX))
}

fn ids_json(ids: &[Uuid]) -> String {
    serde_json::Value::from(ids.iter().map(Uuid::to_string).collect::<Vec<_>>()).to_string()
}

/// Inserts jobs on `conn` (inside the caller's transaction); `true` when some are ready to run.
async fn insert_in(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<(Vec<Inserted>, bool)> {
    let mut out = Vec::with_capacity(jobs.len());
    let mut ready = false;
    for job in jobs {
        let row = sqlx::query(
            "INSERT INTO jobs (id, tenant_id, kind, queue, state, priority, max_attempts, payload, \
                               timeout_ms, idempotency_key, trace_context, run_at, created_at, request_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
             ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
             RETURNING *",
        )
        .bind(job.id.to_string())
        .bind(&job.tenant_id)
        .bind(&job.kind)
        .bind(&job.queue)
        .bind(job.initial_state(now).as_str())
        .bind(job.priority)
        .bind(job.max_attempts)
        .bind(job.payload.to_string())
        .bind(job.timeout_ms)
        .bind(job.idempotency_key.as_deref())
        .bind(job.trace_context.as_deref())
        .bind(micros(job.run_at))
        .bind(micros(now))
        .bind(job.request_id.as_deref())
        .fetch_optional(&mut *conn)
        .await?;
        let inserted = match row {
            Some(row) => Inserted {
                job: job_from_row(&row)?,
                created: true,
            },
            None => {
                let row =
                    sqlx::query("SELECT * FROM jobs WHERE tenant_id = ?1 AND idempotency_key = ?2")
                        .bind(&job.tenant_id)
                        .bind(job.idempotency_key.as_deref())
                        .fetch_one(&mut *conn)
                        .await?;
                Inserted {
                    job: job_from_row(&row)?,
                    created: false,
                }
            }
        };
        ready |= inserted.created && inserted.job.state == JobState::Queued;
        out.push(inserted);
    }
    Ok((out, ready))
}

impl SqliteStore {
    /// Opens (creating if missing) the database file the URL names.
    pub async fn connect(config: &StoreConfig) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(&config.url)
            .map_err(|e| StoreError::Config(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a job the API acknowledged survives a power cut, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let in_memory = config.url.contains(":memory:");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(config.acquire_timeout.max(BUSY_TIMEOUT))
            .connect_with(options.clone())
            .await?;
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READERS)
                .acquire_timeout(config.acquire_timeout)
                .connect_lazy_with(options)
        };
        Ok(SqliteStore {
            writer,
            reader,
            wake: Arc::new(watch::Sender::new(0)),
        })
    }

    /// The reader pool.
    pub(super) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// The writer pool (for tests and tools that need raw SQL).
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// The writer connection and the time taken *after* acquiring it, so that timestamps follow
    /// the order in which writes are applied.
    pub(super) async fn write(&self) -> Result<(PoolConnection<Sqlite>, i64)> {
        let conn = self.writer.acquire().await?;
        Ok((conn, micros(Utc::now())))
    }

    fn wake(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    async fn transition(&self, sql: &str, tenant_id: &str, id: Uuid) -> Result<Transition> {
        let (mut conn, now) = self.write().await?;
        let row = sqlx::query(sql)
            .bind(tenant_id)
            .bind(id.to_string())
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            Some(row) => {
                let job = job_from_row(&row)?;
                if job.state == JobState::Queued {
                    self.wake();
                }
                Ok(Transition::Done(Box::new(job)))
            }
            None => Ok(match self.get(tenant_id, id).await? {
                None => Transition::NotFound,
                Some(job) => Transition::Conflict(job.state),
            }),
        }
    }
}
