//! SQLite job store: the embedded default. One writer connection (SQLite has a single writer
//! anyway) plus a small pool of readers in WAL mode; claims are conditional `UPDATE … RETURNING`
//! statements, and wake-ups are in-process.

mod auth;
mod changes;
mod codec;
mod jobs;
mod rates;
mod schedules;
mod transaction;

pub use transaction::SqliteTransaction;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::{Job, JobState, NewJob};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::watch;
use uuid::Uuid;

use super::{
    outcome_columns, sort_claimed, Completion, FireResult, Inserted, JobStore, Lease, ScheduleFire,
    StoreConfig, Transition, RELEASED_ERROR, RESCUED_ERROR,
};
use crate::store::sql::{job_from_row, jobs_from_rows};
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
    auth: tokio::sync::broadcast::Sender<super::AuthChange>,
    changes: tokio::sync::broadcast::Sender<String>,
    /// In memory: no other process can share it (no change watcher).
    in_memory: bool,
    /// Set once the watcher of other processes' changes runs (see `changes.rs`).
    watcher: Arc<std::sync::OnceLock<()>>,
}

pub(super) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(super) fn from_micros(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {v} out of range")))
}

fn lease_until(now: i64, lease: Duration) -> i64 {
    now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX))
}

/// Deletes the idempotency keys of deleted jobs (`id, tenant_id, idempotency_key` rows), so that
/// a key can be used again afterwards.
async fn forget_keys(
    conn: &mut SqliteConnection,
    gone: &[(String, String, Option<String>)],
) -> Result<()> {
    let keys: Vec<serde_json::Value> = gone
        .iter()
        .filter_map(|(id, tenant, key)| Some(serde_json::json!([tenant, key.as_deref()?, id])))
        .collect();
    if !keys.is_empty() {
        sqlx::query(
            "DELETE FROM job_keys WHERE (tenant_id, key, job_id) IN \
             (SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1))",
        )
        .bind(serde_json::Value::from(keys).to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn ids_json(ids: &[Uuid]) -> String {
    serde_json::Value::from(ids.iter().map(Uuid::to_string).collect::<Vec<_>>()).to_string()
}

/// An ISO 8601 (UTC, milliseconds) text from an integer-microseconds column, for JSON.
macro_rules! iso {
    ($col:literal) => {
        concat!(
            "strftime('%Y-%m-%dT%H:%M:%fZ', ",
            $col,
            " / 1000000.0, 'unixepoch')"
        )
    };
}
pub(crate) use iso;

/// The `errors` column of row `j` with one more failed attempt, ended at `?1` with error `$err`.
macro_rules! attempt_error {
    ($err:literal, $detail:literal) => {
        concat!(
            "json_insert(COALESCE(j.errors, '[]'), '$[#]', json_object('attempt', j.attempts, \
             'error', ",
            $err,
            ", 'worker_id', j.worker_id, 'started_at', ",
            iso!("j.started_at"),
            ", 'finished_at', ",
            iso!("?1"),
            ", 'detail', json(",
            $detail,
            ")))"
        )
    };
}
pub(crate) use attempt_error;

/// Moves hot rows `j` selected by the `FROM …` clause `$from` to the history, finished at `?1`,
/// in state `$state`, with `$error` (NULL: none) recorded as their last failed attempt (with the
/// handler's `$detail`, JSON text or NULL) and `$result` as their result.
macro_rules! into_history {
    ($state:literal, $result:literal, $error:literal, $detail:literal, $from:literal) => {
        concat!(
            "INSERT INTO job_history (id, tenant_id, kind, queue, state, priority, attempts, \
                                      max_attempts, payload, result, last_error, timeout_ms, \
                                      idempotency_key, trace_context, request_id, worker_id, \
                                      created_at, run_at, started_at, finished_at, \
                                      lease_expires_at, errors) \
             SELECT j.id, j.tenant_id, j.kind, j.queue, ",
            $state,
            ", j.priority, j.attempts, j.max_attempts, j.payload, ",
            $result,
            // A success clears the last error: earlier failures stay in `errors`.
            ", CASE WHEN ",
            $state,
            " = 'succeeded' THEN NULL ELSE COALESCE(",
            $error,
            ", j.last_error) END, j.timeout_ms, j.idempotency_key, j.trace_context, j.request_id, \
             j.worker_id, j.created_at, j.run_at, j.started_at, ?1, NULL, \
             CASE WHEN ",
            $error,
            " IS NULL OR j.started_at IS NULL THEN j.errors ELSE ",
            attempt_error!($error, $detail),
            " END ",
            $from
        )
    };
}
pub(crate) use into_history;

/// One job of an insert batch as a JSON array, read back by [`INSERT_SQL`] with `->>`.
fn insert_row(job: &NewJob, now: i64) -> serde_json::Value {
    serde_json::json!([
        job.id.to_string(),
        job.tenant_id,
        job.kind,
        job.queue,
        job.initial_state(from_micros(now).unwrap_or_else(|_| Utc::now()))
            .as_str(),
        job.priority,
        job.max_attempts,
        job.payload.to_string(),
        job.timeout_ms,
        job.idempotency_key,
        job.trace_context,
        micros(job.run_at),
        job.request_id,
    ])
}

/// Keys of a batch: taken only where new for the tenant (`?1`: the batch JSON).
const INSERT_KEYS_SQL: &str = "INSERT INTO job_keys (tenant_id, key, job_id) \
     SELECT value ->> 1, value ->> 9, value ->> 0 FROM json_each(?1) \
     WHERE value ->> 9 IS NOT NULL ON CONFLICT DO NOTHING";

/// The batch's rows whose key (if any) is now theirs; `?1` batch JSON, `?2` now.
const INSERT_SQL: &str = concat!(
    "INSERT INTO jobs (id, tenant_id, kind, queue, state, priority, max_attempts, payload, \
                       timeout_ms, idempotency_key, trace_context, run_at, created_at, request_id) \
     SELECT t.value ->> 0, t.value ->> 1, t.value ->> 2, t.value ->> 3, t.value ->> 4, \
            t.value ->> 5, t.value ->> 6, t.value ->> 7, t.value ->> 8, t.value ->> 9, \
            t.value ->> 10, t.value ->> 11, ?2, t.value ->> 12 \
     FROM json_each(?1) AS t \
     WHERE t.value ->> 9 IS NULL OR EXISTS (SELECT 1 FROM job_keys k \
            WHERE k.tenant_id = t.value ->> 1 AND k.key = t.value ->> 9 AND k.job_id = t.value ->> 0) \
     RETURNING ",
    job_columns!()
);

/// Inserts jobs on `conn` (inside the caller's transaction) in one statement; `true` when some
/// are ready to run. A job whose idempotency key its tenant used before is not inserted: the
/// existing one is returned with `created: false`.
async fn insert_in(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<(Vec<Inserted>, bool)> {
    let now = micros(now);
    let batch =
        serde_json::Value::from(jobs.iter().map(|j| insert_row(j, now)).collect::<Vec<_>>())
            .to_string();
    let keyed = jobs.iter().any(|j| j.idempotency_key.is_some());
    if keyed {
        sqlx::query(INSERT_KEYS_SQL)
            .bind(&batch)
            .execute(&mut *conn)
            .await?;
    }
    let rows = sqlx::query(INSERT_SQL)
        .bind(&batch)
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
    let mut created: std::collections::HashMap<Uuid, Job> = rows
        .iter()
        .map(|r| job_from_row(r).map(|j| (j.id, j)))
        .collect::<Result<_>>()?;
    let ready = created.values().any(|j| j.state == JobState::Queued);
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Some(found) = created.remove(&job.id) {
            out.push(Inserted {
                job: found,
                created: true,
            });
            continue;
        }
        let existing: Option<String> =
            sqlx::query_scalar("SELECT job_id FROM job_keys WHERE tenant_id = ?1 AND key = ?2")
                .bind(&job.tenant_id)
                .bind(job.idempotency_key.as_deref())
                .fetch_optional(&mut *conn)
                .await?;
        let found = match existing {
            Some(id) => get_in(&mut *conn, &job.tenant_id, &id).await?,
            None => None,
        };
        let found = found.ok_or_else(|| {
            StoreError::Corrupt(format!("job {} neither inserted nor found", job.id))
        })?;
        out.push(Inserted {
            job: found,
            created: false,
        });
    }
    Ok((out, ready))
}

/// One job of a tenant from either table.
async fn get_in(conn: &mut SqliteConnection, tenant_id: &str, id: &str) -> Result<Option<Job>> {
    let row = sqlx::query(crate::store::sql::jobs::GET.text())
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(job_from_row).transpose()
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
            auth: tokio::sync::broadcast::Sender::new(1024),
            changes: tokio::sync::broadcast::Sender::new(1024),
            in_memory,
            watcher: Arc::default(),
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

    /// Announces that jobs of `tenants` changed (in this process: the embedded store's users
    /// share it), once per tenant, and only when someone listens.
    pub(super) fn changed<'a>(&self, tenants: impl IntoIterator<Item = &'a str>) {
        if self.changes.receiver_count() == 0 {
            return;
        }
        for tenant in tenants
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
        {
            let _ = self.changes.send(tenant.to_owned());
        }
    }

    pub(super) fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.watch_other_processes();
        self.changes.subscribe()
    }
}
