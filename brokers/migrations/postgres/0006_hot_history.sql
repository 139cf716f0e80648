-- Unfinished jobs stay in `jobs`, a small hot table with few indexes; the completer moves finished
-- ones to `job_history` in the same statement that records their outcome. Claims then never
-- walk past history, and an update of a hot row touches at most three indexes.
--
-- Text columns compared on every claim use the "C" collation (byte order): cheaper than the
-- database's locale, and the order of queue names and states has no linguistic meaning.

-- Dispatch marks are gone: the relay asks the broker whether it still holds messages instead.
ALTER TABLE jobs DROP COLUMN dispatched_at;
DROP INDEX jobs_tenant_id;
DROP INDEX jobs_tenant_state;
DROP INDEX jobs_finished;
DROP INDEX jobs_idempotency;
DROP INDEX jobs_claim;

ALTER TABLE jobs
    ALTER COLUMN tenant_id TYPE text COLLATE "C",
    ALTER COLUMN kind TYPE text COLLATE "C",
    ALTER COLUMN queue TYPE text COLLATE "C",
    ALTER COLUMN state TYPE text COLLATE "C",
    ALTER COLUMN idempotency_key TYPE text COLLATE "C",
    -- Failed attempts, oldest first: [{attempt, error, worker_id, started_at, finished_at}].
    ADD COLUMN errors jsonb;

CREATE TABLE job_history (LIKE jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE job_history ADD PRIMARY KEY (id);

INSERT INTO job_history SELECT * FROM jobs WHERE state IN ('succeeded', 'dead', 'cancelled');
DELETE FROM jobs WHERE state IN ('succeeded', 'dead', 'cancelled');

-- Idempotency keys of hot and finished jobs alike; a key row goes when its job is pruned.
CREATE TABLE job_keys (
    tenant_id text COLLATE "C" NOT NULL,
    key       text COLLATE "C" NOT NULL,
    job_id    uuid NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
INSERT INTO job_keys (tenant_id, key, job_id)
    SELECT tenant_id, idempotency_key, id FROM jobs WHERE idempotency_key IS NOT NULL
    UNION ALL
    SELECT tenant_id, idempotency_key, id FROM job_history WHERE idempotency_key IS NOT NULL;

-- Hot table: claim order per queue; a tenant's waiting jobs (running ones are few and found
-- through jobs_lease, so a claim adds no entry here); leases. A lease is set exactly while a job
-- runs; the index says `lease_expires_at IS NOT NULL` rather than `state = 'running'` so that
-- statements addressing running jobs by id (`id = ANY(…) AND state = 'running'`) are planned on
-- the primary key, not on a scan of every running job, whatever the statistics say.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_tenant ON jobs (tenant_id, id) WHERE state <> 'running';
DROP INDEX jobs_lease;
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
-- The hot table empties and refills all the time: a vacuum must not wait for an exclusive lock
-- to give its empty tail back to the filesystem (only for the next inserts to extend it again).
ALTER TABLE jobs SET (vacuum_truncate = false);

-- History: a tenant's jobs newest first; its failures (few) on their own; retention pruning.
CREATE INDEX job_history_tenant ON job_history (tenant_id, id);
CREATE INDEX job_history_failed ON job_history (tenant_id, id) WHERE state <> 'succeeded';
CREATE INDEX job_history_finished ON job_history (state, finished_at);
