//! [`JobStore`] on PostgreSQL.

#[allow(clippy::wildcard_imports)]
use super::*;

#[async_trait]
impl JobStore for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<()> {
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", self.schema);
        if let Err(err) = sqlx::query(&create).execute(&self.pool).await {
            // Two processes creating the schema at once: one loses with a unique violation.
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                    .bind(&self.schema)
                    .fetch_one(&self.pool)
                    .await?;
            if !exists {
                return Err(err.into());
            }
        }
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn now(&self) -> Result<DateTime<Utc>> {
        Ok(sqlx::query_scalar("SELECT now()")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn insert(&self, jobs: Vec<NewJob>) -> Result<Vec<Inserted>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let inserted = self.insert_in(&mut tx, &jobs).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    async fn get(&self, tenant_id: &str, id: Uuid) -> Result<Option<Job>> {
        let row = sqlx::query("SELECT * FROM jobs WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE tenant_id = $1 \
               AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR kind = $3) \
               AND ($4::text IS NULL OR queue = $4) AND ($5::uuid IS NULL OR id < $5) \
             ORDER BY id DESC LIMIT $6",
        )
        .bind(&filter.tenant_id)
        .bind(filter.state.map(JobState::as_str))
        .bind(filter.kind.as_deref())
        .bind(filter.queue.as_deref())
        .bind(filter.before)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?;
        jobs_from_rows(&rows)
    }

    async fn cancel(&self, tenant_id: &str, id: Uuid) -> Result<Transition> {
        self.transition(
            "UPDATE jobs SET state = 'cancelled', finished_at = now(), lease_expires_at = NULL \
             WHERE tenant_id = $1 AND id = $2 AND state IN ('scheduled', 'queued', 'running', 'retrying') \
             RETURNING *",
            tenant_id,
            id,
        )
        .await
    }

    async fn retry(&self, tenant_id: &str, id: Uuid) -> Result<Transition> {
        self.transition(
            "UPDATE jobs SET state = 'queued', dispatched_at = NULL, run_at = now(), finished_at = NULL, result = NULL, \
                    lease_expires_at = NULL, max_attempts = GREATEST(max_attempts, attempts + 1) \
             WHERE tenant_id = $1 AND id = $2 AND state IN ('succeeded', 'dead', 'cancelled') \
             RETURNING *",
            tenant_id,
            id,
        )
        .await
    }

    async fn queue_stats(&self, tenant_id: Option<&str>) -> Result<Vec<QueueStats>> {
        let rows = sqlx::query(
            "SELECT queue, state, count(*) AS n, min(run_at) AS oldest FROM jobs \
             WHERE ($1::text IS NULL OR tenant_id = $1) GROUP BY queue, state ORDER BY queue",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
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
        .fetch_all(&self.pool)
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
        let rows = sqlx::query(
            "WITH next AS ( \
                 SELECT id FROM jobs WHERE state = 'queued' AND queue = $1 \
                 ORDER BY priority DESC, run_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs j SET state = 'running', attempts = j.attempts + 1, started_at = now(), \
                    worker_id = $3, lease_expires_at = now() + $4 * interval '1 millisecond' \
             FROM next WHERE j.id = next.id RETURNING j.*",
        )
        // Planned afresh each time: a cached generic plan for `queue = $1` can pick a far slower
        // path once the table's statistics shift (measured: 3.3k vs 8.7k jobs/s drain).
        .persistent(false)
        .bind(queue)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(worker_id)
        .bind(lease_ms(lease))
        .fetch_all(&self.pool)
        .await?;
        let mut jobs = jobs_from_rows(&rows)?;
        sort_claimed(&mut jobs);
        Ok(jobs)
    }

    async fn claim_ids(&self, ids: &[Uuid], worker_id: &str, lease: Duration) -> Result<Vec<Job>> {
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = now(), \
                    worker_id = $2, lease_expires_at = now() + $3 * interval '1 millisecond' \
             WHERE id = ANY($1) AND state = 'queued' RETURNING *",
        )
        // Planned per call: a generic plan may scan every queued row instead of the primary key.
        .persistent(false)
        .bind(ids)
        .bind(worker_id)
        .bind(lease_ms(lease))
        .fetch_all(&self.pool)
        .await?;
        jobs_from_rows(&rows)
    }

    async fn complete(&self, completions: &[Completion]) -> Result<u64> {
        if completions.is_empty() {
            return Ok(0);
        }
        let n = completions.len();
        let (mut ids, mut attempts, mut states, mut results, mut errors, mut run_ats) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for c in completions {
            let (state, result, error, run_at) = outcome_columns(&c.outcome);
            ids.push(c.id);
            attempts.push(c.attempt);
            states.push(state);
            results.push(result);
            errors.push(error);
            run_ats.push(run_at);
        }
        // Rows are locked in id order so that the completer, heartbeat and rescuer never deadlock.
        let done = sqlx::query(
            "WITH c AS (SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::text[], $5::text[], \
                                             $6::timestamptz[]) AS c(id, attempt, state, result, error, run_at)), \
                  locked AS (SELECT j.id FROM jobs j JOIN c ON j.id = c.id \
                             WHERE j.state = 'running' AND j.attempts = c.attempt ORDER BY j.id FOR UPDATE OF j) \
             UPDATE jobs j SET state = c.state, result = c.result::jsonb, \
                    last_error = COALESCE(c.error, j.last_error), run_at = COALESCE(c.run_at, j.run_at), \
                    finished_at = CASE WHEN c.state IN ('succeeded', 'dead', 'cancelled') THEN now() END, \
                    lease_expires_at = NULL \
             FROM c JOIN locked ON locked.id = c.id WHERE j.id = c.id",
        )
        // Planned afresh each time, like the claim: the join over `unnest` is planned for the
        // actual batch size instead of a cached generic guess.
        .persistent(false)
        .bind(&ids)
        .bind(&attempts)
        .bind(&states)
        .bind(&results)
        .bind(&errors)
        .bind(&run_ats)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn heartbeat(&self, worker_id: &str, ids: &[Uuid], lease: Duration) -> Result<Vec<Uuid>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "WITH locked AS (SELECT id FROM jobs WHERE id = ANY($1) AND worker_id = $2 AND state = 'running' \
                             ORDER BY id FOR UPDATE) \
             UPDATE jobs j SET lease_expires_at = now() + $3 * interval '1 millisecond' \
             FROM locked WHERE j.id = locked.id RETURNING j.id",
        )
        .bind(ids)
        .bind(worker_id)
        .bind(lease_ms(lease))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn release(&self, worker_id: &str, ids: &[Uuid]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let queues: Vec<String> = sqlx::query_scalar(
            "UPDATE jobs SET state = 'queued', dispatched_at = NULL, attempts = GREATEST(attempts - 1, 0), worker_id = NULL, \
                    lease_expires_at = NULL, run_at = now(), last_error = $3 \
             WHERE id = ANY($1) AND worker_id = $2 AND state = 'running' RETURNING queue",
        )
        .bind(ids)
        .bind(worker_id)
        .bind(RELEASED_ERROR)
        .fetch_all(&self.pool)
        .await?;
        self.notify(&self.pool, queues.iter().map(String::as_str).collect())
            .await?;
        Ok(queues.len() as u64)
    }

    async fn promote_due(&self) -> Result<Vec<Job>> {
        let rows = sqlx::query(
            "WITH due AS (SELECT id FROM jobs WHERE state IN ('scheduled', 'retrying') \
                            AND run_at <= clock_timestamp() \
                          ORDER BY run_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs j SET state = 'queued', dispatched_at = NULL FROM due WHERE j.id = due.id RETURNING j.*",
        )
        .bind(MAINTENANCE_BATCH)
        .fetch_all(&self.pool)
        .await?;
        let jobs = jobs_from_rows(&rows)?;
        self.notify(&self.pool, jobs.iter().map(|j| j.queue.as_str()).collect())
            .await?;
        Ok(jobs)
    }

    async fn rescue_expired(&self) -> Result<u64> {
        let rows = sqlx::query(
            "WITH expired AS (SELECT id FROM jobs WHERE state = 'running' AND lease_expires_at < now() \
                              ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs j SET \
                    state = CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END, \
                    finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END, \
                    run_at = now(), last_error = $2, lease_expires_at = NULL, dispatched_at = NULL \
             FROM expired WHERE j.id = expired.id RETURNING j.queue, j.state",
        )
        .bind(MAINTENANCE_BATCH)
        .bind(RESCUED_ERROR)
        .fetch_all(&self.pool)
        .await?;
        let mut queues = BTreeSet::new();
        for row in &rows {
            if row.try_get::<&str, _>("state")? == JobState::Queued.as_str() {
                queues.insert(row.try_get::<&str, _>("queue")?);
            }
        }
        self.notify(&self.pool, queues).await?;
        Ok(rows.len() as u64)
    }

    async fn mark_dispatched(&self, ids: &[Uuid]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(
            "UPDATE jobs SET dispatched_at = now() WHERE id = ANY($1) AND state = 'queued'",
        )
        // Planned per call: a generic plan may scan every queued row instead of the primary key.
        .persistent(false)
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn undispatched(
        &self,
        grace: Duration,
        redispatch_after: Duration,
        limit: usize,
    ) -> Result<Vec<Job>> {
        let rows = sqlx::query(
            "(SELECT * FROM jobs WHERE state = 'queued' AND dispatched_at IS NULL \
                AND run_at < now() - $1 * interval '1 millisecond' ORDER BY run_at LIMIT $3) \
             UNION ALL \
             (SELECT * FROM jobs WHERE state = 'queued' AND dispatched_at IS NOT NULL \
                AND dispatched_at < now() - $2 * interval '1 millisecond' ORDER BY dispatched_at LIMIT $3)",
        )
        .bind(lease_ms(grace))
        .bind(lease_ms(redispatch_after))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        jobs_from_rows(&rows)
    }

    fn wakeups(&self) -> watch::Receiver<u64> {
        self.listener.get_or_init(|| {
            tokio::spawn(listen(
                self.pool.clone(),
                self.channel.clone(),
                Arc::downgrade(&self.wake),
            ));
        });
        self.wake.subscribe()
    }
}
