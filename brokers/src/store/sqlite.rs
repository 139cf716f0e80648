//! SQLite job store: the embedded default. One writer connection (SQLite has a single writer
//! anyway) plus a small pool of readers in WAL mode; claims are conditional `UPDATE … RETURNING`
//! statements, and wake-ups are in-process.

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

#[async_trait]
impl JobStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn now(&self) -> Result<DateTime<Utc>> {
        Ok(Utc::now())
    }

    async fn insert(&self, jobs: Vec<NewJob>) -> Result<Vec<Inserted>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.writer.begin().await?;
        let (out, ready) = insert_in(&mut tx, &jobs, Utc::now()).await?;
        tx.commit().await?;
        if ready {
            self.wake();
        }
        Ok(out)
    }

    async fn get(&self, tenant_id: &str, id: Uuid) -> Result<Option<Job>> {
        let row = sqlx::query("SELECT * FROM jobs WHERE tenant_id = ?1 AND id = ?2")
            .bind(tenant_id)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE tenant_id = ?1 \
               AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR kind = ?3) \
               AND (?4 IS NULL OR queue = ?4) AND (?5 IS NULL OR id < ?5) \
             ORDER BY id DESC LIMIT ?6",
        )
        .bind(&filter.tenant_id)
        .bind(filter.state.map(JobState::as_str))
        .bind(filter.kind.as_deref())
        .bind(filter.queue.as_deref())
        .bind(filter.before.map(|id| id.to_string()))
        .bind(filter.limit)
        .fetch_all(&self.reader)
        .await?;
        jobs_from_rows(&rows)
    }

    async fn cancel(&self, tenant_id: &str, id: Uuid) -> Result<Transition> {
        self.transition(
            "UPDATE jobs SET state = 'cancelled', finished_at = ?3, lease_expires_at = NULL \
             WHERE tenant_id = ?1 AND id = ?2 AND state IN ('scheduled', 'queued', 'running', 'retrying') \
             RETURNING *",
            tenant_id,
            id,
        )
        .await
    }

    async fn retry(&self, tenant_id: &str, id: Uuid) -> Result<Transition> {
        self.transition(
            "UPDATE jobs SET state = 'queued', dispatched_at = NULL, run_at = ?3, finished_at = NULL, result = NULL, \
                    lease_expires_at = NULL, max_attempts = MAX(max_attempts, attempts + 1) \
             WHERE tenant_id = ?1 AND id = ?2 AND state IN ('succeeded', 'dead', 'cancelled') \
             RETURNING *",
            tenant_id,
            id,
        )
        .await
    }

    async fn queue_stats(&self, tenant_id: Option<&str>) -> Result<Vec<QueueStats>> {
        let rows = sqlx::query(
            "SELECT queue, state, count(*) AS n, min(run_at) AS oldest FROM jobs \
             WHERE (?1 IS NULL OR tenant_id = ?1) GROUP BY queue, state ORDER BY queue",
        )
        .bind(tenant_id)
        .fetch_all(&self.reader)
        .await?;
        stats_from_rows(&rows)
    }

    async fn live_queue_stats(&self) -> Result<Vec<QueueStats>> {
        let rows = sqlx::query(
            "SELECT queue, state, count(*) AS n, min(run_at) AS oldest FROM jobs WHERE state = 'queued' GROUP BY queue, state \
             UNION ALL SELECT queue, state, count(*), min(run_at) FROM jobs WHERE state IN ('scheduled', 'retrying') GROUP BY queue, state \
             UNION ALL SELECT queue, state, count(*), min(run_at) FROM jobs WHERE state = 'running' GROUP BY queue, state \
             ORDER BY queue",
        )
        .fetch_all(&self.reader)
        .await?;
        stats_from_rows(&rows)
    }

    async fn claim(
        &self,
        queue: &str,
        limit: usize,
        worker_id: &str,
        lease: Duration,
    ) -> Result<Vec<Job>> {
        let (mut conn, now) = self.write().await?;
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?1, worker_id = ?2, \
                    lease_expires_at = ?3 \
             WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND queue = ?4 \
                          ORDER BY priority DESC, run_at, id LIMIT ?5) \
             RETURNING *",
        )
        .bind(now)
        .bind(worker_id)
        .bind(lease_until(now, lease))
        .bind(queue)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
        let mut jobs = jobs_from_rows(&rows)?;
        sort_claimed(&mut jobs);
        Ok(jobs)
    }

    async fn claim_ids(&self, ids: &[Uuid], worker_id: &str, lease: Duration) -> Result<Vec<Job>> {
        let (mut conn, now) = self.write().await?;
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?1, worker_id = ?2, \
                    lease_expires_at = ?3 \
             WHERE state = 'queued' AND id IN (SELECT value FROM json_each(?4)) RETURNING *",
        )
        .bind(now)
        .bind(worker_id)
        .bind(lease_until(now, lease))
        .bind(ids_json(ids))
        .fetch_all(&mut *conn)
        .await?;
        jobs_from_rows(&rows)
    }

    async fn complete(&self, completions: &[Completion]) -> Result<u64> {
        if completions.is_empty() {
            return Ok(0);
        }
        let (mut conn, now) = self.write().await?;
        let mut tx = conn.begin().await?;
        let mut changed = 0;
        for c in completions {
            let (state, result, error, run_at) = outcome_columns(&c.outcome);
            let finished = JobState::from_str(state)
                .is_ok_and(JobState::is_finished)
                .then_some(now);
            changed += sqlx::query(
                "UPDATE jobs SET state = ?1, result = ?2, last_error = COALESCE(?3, last_error), \
                        run_at = COALESCE(?4, run_at), finished_at = ?5, lease_expires_at = NULL \
                 WHERE id = ?6 AND attempts = ?7 AND state = 'running'",
            )
            .bind(state)
            .bind(result)
            .bind(error)
            .bind(run_at.map(micros))
            .bind(finished)
            .bind(c.id.to_string())
            .bind(c.attempt)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn heartbeat(&self, worker_id: &str, ids: &[Uuid], lease: Duration) -> Result<Vec<Uuid>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (mut conn, now) = self.write().await?;
        let held: Vec<String> = sqlx::query_scalar(
            "UPDATE jobs SET lease_expires_at = ?1 \
             WHERE worker_id = ?2 AND state = 'running' AND id IN (SELECT value FROM json_each(?3)) RETURNING id",
        )
        .bind(lease_until(now, lease))
        .bind(worker_id)
        .bind(ids_json(ids))
        .fetch_all(&mut *conn)
        .await?;
        held.iter()
            .map(|id| {
                Uuid::parse_str(id).map_err(|e| StoreError::Corrupt(format!("job id `{id}`: {e}")))
            })
            .collect()
    }

    async fn release(&self, worker_id: &str, ids: &[Uuid]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let (mut conn, now) = self.write().await?;
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', dispatched_at = NULL, attempts = MAX(attempts - 1, 0), worker_id = NULL, \
                    lease_expires_at = NULL, run_at = ?1, last_error = ?2 \
             WHERE worker_id = ?3 AND state = 'running' AND id IN (SELECT value FROM json_each(?4))",
        )
        .bind(now)
        .bind(RELEASED_ERROR)
        .bind(worker_id)
        .bind(ids_json(ids))
        .execute(&mut *conn)
        .await?;
        self.wake();
        Ok(done.rows_affected())
    }

    async fn promote_due(&self) -> Result<Vec<Job>> {
        let (mut conn, now) = self.write().await?;
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'queued', dispatched_at = NULL WHERE id IN ( \
                 SELECT id FROM jobs WHERE state IN ('scheduled', 'retrying') AND run_at <= ?1 \
                 ORDER BY run_at LIMIT ?2) RETURNING *",
        )
        .bind(now)
        .bind(MAINTENANCE_BATCH)
        .fetch_all(&mut *conn)
        .await?;
        let jobs = jobs_from_rows(&rows)?;
        if !jobs.is_empty() {
            self.wake();
        }
        Ok(jobs)
    }

    async fn rescue_expired(&self) -> Result<u64> {
        let (mut conn, now) = self.write().await?;
        let states: Vec<String> = sqlx::query_scalar(
            "UPDATE jobs SET \
                    state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
                    finished_at = CASE WHEN attempts >= max_attempts THEN ?1 END, \
                    run_at = ?1, last_error = ?2, lease_expires_at = NULL, dispatched_at = NULL \
             WHERE state = 'running' AND lease_expires_at < ?1 RETURNING state",
        )
        .bind(now)
        .bind(RESCUED_ERROR)
        .fetch_all(&mut *conn)
        .await?;
        if states.iter().any(|s| s == JobState::Queued.as_str()) {
            self.wake();
        }
        Ok(states.len() as u64)
    }

    async fn mark_dispatched(&self, ids: &[Uuid]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let (mut conn, now) = self.write().await?;
        let done = sqlx::query(
            "UPDATE jobs SET dispatched_at = ?1 WHERE state = 'queued' AND id IN (SELECT value FROM json_each(?2))",
        )
        .bind(now)
        .bind(ids_json(ids))
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected())
    }

    async fn undispatched(
        &self,
        grace: Duration,
        redispatch_after: Duration,
        limit: usize,
    ) -> Result<Vec<Job>> {
        let now = micros(Utc::now());
        let ago =
            |d: Duration| now.saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let rows = sqlx::query(
            "SELECT * FROM (SELECT * FROM jobs WHERE state = 'queued' AND dispatched_at IS NULL AND run_at < ?1 \
                            ORDER BY run_at LIMIT ?3) \
             UNION ALL \
             SELECT * FROM (SELECT * FROM jobs WHERE state = 'queued' AND dispatched_at IS NOT NULL \
                            AND dispatched_at < ?2 ORDER BY dispatched_at LIMIT ?3)",
        )
        .bind(ago(grace))
        .bind(ago(redispatch_after))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await?;
        jobs_from_rows(&rows)
    }

    fn wakeups(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }
}

fn schedule_from_row(row: &SqliteRow) -> Result<Schedule> {
    let corrupt = |e: String| StoreError::Corrupt(e);
    let last_job_id = row
        .try_get::<Option<&str>, _>("last_job_id")?
        .map(|id| {
            Uuid::parse_str(id).map_err(|e| StoreError::Corrupt(format!("last_job_id `{id}`: {e}")))
        })
        .transpose()?;
    Ok(Schedule {
        tenant_id: row.try_get("tenant_id")?,
        spec: ScheduleSpec {
            name: row.try_get("name")?,
            cron: row.try_get("cron")?,
            timezone: row.try_get("timezone")?,
            kind: row.try_get("kind")?,
            payload: json(row.try_get("payload")?)?,
            queue: row.try_get("queue")?,
            priority: row.try_get("priority")?,
            max_attempts: row.try_get("max_attempts")?,
            misfire: row
                .try_get::<&str, _>("misfire")?
                .parse()
                .map_err(corrupt)?,
            catch_up_max: u32::try_from(row.try_get::<i64, _>("catch_up_max")?)
                .map_err(|e| StoreError::Corrupt(format!("catch_up_max: {e}")))?,
            paused: row.try_get("paused")?,
        },
        source: row.try_get::<&str, _>("source")?.parse().map_err(corrupt)?,
        fired_through: from_micros(row.try_get("fired_through")?)?,
        next_fire_at: opt_time(row, "next_fire_at")?,
        last_fire_at: opt_time(row, "last_fire_at")?,
        last_job_id,
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
        version: row.try_get("version")?,
    })
}

fn lease_from_row(row: &SqliteRow) -> Result<Lease> {
    Ok(Lease {
        name: row.try_get("name")?,
        holder: row.try_get("holder")?,
        token: row.try_get("token")?,
        acquired_at: from_micros(row.try_get("acquired_at")?)?,
        expires_at: from_micros(row.try_get("expires_at")?)?,
    })
}

/// Binds a schedule's columns as `?1 ..= ?15`: tenant, name, definition, paused, source,
/// fired_through, next_fire_at.
fn bind_schedule<'q>(
    query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    s: &'q Schedule,
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    query
        .bind(&s.tenant_id)
        .bind(&s.spec.name)
        .bind(&s.spec.cron)
        .bind(&s.spec.timezone)
        .bind(&s.spec.kind)
        .bind(s.spec.payload.to_string())
        .bind(s.spec.queue.as_deref())
        .bind(s.spec.priority)
        .bind(s.spec.max_attempts)
        .bind(s.spec.misfire.as_str())
        .bind(i64::from(s.spec.catch_up_max))
        .bind(s.spec.paused)
        .bind(s.source.as_str())
        .bind(micros(s.fired_through))
        .bind(s.next_fire_at.map(micros))
}

#[async_trait]
impl SchedulerStore for SqliteStore {
    async fn create_schedule(&self, s: &Schedule) -> Result<bool> {
        let (mut conn, now) = self.write().await?;
        let query = sqlx::query(
            "INSERT INTO schedules (tenant_id, name, cron, timezone, kind, payload, queue, priority, \
                                    max_attempts, misfire, catch_up_max, paused, source, fired_through, \
                                    next_fire_at, created_at, updated_at, version) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16, 1) \
             ON CONFLICT (tenant_id, name) DO NOTHING",
        );
        let done = bind_schedule(query, s)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_schedule(&self, tenant_id: &str, name: &str) -> Result<Option<Schedule>> {
        let row = sqlx::query("SELECT * FROM schedules WHERE tenant_id = ?1 AND name = ?2")
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn list_schedules(&self, tenant_id: &str) -> Result<Vec<Schedule>> {
        let rows = sqlx::query("SELECT * FROM schedules WHERE tenant_id = ?1 ORDER BY name")
            .bind(tenant_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn update_schedule(&self, s: &Schedule) -> Result<Option<Schedule>> {
        let (mut conn, now) = self.write().await?;
        let query = sqlx::query(
            "UPDATE schedules SET cron = ?3, timezone = ?4, kind = ?5, payload = ?6, queue = ?7, \
                    priority = ?8, max_attempts = ?9, misfire = ?10, catch_up_max = ?11, paused = ?12, \
                    source = ?13, fired_through = ?14, next_fire_at = ?15, updated_at = ?17, \
                    version = version + 1 \
             WHERE tenant_id = ?1 AND name = ?2 AND version = ?16 RETURNING *",
        );
        let row = bind_schedule(query, s)
            .bind(s.version)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn delete_schedule(&self, tenant_id: &str, name: &str) -> Result<bool> {
        let (mut conn, _) = self.write().await?;
        let done = sqlx::query("DELETE FROM schedules WHERE tenant_id = ?1 AND name = ?2")
            .bind(tenant_id)
            .bind(name)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn due_schedules(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Schedule>> {
        let rows = sqlx::query(
            "SELECT * FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL AND next_fire_at <= ?1 \
             ORDER BY next_fire_at LIMIT ?2",
        )
        .bind(micros(now))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn next_schedule_fire(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT min(next_fire_at) FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL",
        )
        .fetch_one(&self.reader)
        .await?;
        next.map(from_micros).transpose()
    }

    async fn fire_schedule(&self, lease: &Lease, fire: ScheduleFire) -> Result<FireResult> {
        let (mut conn, now) = self.write().await?;
        let mut tx = conn.begin().await?;
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT token FROM leases WHERE name = ?1 AND holder = ?2 AND token = ?3 AND expires_at > ?4",
        )
        .bind(&lease.name)
        .bind(&lease.holder)
        .bind(lease.token)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            return Ok(FireResult::NotLeader);
        }
        let current: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM schedules WHERE tenant_id = ?1 AND name = ?2 AND version = ?3 \
               AND fired_through = ?4 AND NOT paused",
        )
        .bind(&fire.tenant_id)
        .bind(&fire.name)
        .bind(fire.version)
        .bind(micros(fire.previous_fired_through))
        .fetch_optional(&mut *tx)
        .await?;
        if current.is_none() {
            return Ok(FireResult::Stale);
        }
        let (inserted, ready) = insert_in(&mut tx, &fire.jobs, from_micros(now)?).await?;
        let last = inserted
            .last()
            .map(|i| (i.job.id.to_string(), micros(i.job.run_at)));
        sqlx::query(
            "UPDATE schedules SET fired_through = ?3, next_fire_at = ?4, \
                    last_fire_at = COALESCE(?5, last_fire_at), last_job_id = COALESCE(?6, last_job_id) \
             WHERE tenant_id = ?1 AND name = ?2",
        )
        .bind(&fire.tenant_id)
        .bind(&fire.name)
        .bind(micros(fire.fired_through))
        .bind(fire.next_fire_at.map(micros))
        .bind(last.as_ref().map(|l| l.1))
        .bind(last.as_ref().map(|l| l.0.as_str()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if ready {
            self.wake();
        }
        Ok(FireResult::Fired(inserted))
    }

    async fn record_trigger(
        &self,
        tenant_id: &str,
        name: &str,
        job_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let (mut conn, _) = self.write().await?;
        sqlx::query(
            "UPDATE schedules SET last_fire_at = ?3, last_job_id = ?4 WHERE tenant_id = ?1 AND name = ?2",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(micros(at))
        .bind(job_id.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let (mut conn, now) = self.write().await?;
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, token, acquired_at, expires_at) VALUES (?1, ?2, 1, ?3, ?4) \
             ON CONFLICT (name) DO UPDATE SET \
                 token = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > ?3 \
                              THEN leases.token ELSE leases.token + 1 END, \
                 acquired_at = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > ?3 \
                                    THEN leases.acquired_at ELSE ?3 END, \
                 holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= ?3 \
             RETURNING *",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .bind(lease_until(now, ttl))
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(lease_from_row).transpose()
    }

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let (mut conn, now) = self.write().await?;
        sqlx::query(
            "UPDATE leases SET expires_at = ?4 WHERE name = ?1 AND holder = ?2 AND token = ?3",
        )
        .bind(&lease.name)
        .bind(&lease.holder)
        .bind(lease.token)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn current_lease(&self, name: &str) -> Result<Option<Lease>> {
        let row = sqlx::query("SELECT * FROM leases WHERE name = ?1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(lease_from_row).transpose()
    }

    async fn prune_finished(
        &self,
        state: JobState,
        finished_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64> {
        let (mut conn, _) = self.write().await?;
        let done = sqlx::query(
            "DELETE FROM jobs WHERE id IN ( \
                 SELECT id FROM jobs WHERE state = ?1 AND finished_at < ?2 ORDER BY finished_at LIMIT ?3)",
        )
        .bind(state.as_str())
        .bind(micros(finished_before))
        .bind(limit)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected())
    }
}
