//! [`JobStore`] on PostgreSQL: unfinished jobs in the hot table `jobs`, finished ones in
//! `job_history`, moved there by the statement that records their outcome.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::store::sql::jobs::transition;

/// Folds the history counters' delta rows into one row per (tenant, queue, state), dropping
/// groups that sum to nothing; groups already of one row are left alone. A concurrent fold
/// waits on the rows this one deletes and then skips them, so no delta is counted twice.
const FOLD_HISTORY_COUNTS: &str = "WITH many AS ( \
         SELECT tenant_id, queue, state FROM history_counts \
         GROUP BY tenant_id, queue, state HAVING count(*) > 1), \
     gone AS ( \
         DELETE FROM history_counts h USING many m \
         WHERE h.tenant_id = m.tenant_id AND h.queue = m.queue AND h.state = m.state \
         RETURNING h.tenant_id, h.queue, h.state, h.n) \
     INSERT INTO history_counts (tenant_id, queue, state, n) \
     SELECT tenant_id, queue, state, sum(n) FROM gone GROUP BY tenant_id, queue, state \
     HAVING sum(n) <> 0";

/// While events are on, the `pysaas.job.running` fact of the attempts `moved` (a CTE of deleted
/// job rows) ends where `$filter` holds: an attempt that ends cancelled was recorded by no claim,
/// and a cancelled fact does not tell a running job from a waiting one.
macro_rules! running_fact_of_moved {
    ($filter:literal) => {
        concat!(
            "INSERT INTO event_outbox (id, tenant_id, type, subject, data, traceparent) \
             SELECT gen_random_uuid(), m.tenant_id, 'pysaas.job.running', 'jobs/' || m.id, \
                    json_build_array(m.id, m.kind, m.queue, 'running', 'queued', m.attempts, \
                        m.max_attempts, m.worker_id, m.created_at, m.run_at, m.started_at, \
                        NULL), \
                    m.trace_context \
             FROM moved m WHERE m.",
            $filter,
            " AND EXISTS (SELECT 1 FROM event_settings WHERE enabled)"
        )
    };
}

/// A cancelled job moves to the history; `$1` tenant, `$2` id. A running job's attempt was
/// recorded by no claim: while events are on, the cancel records its start (before the history's
/// trigger records the cancel itself, at the statement's end).
const CANCEL_SQL: &str = concat!(
    "WITH moved AS (DELETE FROM jobs WHERE tenant_id = $1 AND id = $2 \
                    RETURNING *, 'cancelled'::text AS new_state, NULL::jsonb AS new_result, \
                              NULL::text AS new_error, NULL::jsonb AS new_detail), \
          started AS (",
    running_fact_of_moved!("state = 'running'"),
    ") ",
    into_history!(),
    " RETURNING ",
    job_columns!()
);

/// A finished job comes back from the history as a new attempt; `$1` tenant, `$2` id.
const RETRY_SQL: &str = concat!(
    "WITH d AS (DELETE FROM job_history WHERE tenant_id = $1 AND id = $2 RETURNING *) \
     INSERT INTO jobs (id, tenant_id, kind, queue, state, priority, attempts, max_attempts, payload, \
                       result, last_error, timeout_ms, idempotency_key, trace_context, request_id, \
                       worker_id, created_at, run_at, started_at, finished_at, lease_expires_at, errors) \
     SELECT id, tenant_id, kind, queue, 'queued', priority, attempts, GREATEST(max_attempts, attempts + 1), \
            payload, NULL, last_error, timeout_ms, idempotency_key, trace_context, request_id, \
            worker_id, created_at, now(), started_at, NULL, NULL, errors \
     FROM d RETURNING ",
    job_columns!()
);

/// Outcomes in one statement: finished jobs move to the history, retried ones stay hot. Each
/// applies only while the job is `running` the same attempt (the fencing token). `$1`: ids of
/// finishing jobs, `$2`: ids of retried ones, `$3`: a JSON object from id to
/// `[attempt, state, result, error, run_at, detail]`. Rows are found by primary key and paired with
/// their outcome by key lookup in `$3` (no join for the planner to get wrong, whatever the hot
/// table's statistics say at the moment).
const COMPLETE_SQL: &str = concat!(
    "WITH b AS MATERIALIZED (SELECT $3::jsonb AS m), \
          moved AS (DELETE FROM jobs j USING b \
                    WHERE j.id = ANY($1) AND j.state = 'running' \
                      AND j.attempts = ((b.m -> j.id::text) ->> 0)::int4 \
                    RETURNING j.*, (b.m -> j.id::text) ->> 1 AS new_state, \
                              NULLIF((b.m -> j.id::text) -> 2, 'null'::jsonb) AS new_result, \
                              (b.m -> j.id::text) ->> 3 AS new_error, \
                              NULLIF((b.m -> j.id::text) -> 5, 'null'::jsonb) AS new_detail), \
          started AS (",
    running_fact_of_moved!("new_state = 'cancelled'"),
    "), \
          hist AS (",
    into_history!(),
    " RETURNING 1), \
          retried AS (UPDATE jobs j SET state = 'retrying', last_error = (b.m -> j.id::text) ->> 3, \
                             run_at = ((b.m -> j.id::text) ->> 4)::timestamptz, \
                             lease_expires_at = NULL, errors = ",
    attempt_error!(
        "((b.m -> j.id::text) ->> 3)",
        "NULLIF((b.m -> j.id::text) -> 5, 'null'::jsonb)"
    ),
    " FROM b WHERE j.id = ANY($2) AND j.state = 'running' \
                          AND j.attempts = ((b.m -> j.id::text) ->> 0)::int4 RETURNING 1) \
     SELECT (SELECT count(*) FROM hist) + (SELECT count(*) FROM retried)"
);

/// Expired leases: back to `queued`, or to the history as `dead` when out of attempts.
/// `$1` batch, `$2` error.
const RESCUE_SQL: &str = concat!(
    "WITH expired AS (SELECT id FROM jobs WHERE state = 'running' AND lease_expires_at < now() \
                      ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED), \
          moved AS (DELETE FROM jobs j \
                    WHERE j.id = ANY(ARRAY(SELECT id FROM expired)) AND j.attempts >= j.max_attempts \
                    RETURNING j.*, 'dead'::text AS new_state, NULL::jsonb AS new_result, \
                              $2::text AS new_error, NULL::jsonb AS new_detail), \
          hist AS (",
    into_history!(),
    " RETURNING queue, state, kind), \
          requeued AS (UPDATE jobs j SET state = 'queued', run_at = now(), last_error = $2, \
                              lease_expires_at = NULL, errors = ",
    attempt_error!("$2", "NULL::jsonb"),
    " WHERE j.id = ANY(ARRAY(SELECT id FROM expired)) AND j.attempts < j.max_attempts \
                         RETURNING j.queue, j.state, j.kind) \
     SELECT queue, state, kind FROM hist UNION ALL SELECT queue, state, kind FROM requeued"
);

impl PgStore {
    async fn transition(&self, sql: &str, tenant_id: &str, id: Uuid) -> Result<Transition> {
        let row = sqlx::query(sql)
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let moved = row.as_ref().map(job_from_row).transpose()?;
        if moved.is_some() {
            self.announce_tenants([tenant_id]);
        }
        if let Some(job) = moved.as_ref().filter(|j| j.state == JobState::Queued) {
            self.announce_queues([job.queue.as_str()]);
        }
        transition(self, moved, tenant_id, id).await
    }
}

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

    async fn now(&self) -> Result<DateTime<Utc>> {
        Ok(sqlx::query_scalar("SELECT now()")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn insert(&self, jobs: Vec<NewJob>) -> Result<Vec<Inserted>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        // One statement, so one round trip and an implicit transaction: all or none.
        let mut conn = self.pool.acquire().await?;
        let inserted = self.insert_in(&mut conn, &jobs).await?;
        drop(conn);
        self.announce_queues(
            inserted
                .iter()
                .filter(|i| i.created && i.job.state == JobState::Queued)
                .map(|i| i.job.queue.as_str()),
        );
        self.announce_tenants(
            inserted
                .iter()
                .filter(|i| i.created)
                .map(|i| i.job.tenant_id.as_str()),
        );
        Ok(inserted)
    }

    async fn cancel(&self, tenant_id: &str, id: Uuid) -> Result<Transition> {
        self.transition(CANCEL_SQL, tenant_id, id).await
    }

    async fn retry(&self, tenant_id: &str, id: Uuid) -> Result<Transition> {
        self.transition(RETRY_SQL, tenant_id, id).await
    }

    async fn claim(&self, queue: &str, n: usize, worker: &str, ttl: Duration) -> Result<Vec<Job>> {
        let rows = sqlx::query(concat!(
            "WITH next AS ( \
                 SELECT id FROM jobs WHERE state = 'queued' AND queue = $1 \
                 ORDER BY priority DESC, run_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = now(), \
                    worker_id = $3, lease_expires_at = now() + $4 * interval '1 millisecond' \
             WHERE id = ANY(ARRAY(SELECT id FROM next)) RETURNING ",
            job_columns!()
        ))
        // The locked ids are collected into an array and updated through the primary key: a
        // join of `next` with `jobs` would leave the planner free to scan the whole hot table
        // (a generic plan did: a hash join over a sequential scan), so the statement could not
        // be prepared once and reused.
        .bind(queue)
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .bind(worker)
        .bind(lease_ms(ttl))
        .fetch_all(&self.pool)
        .await?;
        let mut jobs = jobs_from_rows(&rows)?;
        sort_claimed(&mut jobs);
        self.announce_tenants(jobs.iter().map(|j| j.tenant_id.as_str()));
        Ok(jobs)
    }

    async fn claim_ids(&self, ids: &[Uuid], worker_id: &str, lease: Duration) -> Result<Vec<Job>> {
        let rows = sqlx::query(concat!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = now(), \
                    worker_id = $2, lease_expires_at = now() + $3 * interval '1 millisecond' \
             WHERE id = ANY($1) AND COALESCE(state = 'queued', false) RETURNING ",
            job_columns!()
        ))
        // The state test is wrapped so that it cannot match the claim index's predicate: the
        // rows are to be found by primary key. Written plainly, a generic plan may choose the
        // claim index and walk every queued job of the table per call (measured: 25 ms per
        // call with 20,000 queued).
        .bind(ids)
        .bind(worker_id)
        .bind(lease_ms(lease))
        .fetch_all(&self.pool)
        .await?;
        let jobs = jobs_from_rows(&rows)?;
        self.announce_tenants(jobs.iter().map(|j| j.tenant_id.as_str()));
        Ok(jobs)
    }

    async fn complete(&self, completions: &[Completion]) -> Result<u64> {
        if completions.is_empty() {
            return Ok(0);
        }
        let mut finishing = Vec::with_capacity(completions.len());
        let mut retried = Vec::new();
        let mut outcomes = serde_json::Map::with_capacity(completions.len());
        for c in completions {
            let (state, _, error, run_at) = outcome_columns(&c.outcome);
            if c.outcome.state() == JobState::Retrying {
                retried.push(c.id);
            } else {
                finishing.push(c.id);
            }
            let result = match &c.outcome {
                pysaas_jobs::Outcome::Succeeded { result: Some(r) } => r.clone(),
                _ => serde_json::Value::Null,
            };
            outcomes.insert(
                c.id.to_string(),
                serde_json::json!([c.attempt, state, result, error, run_at, c.detail]),
            );
        }
        let changed: i64 = sqlx::query_scalar(COMPLETE_SQL)
            .bind(&finishing)
            .bind(&retried)
            .bind(serde_json::Value::Object(outcomes))
            .fetch_one(&self.pool)
            .await?;
        self.announce_tenants(completions.iter().map(|c| c.tenant_id.as_str()));
        Ok(u64::try_from(changed).unwrap_or(0))
    }

    async fn heartbeat(&self, worker_id: &str, ids: &[Uuid], lease: Duration) -> Result<Vec<Uuid>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Rows locked by someone else (the completer recording their outcome) are skipped, not
        // waited for: so the heartbeat never deadlocks with a batch locking in another order.
        // They still count as held when the statement's snapshot shows them running here.
        Ok(sqlx::query_scalar(
            "WITH held AS (SELECT id FROM jobs WHERE id = ANY($1) AND worker_id = $2 AND state = 'running'), \
                  locked AS (SELECT id FROM jobs WHERE id = ANY(ARRAY(SELECT id FROM held)) \
                               AND worker_id = $2 AND state = 'running' FOR UPDATE SKIP LOCKED), \
                  renewed AS (UPDATE jobs SET lease_expires_at = now() + $3 * interval '1 millisecond' \
                              WHERE id = ANY(ARRAY(SELECT id FROM locked))) \
             SELECT id FROM held ORDER BY id",
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
        let released: Vec<(String, String, String)> = sqlx::query_as(
            "UPDATE jobs SET state = 'queued', attempts = GREATEST(attempts - 1, 0), worker_id = NULL, \
                    lease_expires_at = NULL, run_at = now(), last_error = $3 \
             WHERE id = ANY($1) AND worker_id = $2 AND state = 'running' RETURNING kind, queue, tenant_id",
        )
        .bind(ids)
        .bind(worker_id)
        .bind(RELEASED_ERROR)
        .fetch_all(&self.pool)
        .await?;
        for (kind, queue, _) in &released {
            crate::gauges::count_one_enqueued(kind, queue, "released");
        }
        self.announce_queues(released.iter().map(|(_, q, _)| q.as_str()));
        self.announce_tenants(released.iter().map(|(_, _, t)| t.as_str()));
        Ok(released.len() as u64)
    }

    async fn promote_due(&self) -> Result<Vec<Job>> {
        let rows = sqlx::query(concat!(
            "WITH due AS (SELECT id FROM jobs WHERE state IN ('scheduled', 'retrying') \
                            AND run_at <= clock_timestamp() \
                          ORDER BY run_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs SET state = 'queued' WHERE id = ANY(ARRAY(SELECT id FROM due)) RETURNING ",
            job_columns!()
        ))
        .bind(MAINTENANCE_BATCH)
        .fetch_all(&self.pool)
        .await?;
        let jobs = jobs_from_rows(&rows)?;
        self.announce_queues(jobs.iter().map(|j| j.queue.as_str()));
        self.announce_tenants(jobs.iter().map(|j| j.tenant_id.as_str()));
        Ok(jobs)
    }

    async fn rescue_expired(&self) -> Result<u64> {
        let rows = sqlx::query(RESCUE_SQL)
            .bind(MAINTENANCE_BATCH)
            .bind(RESCUED_ERROR)
            .fetch_all(&self.pool)
            .await?;
        let mut queues = BTreeSet::new();
        for row in &rows {
            if row.try_get::<&str, _>("state")? == JobState::Queued.as_str() {
                let queue = row.try_get::<&str, _>("queue")?;
                crate::gauges::count_one_enqueued(row.try_get("kind")?, queue, "rescued");
                queues.insert(queue);
            }
        }
        self.announce_queues(queues);
        Ok(rows.len() as u64)
    }

    async fn touch_consumed(&self, queues: &[String]) -> Result<()> {
        sqlx::query(
            "INSERT INTO queue_consumers (queue, last_seen) SELECT q, now() FROM unnest($1::text[]) AS q \
             ON CONFLICT (queue) DO UPDATE SET last_seen = excluded.last_seen",
        )
        .bind(queues)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_finished(&self, tenant_id: &str, ids: &[Uuid]) -> Result<u64> {
        let done: i64 = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM job_history WHERE tenant_id = $1 AND id = ANY($2) \
                           RETURNING id, tenant_id, idempotency_key), \
                  keys AS (DELETE FROM job_keys k USING gone g \
                           WHERE g.idempotency_key IS NOT NULL AND k.tenant_id = g.tenant_id \
                             AND k.key = g.idempotency_key AND k.job_id = g.id) \
             SELECT count(*) FROM gone",
        )
        .bind(tenant_id)
        .bind(ids)
        .fetch_one(&self.pool)
        .await?;
        if done > 0 {
            self.announce_tenants([tenant_id]);
        }
        Ok(u64::try_from(done).unwrap_or(0))
    }

    async fn vacuum_hot(&self, min_dead: i64) -> Result<bool> {
        sqlx::query(FOLD_HISTORY_COUNTS).execute(&self.pool).await?;
        // Rate-limit grants of jobs that never came back (cancelled while they waited).
        sqlx::query("DELETE FROM rate_grants WHERE start_at < now() - interval '1 day'")
            .execute(&self.pool)
            .await?;
        let dead: Option<i64> = sqlx::query_scalar(
            "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'jobs'::regclass",
        )
        .fetch_optional(&self.pool)
        .await?;
        if dead.unwrap_or(0) < min_dead {
            return Ok(false);
        }
        sqlx::query("VACUUM (TRUNCATE false) jobs")
            .execute(&self.pool)
            .await?;
        Ok(true)
    }

    fn wakeups(&self) -> watch::Receiver<u64> {
        self.start_listener();
        self.wake.subscribe()
    }

    fn changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.subscribe_changes()
    }
}
