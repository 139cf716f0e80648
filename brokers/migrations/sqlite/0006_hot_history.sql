-- Unfinished jobs stay in `jobs`, a small hot table with few indexes; the completer moves finished
-- ones to `job_history` in the same transaction that records their outcome (see the PostgreSQL
-- migration of the same number).

DROP INDEX jobs_undispatched;
DROP INDEX jobs_dispatched;
DROP INDEX jobs_tenant_id;
DROP INDEX jobs_tenant_state;
DROP INDEX jobs_finished;
DROP INDEX jobs_idempotency;
ALTER TABLE jobs DROP COLUMN dispatched_at;
-- Failed attempts, oldest first: [{attempt, error, worker_id, started_at, finished_at}].
ALTER TABLE jobs ADD COLUMN errors TEXT;

CREATE TABLE job_history (
    id               TEXT    PRIMARY KEY NOT NULL,
    tenant_id        TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('scheduled','queued','running','succeeded','retrying','dead','cancelled')),
    priority         INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    payload          TEXT    NOT NULL,
    result           TEXT,
    last_error       TEXT,
    timeout_ms       INTEGER NOT NULL,
    idempotency_key  TEXT,
    trace_context    TEXT,
    worker_id        TEXT,
    created_at       INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    lease_expires_at INTEGER,
    request_id       TEXT,
    errors           TEXT
) STRICT;

INSERT INTO job_history SELECT * FROM jobs WHERE state IN ('succeeded', 'dead', 'cancelled');
DELETE FROM jobs WHERE state IN ('succeeded', 'dead', 'cancelled');

-- Idempotency keys of hot and finished jobs alike; a key row goes when its job is pruned.
CREATE TABLE job_keys (
    tenant_id TEXT NOT NULL,
    key       TEXT NOT NULL,
    job_id    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key)
) STRICT, WITHOUT ROWID;
INSERT INTO job_keys (tenant_id, key, job_id)
    SELECT tenant_id, idempotency_key, id FROM jobs WHERE idempotency_key IS NOT NULL
    UNION ALL
    SELECT tenant_id, idempotency_key, id FROM job_history WHERE idempotency_key IS NOT NULL;

CREATE INDEX jobs_tenant ON jobs (tenant_id, id) WHERE state <> 'running';
-- A lease is set exactly while a job runs (see the PostgreSQL migration).
DROP INDEX jobs_lease;
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

CREATE INDEX job_history_tenant ON job_history (tenant_id, id);
CREATE INDEX job_history_failed ON job_history (tenant_id, id) WHERE state <> 'succeeded';
CREATE INDEX job_history_finished ON job_history (state, finished_at);
