-- The job table: the source of truth for every job's state.
-- Ids are hyphenated UUID text; times are integer microseconds since the Unix epoch.
CREATE TABLE jobs (
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
    lease_expires_at INTEGER
) STRICT;

CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN ('scheduled', 'retrying');
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_tenant_id ON jobs (tenant_id, id DESC);
CREATE INDEX jobs_tenant_state ON jobs (tenant_id, state, id DESC);
CREATE INDEX jobs_finished ON jobs (state, finished_at) WHERE finished_at IS NOT NULL;
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
