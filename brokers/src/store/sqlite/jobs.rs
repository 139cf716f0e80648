//! [`JobStore`] on SQLite.

#[allow(clippy::wildcard_imports)]
use super::*;

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
