//! [`JobStore`] on SQLite: unfinished jobs in the hot table `jobs`, finished ones in
//! `job_history`, moved there in the transaction that records their outcome. Batches travel as
//! one JSON array bound to one statement (`json_each`), not a statement per job.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::store::sql::jobs::transition;

/// The outcomes of a batch (`?2`: a JSON array of `[id, attempt, state, result, error, run_at]`)
/// that finish their job, moved to the history at `?1`.
const COMPLETE_MOVE_SQL: &str = into_history!(
    "c.value ->> 2",
    "c.value ->> 3",
    "c.value ->> 4",
    "c.value -> 6",
    "FROM json_each(?2) AS c JOIN jobs j ON j.id = c.value ->> 0 AND j.attempts = c.value ->> 1 \
     AND j.state = 'running' WHERE c.value ->> 2 <> 'retrying'"
);

/// Removes from the hot table the batch's jobs that the history now holds.
const COMPLETE_DELETE_SQL: &str = "DELETE FROM jobs WHERE id IN (SELECT h.id FROM job_history h \
     WHERE h.id IN (SELECT value ->> 0 FROM json_each(?1)))";

/// The batch's retried attempts, which stay hot.
const COMPLETE_RETRY_SQL: &str = concat!(
    "UPDATE jobs AS j SET state = 'retrying', last_error = c.error, run_at = c.run_at, \
            lease_expires_at = NULL, errors = ",
    attempt_error!("c.error", "c.detail"),
    " FROM (SELECT value ->> 0 AS id, value ->> 1 AS attempt, value ->> 4 AS error, \
                   value ->> 5 AS run_at, value -> 6 AS detail \
            FROM json_each(?2) WHERE value ->> 2 = 'retrying') AS c \
     WHERE j.id = c.id AND j.attempts = c.attempt AND j.state = 'running'"
);

/// A cancelled job moves to the history at `?1`; `?2` tenant, `?3` id.
const CANCEL_SQL: &str = into_history!(
    "'cancelled'",
    "NULL",
    "NULL",
    "NULL",
    "FROM jobs j WHERE j.tenant_id = ?2 AND j.id = ?3"
);

/// Rescued jobs out of attempts go to the history as dead at `?1`; `?2` error, `?3` ids (JSON).
const RESCUE_DEAD_SQL: &str = into_history!(
    "'dead'",
    "NULL",
    "?2",
    "NULL",
    "FROM jobs j WHERE j.id IN (SELECT value FROM json_each(?3)) AND j.attempts >= j.max_attempts"
);

/// Rescued jobs with attempts left go back to `queued` at `?1`; `?2` error, `?3` ids (JSON).
const RESCUE_REQUEUE_SQL: &str = concat!(
    "UPDATE jobs AS j SET state = 'queued', run_at = ?1, last_error = ?2, lease_expires_at = NULL, \
            errors = ",
    attempt_error!("?2", "NULL"),
    " WHERE j.id IN (SELECT value FROM json_each(?3)) AND j.attempts < j.max_attempts \
     RETURNING kind, queue"
);

impl SqliteStore {
    /// Moves job `id` between the tables with `insert` then deletes it from `from`, in one
    /// transaction; returns the moved job.
    async fn move_job(
        &self,
        before: Option<&str>,
        insert: &str,
        from: &str,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<Job>> {
        let (mut conn, now) = self.write().await?;
        let mut tx = conn.begin().await?;
        if let Some(before) = before {
            sqlx::query(before)
                .bind(now)
                .bind(tenant_id)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let moved = sqlx::query(insert)
            .bind(now)
            .bind(tenant_id)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if moved == 0 {
            return Ok(None);
        }
        sqlx::query(&format!(
            "DELETE FROM {from} WHERE tenant_id = ?1 AND id = ?2"
        ))
        .bind(tenant_id)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        let job = get_in(&mut tx, tenant_id, &id.to_string()).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// What a move did: the job moved, or why none was.
    async fn moved(&self, moved: Option<Job>, tenant_id: &str, id: Uuid) -> Result<Transition> {
        if moved.is_some() {
            self.changed([tenant_id]);
        }
        if moved.as_ref().is_some_and(|j| j.state == JobState::Queued) {
            self.wake();
        }
        transition(self, moved, tenant_id, id).await
    }
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await?;
        crate::store::sql::events::restore_recording(self).await
    }

    async fn now(&self) -> Result<DateTime<Utc>> {
        Ok(Utc::now())
    }

    async fn insert(&self, jobs: Vec<NewJob>) -> Result<Vec<Inserted>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let (mut conn, now) = self.write().await?;
        let (out, ready) = if jobs.iter().any(|j| j.idempotency_key.is_some()) {
            // Keys and jobs are two statements: one transaction.
            let mut tx = conn.begin().await?;
            let done = insert_in(&mut tx, &jobs, from_micros(now)?).await?;
            tx.commit().await?;
            done
        } else {
            // One statement, its own transaction: no BEGIN/COMMIT round trips.
            insert_in(&mut conn, &jobs, from_micros(now)?).await?
        };
        if ready {
            self.wake();
        }
        self.changed(
            out.iter()
                .filter(|i| i.created)
                .map(|i| i.job.tenant_id.as_str()),
        );
        Ok(out)
    }

    async fn cancel(&self, tenant_id: &str, id: Uuid) -> Result<Transition> {
        let moved = self
            .move_job(
                Some(crate::store::sql::events::SQLITE_CANCELLED_START),
                CANCEL_SQL,
                "jobs",
                tenant_id,
                id,
            )
            .await?;
        self.moved(moved, tenant_id, id).await
    }

    async fn retry(&self, tenant_id: &str, id: Uuid) -> Result<Transition> {
        let moved = self
            .move_job(
                None,
                "INSERT INTO jobs (id, tenant_id, kind, queue, state, priority, attempts, max_attempts, \
                                   payload, result, last_error, timeout_ms, idempotency_key, \
                                   trace_context, request_id, worker_id, created_at, run_at, \
                                   started_at, finished_at, lease_expires_at, errors) \
                 SELECT id, tenant_id, kind, queue, 'queued', priority, attempts, \
                        MAX(max_attempts, attempts + 1), payload, NULL, last_error, timeout_ms, \
                        idempotency_key, trace_context, request_id, worker_id, created_at, ?1, \
                        started_at, NULL, NULL, errors \
                 FROM job_history WHERE tenant_id = ?2 AND id = ?3",
                "job_history",
                tenant_id,
                id,
            )
            .await?;
        self.moved(moved, tenant_id, id).await
    }

    async fn claim(&self, queue: &str, n: usize, worker: &str, ttl: Duration) -> Result<Vec<Job>> {
        let (mut conn, now) = self.write().await?;
        let rows = sqlx::query(concat!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?1, worker_id = ?2, \
                    lease_expires_at = ?3 \
             WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND queue = ?4 \
                          ORDER BY priority DESC, run_at, id LIMIT ?5) \
             RETURNING ",
            job_columns!()
        ))
        .bind(now)
        .bind(worker)
        .bind(lease_until(now, ttl))
        .bind(queue)
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
        let mut jobs = jobs_from_rows(&rows)?;
        sort_claimed(&mut jobs);
        self.changed(jobs.iter().map(|j| j.tenant_id.as_str()));
        Ok(jobs)
    }

    async fn claim_ids(&self, ids: &[Uuid], worker_id: &str, lease: Duration) -> Result<Vec<Job>> {
        let (mut conn, now) = self.write().await?;
        let rows = sqlx::query(concat!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?1, worker_id = ?2, \
                    lease_expires_at = ?3 \
             WHERE state = 'queued' AND id IN (SELECT value FROM json_each(?4)) RETURNING ",
            job_columns!()
        ))
        .bind(now)
        .bind(worker_id)
        .bind(lease_until(now, lease))
        .bind(ids_json(ids))
        .fetch_all(&mut *conn)
        .await?;
        let jobs = jobs_from_rows(&rows)?;
        self.changed(jobs.iter().map(|j| j.tenant_id.as_str()));
        Ok(jobs)
    }

    async fn complete(&self, completions: &[Completion]) -> Result<u64> {
        if completions.is_empty() {
            return Ok(0);
        }
        let batch = serde_json::Value::from(
            completions
                .iter()
                .map(|c| {
                    let (state, result, error, run_at) = outcome_columns(&c.outcome);
                    serde_json::json!([
                        c.id.to_string(),
                        c.attempt,
                        state,
                        result,
                        error,
                        run_at.map(micros),
                        c.detail
                    ])
                })
                .collect::<Vec<_>>(),
        )
        .to_string();
        let retrying = completions
            .iter()
            .any(|c| c.outcome.state() == JobState::Retrying);
        let cancelled = completions
            .iter()
            .any(|c| c.outcome.state() == JobState::Cancelled);
        let (mut conn, now) = self.write().await?;
        let mut tx = conn.begin().await?;
        if cancelled {
            // A job its handler cancelled ends its attempt in the history's `cancelled`, whose
            // fact does not tell a running job from a waiting one: its start is recorded here.
            sqlx::query(crate::store::sql::events::SQLITE_HANDLER_CANCELLED_START)
                .bind(now)
                .bind(&batch)
                .execute(&mut *tx)
                .await?;
        }
        let mut changed = sqlx::query(COMPLETE_MOVE_SQL)
            .bind(now)
            .bind(&batch)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed > 0 {
            sqlx::query(COMPLETE_DELETE_SQL)
                .bind(&batch)
                .execute(&mut *tx)
                .await?;
        }
        if retrying {
            changed += sqlx::query(COMPLETE_RETRY_SQL)
                .bind(now)
                .bind(&batch)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        self.changed(completions.iter().map(|c| c.tenant_id.as_str()));
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
        let mut held = held
            .iter()
            .map(|id| {
                Uuid::parse_str(id).map_err(|e| StoreError::Corrupt(format!("job id `{id}`: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        held.sort();
        Ok(held)
    }

    async fn release(&self, worker_id: &str, ids: &[Uuid]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let (mut conn, now) = self.write().await?;
        let released: Vec<(String, String, String)> = sqlx::query_as(
            "UPDATE jobs SET state = 'queued', attempts = MAX(attempts - 1, 0), worker_id = NULL, \
                    lease_expires_at = NULL, run_at = ?1, last_error = ?2 \
             WHERE worker_id = ?3 AND state = 'running' AND id IN (SELECT value FROM json_each(?4)) \
             RETURNING kind, queue, tenant_id",
        )
        .bind(now)
        .bind(RELEASED_ERROR)
        .bind(worker_id)
        .bind(ids_json(ids))
        .fetch_all(&mut *conn)
        .await?;
        for (kind, queue, _) in &released {
            crate::gauges::count_one_enqueued(kind, queue, "released");
        }
        self.wake();
        self.changed(released.iter().map(|(_, _, t)| t.as_str()));
        Ok(released.len() as u64)
    }

    async fn promote_due(&self) -> Result<Vec<Job>> {
        let (mut conn, now) = self.write().await?;
        let rows = sqlx::query(concat!(
            "UPDATE jobs SET state = 'queued' WHERE id IN ( \
                 SELECT id FROM jobs WHERE state IN ('scheduled', 'retrying') AND run_at <= ?1 \
                 ORDER BY run_at LIMIT ?2) RETURNING ",
            job_columns!()
        ))
        .bind(now)
        .bind(MAINTENANCE_BATCH)
        .fetch_all(&mut *conn)
        .await?;
        let jobs = jobs_from_rows(&rows)?;
        if !jobs.is_empty() {
            self.wake();
        }
        self.changed(jobs.iter().map(|j| j.tenant_id.as_str()));
        Ok(jobs)
    }

    async fn rescue_expired(&self) -> Result<u64> {
        let (mut conn, now) = self.write().await?;
        let mut tx = conn.begin().await?;
        let expired: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state = 'running' AND lease_expires_at < ?1 ORDER BY id LIMIT ?2",
        )
        .bind(now)
        .bind(MAINTENANCE_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if expired.is_empty() {
            return Ok(0);
        }
        let ids = serde_json::Value::from(expired).to_string();
        let dead = sqlx::query(RESCUE_DEAD_SQL)
            .bind(now)
            .bind(RESCUED_ERROR)
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if dead > 0 {
            sqlx::query(
                "DELETE FROM jobs WHERE id IN (SELECT h.id FROM job_history h \
                 WHERE h.id IN (SELECT value FROM json_each(?1)))",
            )
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        }
        let requeued: Vec<(String, String)> = sqlx::query_as(RESCUE_REQUEUE_SQL)
            .bind(now)
            .bind(RESCUED_ERROR)
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        for (kind, queue) in &requeued {
            crate::gauges::count_one_enqueued(kind, queue, "rescued");
        }
        let requeued = requeued.len() as u64;
        if requeued > 0 {
            self.wake();
        }
        Ok(dead + requeued)
    }

    async fn touch_consumed(&self, queues: &[String]) -> Result<()> {
        let (mut conn, now) = self.write().await?;
        for queue in queues {
            sqlx::query(
                "INSERT INTO queue_consumers (queue, last_seen) VALUES (?1, ?2) \
                 ON CONFLICT (queue) DO UPDATE SET last_seen = excluded.last_seen",
            )
            .bind(queue)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    async fn delete_finished(&self, tenant_id: &str, ids: &[Uuid]) -> Result<u64> {
        let (mut conn, _) = self.write().await?;
        let mut tx = conn.begin().await?;
        let gone: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "DELETE FROM job_history WHERE tenant_id = ?1 AND id IN (SELECT value FROM json_each(?2)) \
             RETURNING id, tenant_id, idempotency_key",
        )
        .bind(tenant_id)
        .bind(ids_json(ids))
        .fetch_all(&mut *tx)
        .await?;
        forget_keys(&mut tx, &gone).await?;
        tx.commit().await?;
        if !gone.is_empty() {
            self.changed([tenant_id]);
        }
        Ok(gone.len() as u64)
    }

    async fn vacuum_hot(&self, _min_dead: i64) -> Result<bool> {
        // Deleted rows leave no versions behind in SQLite.
        Ok(false)
    }

    fn wakeups(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    fn changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.subscribe_changes()
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
